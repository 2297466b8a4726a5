"""``lightnode.simulator.netem``: the loopback proxy forwards, cuts, blackholes and delays, against a real TCP echo server."""

import socket
import threading
import time

import pytest
from lightnode.simulator.netem import Proxy


class Echo:
    """A TCP echo server on a free loopback port, one thread per client."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = self.sock.getsockname()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                c.sendall(data)

    def close(self):
        self.sock.close()


@pytest.fixture
def echo():
    e = Echo()
    yield e
    e.close()


def _recv_exactly(s, n, timeout=5.0):
    s.settimeout(timeout)
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_forwards_both_ways_and_counts(echo):
    with Proxy(echo.address) as net:
        c = socket.create_connection(net.address)
        payload = bytes(range(256)) * 400
        c.sendall(payload)
        assert _recv_exactly(c, len(payload)) == payload
        c.close()
        st = net.stats()
        assert st["state"] == "up" and st["accepted"] == 1
        assert st["bytes_up"] == st["bytes_down"] == len(payload)


def test_cut_resets_open_and_new_links_until_restored(echo):
    with Proxy(echo.address) as net:
        c = socket.create_connection(net.address)
        c.sendall(b"before")
        assert _recv_exactly(c, 6) == b"before"
        net.cut()
        c.settimeout(2)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(50):  # the reset shows on the next read or write
                if c.recv(10) == b"":
                    raise ConnectionResetError("closed")
                c.sendall(b"x")
                time.sleep(0.02)
        c.close()
        d = socket.create_connection(net.address)  # the kernel accepts, the proxy resets
        d.settimeout(2)
        with pytest.raises(ConnectionResetError):
            if d.recv(10) == b"":
                raise ConnectionResetError("closed")
        d.close()
        assert net.stats()["refused"] >= 1
        net.restore()
        e = socket.create_connection(net.address)
        e.sendall(b"after")
        assert _recv_exactly(e, 5) == b"after"
        e.close()


def test_blackhole_holds_bytes_and_delivers_them_in_order_after(echo):
    with Proxy(echo.address) as net:
        c = socket.create_connection(net.address)
        c.sendall(b"a")
        assert _recv_exactly(c, 1) == b"a"
        net.blackhole()
        sent = b"".join(b"%04d" % i for i in range(500))
        c.sendall(sent)
        c.settimeout(0.5)
        with pytest.raises(TimeoutError):
            c.recv(10)  # nothing moves while blackholed
        late = socket.create_connection(net.address)  # a new link hangs: no server behind it yet
        before = echo.connections
        time.sleep(0.3)
        assert echo.connections == before
        net.restore()
        assert _recv_exactly(c, len(sent)) == sent  # nothing lost, nothing reordered
        late.sendall(b"late")
        assert _recv_exactly(late, 4) == b"late"
        c.close()
        late.close()


def test_latency_and_jitter_delay_without_reordering(echo):
    with Proxy(echo.address, delay_s=0.1, jitter_s=0.05, seed=3) as net:
        c = socket.create_connection(net.address)
        t0 = time.monotonic()
        c.sendall(b"ping")
        assert _recv_exactly(c, 4) == b"ping"
        rtt = time.monotonic() - t0
        assert 0.2 <= rtt < 1.5, rtt  # once each way
        msgs = [b"<%03d>" % i for i in range(100)]
        for m in msgs:
            c.sendall(m)
            time.sleep(0.001)
        assert _recv_exactly(c, 5 * len(msgs)) == b"".join(msgs)
        net.latency(0)
        t0 = time.monotonic()
        c.sendall(b"fast")
        assert _recv_exactly(c, 4) == b"fast"
        assert time.monotonic() - t0 < 0.2
        c.close()


def test_loopback_only():
    with pytest.raises(ValueError):
        Proxy(("192.0.2.1", 1883))
    with pytest.raises(ValueError):
        Proxy(("127.0.0.1", 1883), host="0.0.0.0")
    with pytest.raises(ValueError):
        Proxy(("127.0.0.1", 1883)).latency(-1)
