"""A loopback TCP proxy that makes network trouble on purpose: cuts, blackholes, latency and jitter.

Put it between a client and its server (a light node and its MQTT
broker, a SCADA master and a PMU): the client connects to the proxy's
address, the proxy opens one upstream connection per client connection
and forwards bytes both ways until told otherwise.

- ``cut()``: every open link is reset (RST: the client sees the connection
  drop at once) and new connections are reset as they arrive, until
  ``restore()``: a cable pulled out, a router rebooting.
- ``blackhole()``: links stay open but nothing moves either way, and a
  new connection is accepted but never reaches the server: packets
  dropped on the floor (a dead Wi-Fi link). TCP loses no bytes, so what
  was sent before ``restore()`` arrives after it, unless an end gave up
  (its keepalive or connect timeout) and closed the link first.
- ``latency(delay_s, jitter_s)``: each chunk is held ``delay_s`` plus a
  uniform ``0..jitter_s`` before it is forwarded; order is kept.

Only loopback is allowed: it is a test and simulation tool.

    from lightnode.simulator.netem import Proxy
    with Proxy(("127.0.0.1", 1883)) as net:     # listens on a free port
        host, port = net.address                # give the client this
        net.cut(); ...; net.restore()
        net.blackhole(); ...; net.restore()
        net.latency(0.05, 0.02)
        net.stats()                             # {"state": "up", "links": 1, "accepted": 3, ...}
"""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
import time
from collections import deque

UP = "up"
CUT = "cut"
BLACKHOLE = "blackhole"
STATES = (UP, CUT, BLACKHOLE)
CHUNK = 65536
TICK_S = 0.02  # how often a quiet link looks at the proxy's state
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN: the peer sees the link broken, not ended."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Link:
    """One client connection and its upstream connection, pumped by one thread."""

    def __init__(self, proxy: Proxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server: socket.socket | None = None
        self.closed = False
        # per direction: chunks waiting for their time, (due, bytes)
        self.queues: dict[socket.socket, deque[tuple[float, bytes]]] = {}

    def close(self, rst: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for s in (self.client, self.server):
            if s is None:
                continue
            if rst:
                _reset(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass

    def _connect(self) -> bool:
        p = self.proxy
        while not self.closed and not p._stopping.is_set():
            state = p.state
            if state == CUT:
                return False
            if state == UP:
                try:
                    self.server = socket.create_connection(p.upstream, timeout=5)
                except OSError:
                    return False
                self.server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return True
            time.sleep(TICK_S)  # blackholed: the connection hangs, as a dropped SYN does
        return False

    def run(self) -> None:
        p = self.proxy
        try:
            if not self._connect():
                self.close(rst=True)
                return
            assert self.server is not None
            peer = {self.client: self.server, self.server: self.client}
            self.queues = {self.client: deque(), self.server: deque()}  # keyed by destination
            while not self.closed and not p._stopping.is_set():
                state = p.state
                if state == CUT:
                    self.close(rst=True)
                    return
                readable: list[socket.socket] = []
                if state == UP:
                    now = time.monotonic()
                    for dst, q in self.queues.items():
                        while q and q[0][0] <= now:
                            dst.sendall(q.popleft()[1])
                    wait = TICK_S
                    for q in self.queues.values():
                        if q:
                            wait = min(wait, max(0.0, q[0][0] - now))
                    readable, _, _ = select.select([self.client, self.server], [], [], wait)
                else:
                    time.sleep(TICK_S)  # blackholed: read nothing, send nothing
                for src in readable:
                    data = src.recv(CHUNK)
                    if not data:  # one end closed: close the other end too, once drained
                        dst = peer[src]
                        for _due, chunk in self.queues[dst]:
                            dst.sendall(chunk)
                        self.close()
                        return
                    p._count(src is self.client, len(data))
                    q = self.queues[peer[src]]
                    due = time.monotonic() + p._delay()
                    if q and due < q[-1][0]:
                        due = q[-1][0]  # jitter never reorders a stream
                    q.append((due, data))
        except (OSError, ValueError):  # ValueError: cut() closed a socket under select()
            self.close(rst=True)
        finally:
            p._drop(self)


class Proxy:
    """A TCP proxy on ``host:port`` (a free port by default) to ``upstream``; see the module's doc."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0,
                 delay_s: float = 0.0, jitter_s: float = 0.0, seed: int | None = None) -> None:
        if host not in LOOPBACK or upstream[0] not in LOOPBACK:
            raise ValueError("netem runs on loopback only: %s -> %s" % (host, upstream[0]))
        self.upstream = (upstream[0], int(upstream[1]))
        self.state = UP
        self._rnd = random.Random(seed)
        self._delay_s = 0.0
        self._jitter_s = 0.0
        self.latency(delay_s, jitter_s)
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.accepted = 0
        self.refused = 0  # connections reset on arrival during a cut
        self.bytes_up = 0  # client -> server
        self.bytes_down = 0
        self.history: list[tuple[float, str]] = [(time.time(), UP)]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(16)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    # -- what a test or a scenario calls --------------------------------------------

    def cut(self) -> None:
        """Reset every link now, and every new one until ``restore()``."""
        self._set(CUT)
        with self._lock:
            links = list(self._links)
        for link in links:  # at once, not at the pump's next tick
            link.close(rst=True)

    def blackhole(self) -> None:
        """Stop every byte both ways; links stay open, new ones hang, until ``restore()``."""
        self._set(BLACKHOLE)

    def restore(self) -> None:
        """Forward again; what blackholed links held moves on."""
        self._set(UP)

    def latency(self, delay_s: float, jitter_s: float = 0.0) -> None:
        """Hold each chunk ``delay_s`` plus up to ``jitter_s`` (uniform) before forwarding it."""
        if delay_s < 0 or jitter_s < 0:
            raise ValueError("delay and jitter are not negative")
        self._delay_s, self._jitter_s = float(delay_s), float(jitter_s)

    def stats(self) -> dict[str, object]:
        with self._lock:
            links = len(self._links)
        return {"state": self.state, "links": links, "accepted": self.accepted,
                "refused": self.refused, "bytes_up": self.bytes_up, "bytes_down": self.bytes_down}

    # -- life -------------------------------------------------------------------------

    def start(self) -> Proxy:
        t = threading.Thread(target=self._accept, name="netem-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for t in list(self._threads):
            t.join(timeout=2)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inside -------------------------------------------------------------------------

    def _set(self, state: str) -> None:
        self.state = state
        self.history.append((time.time(), state))

    def _delay(self) -> float:
        if not self._jitter_s:
            return self._delay_s
        return self._delay_s + self._rnd.uniform(0.0, self._jitter_s)

    def _count(self, up: bool, n: int) -> None:
        with self._lock:
            if up:
                self.bytes_up += n
            else:
                self.bytes_down += n

    def _drop(self, link: _Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                r, _, _ = select.select([self._sock], [], [], 0.05)
                if not r:
                    continue
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self.state == CUT:
                self.refused += 1
                _reset(conn)
                continue
            self.accepted += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, conn)
            with self._lock:
                self._links.append(link)
                self._threads = [t for t in self._threads if t.is_alive()]
            t = threading.Thread(target=link.run, name="netem-link", daemon=True)
            t.start()
            self._threads.append(t)
