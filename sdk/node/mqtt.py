"""The full node's MQTT link: a small MQTT 3.1.1 client on asyncio, and the ``Transport`` other node code uses.

Why our own client: a node takes thousands of QoS1 messages a second on
one connection, and wants to acknowledge them (PUBACK) only once what they
carried is durably stored, in batches. A general client acknowledges each
message as its callback returns and runs a Python callback per packet; on
this machine that path moved about 2,400 messages/s. Here one
``data_received`` parses every packet in the chunk, hands the PUBLISH
packets of the chunk to their subscription at once, and PUBACKs go out
many to one ``write``.

Two layers, as the rest of the SDK: a sans-IO codec (``encode_*``,
``Parser``) that takes and returns bytes, and ``Transport``, which owns
the socket and one reconnect loop (backoff with jitter) that handles every
link error. ``Transport`` is what the witness, quorum and ack code uses::

    t = Transport.from_url("mqtt://127.0.0.1:1883", client_id="node-a")
    t.subscribe("ln/seg-1/cosig", lambda topic, payload: ...)
    t.publish("ln/seg-1/block", block_bytes)
    await t.run()            # or t.start() for a thread of its own

``publish`` and ``subscribe`` may be called from any thread, before or
after the link is up; subscriptions are renewed on every reconnect, and
QoS1 publishes not yet acknowledged by the broker are sent again (DUP) on
the next link. Handlers run on the transport's event loop.
"""

from __future__ import annotations

import asyncio
import random
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from lightnode.errors import LightnodeError

__all__ = [
    "Message",
    "MqttError",
    "Parser",
    "Transport",
    "encode_connect",
    "encode_publish",
    "encode_pubacks",
    "encode_subscribe",
    "topic_matches",
]

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14
MAX_PACKET = 1 << 20  # larger than any transaction or block we carry; a peer sending more is broken
OUTBOX_MAX = 20_000  # QoS1 publishes held while the link is down; the oldest go first past it


class MqttError(LightnodeError):
    """What the broker or the link did wrong (a refused CONNECT, a broken packet)."""


# -- codec ----------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError("MQTT string over 65,535 bytes")
    return struct.pack(">H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def encode_connect(
    client_id: str,
    clean_session: bool = False,
    keepalive: int = 60,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = _str("MQTT") + bytes((4, flags)) + struct.pack(">H", keepalive) + _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return _packet(CONNECT << 4, body)


def encode_publish(
    topic: str, payload: bytes, qos: int = 0, pid: int = 0, retain: bool = False, dup: bool = False
) -> bytes:
    first = (PUBLISH << 4) | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    head = _str(topic) + (struct.pack(">H", pid) if qos else b"")
    return bytes((first,)) + _varint(len(head) + len(payload)) + head + payload


_PUBACK = struct.Struct(">BBH")


def encode_pubacks(pids: list[int]) -> bytes:
    """Many PUBACKs as one buffer (one write)."""
    pack = _PUBACK.pack
    return b"".join([pack(0x40, 2, p) for p in pids])


def encode_subscribe(pid: int, topics: list[tuple[str, int]]) -> bytes:
    body = struct.pack(">H", pid) + b"".join(_str(t) + bytes((q,)) for t, q in topics)
    return _packet((SUBSCRIBE << 4) | 0x02, body)


PINGREQ_BYTES = bytes((PINGREQ << 4, 0))
DISCONNECT_BYTES = bytes((DISCONNECT << 4, 0))


@dataclass(slots=True)
class Message:
    """One received PUBLISH: ``pid`` is 0 at QoS0; ``link`` names the connection it came on."""

    topic: str
    payload: bytes
    qos: int
    pid: int
    retain: bool
    dup: bool
    link: int = 0


class Parser:
    """Bytes in, packets out: ``feed(data)`` returns ``[(type, flags, body), ...]`` for every whole packet."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._buf = bytearray()
        self.max_packet = max_packet

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self._buf
        buf += data
        out = []
        at, n = 0, len(buf)
        while n - at >= 2:
            first = buf[at]
            length, shift, i, whole = 0, 0, at + 1, False
            while i < n:
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                if not b & 0x80:
                    whole = True
                    break
                shift += 7
                if shift > 21:
                    raise MqttError("remaining length over four bytes")
            if not whole:
                break  # the length is not whole yet
            if length > self.max_packet:
                raise MqttError("packet of %d bytes over the limit" % length)
            if n - i < length:
                break
            out.append((first >> 4, first & 0x0F, bytes(buf[i : i + length])))
            at = i + length
        del buf[:at]
        return out


def decode_publish(flags: int, body: bytes) -> Message:
    if len(body) < 2:
        raise MqttError("PUBLISH too short")
    (tlen,) = struct.unpack_from(">H", body)
    qos = (flags >> 1) & 3
    at = 2 + tlen
    pid = 0
    if qos:
        if len(body) < at + 2:
            raise MqttError("PUBLISH too short")
        (pid,) = struct.unpack_from(">H", body, at)
        at += 2
    try:
        topic = body[2 : 2 + tlen].decode()
    except UnicodeDecodeError as e:
        raise MqttError("topic not UTF-8") from e
    return Message(topic, body[at:], qos, pid, bool(flags & 1), bool(flags & 8))


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest)."""
    if pattern == topic:
        return True
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


# -- transport ------------------------------------------------------------------------

Handler = Callable[[str, bytes], None]
BatchHandler = Callable[[list[Message]], None]


class _Link(asyncio.Protocol):
    def __init__(self, owner: Transport, number: int) -> None:
        self.owner = owner
        self.number = number
        self.parser = Parser()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.parser.feed(data)
            self.owner._packets(self, packets)
        except MqttError as e:
            self.owner.errors += 1
            self.owner.last_error = str(e)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(MqttError("link closed before CONNACK: %s" % exc))
        if not self.closed.done():
            self.closed.set_result(None)


class Transport:
    """One MQTT 3.1.1 session with a broker (QoS 0 and 1), reconnecting until ``close()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str = "lightnode-node",
        username: str | None = None,
        password: str | None = None,
        clean_session: bool = False,
        keepalive: int = 30,
    ) -> None:
        if not client_id or len(client_id.encode()) > 65535:
            raise ValueError("client_id: 1 to 65,535 bytes")
        self.host, self.port = host, port
        self.client_id = client_id
        self.username, self.password = username, password
        self.clean_session = clean_session
        self.keepalive = keepalive
        self._subs: list[tuple[str, int, Handler | None, BatchHandler | None]] = []
        self._outbox: deque[tuple[int, str, bytes, int, bool]] = (
            deque()
        )  # (pid, topic, payload, qos, retain)
        self._inflight: dict[int, tuple[str, bytes, bool]] = {}
        self._next_pid = 0
        self._link: _Link | None = None
        self._links = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._up = threading.Event()
        self.errors = 0
        self.dropped = 0
        self.last_error = ""
        self.received = 0
        self.subacks = 0  # SUBACKs received: a subscription is in place once its SUBACK is

    @classmethod
    def from_url(cls, url: str, client_id: str, **kw: Any) -> Transport:
        """``mqtt://[user[:password]@]host[:port]`` (``tcp://`` alike)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError("broker URL %r: mqtt://host:port expected" % url)
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 1883,
            client_id,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            **kw,
        )

    # -- the interface other node code uses ---------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Send ``payload`` to ``topic``; QoS1 is kept and sent again until the broker acknowledges it."""
        if qos not in (0, 1):
            raise ValueError("qos: 0 or 1")
        self._call(self._publish, topic, bytes(payload), qos, retain)

    def subscribe(self, topic: str, handler: Handler, qos: int = 1) -> None:
        """Call ``handler(topic, payload)`` for each message on ``topic`` (wildcards allowed); PUBACK after it returns."""
        self._call(self._subscribe, topic, qos, handler, None)

    def subscribe_batch(self, topic: str, handler: BatchHandler, qos: int = 1) -> None:
        """Hand messages on ``topic`` over a chunk at a time; the handler acknowledges them with ``ack()`` when it will."""
        self._call(self._subscribe, topic, qos, None, handler)

    def ack(self, messages: list[Message]) -> None:
        """PUBACK these QoS1 messages at once (those of a link since closed are skipped: the broker sends them again)."""
        link = self._link
        if link is None or link.transport is None:
            return
        pids = [m.pid for m in messages if m.qos and m.link == link.number]
        if pids:
            link.transport.write(encode_pubacks(pids))

    # -- running -------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """QoS1 publishes sent and not yet acknowledged by the broker, with those waiting for a link."""
        return len(self._inflight) + len(self._outbox)

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._up.wait(timeout)

    def start(self) -> None:
        """Run the transport on an event loop in a thread of its own (for code that is not asyncio)."""
        if self._thread is not None:
            return
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            ready.set()
            loop.run_until_complete(self.run())
            loop.close()

        self._thread = threading.Thread(target=main, name="mqtt-%s" % self.client_id, daemon=True)
        self._thread.start()
        ready.wait(5)

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly and stop the reconnect loop."""
        self._closing = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._disconnect)
            except RuntimeError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    async def run(self) -> None:
        """Connect, and connect again after every loss (backoff 0.1 s doubling to 5 s, with jitter), until ``close()``."""
        self._loop = asyncio.get_running_loop()
        delay = 0.1
        while not self._closing:
            try:
                await self._session()
                delay = 0.1
            except (TimeoutError, OSError, MqttError) as e:
                self.errors += 1
                self.last_error = str(e) or type(e).__name__
            self._up.clear()
            self._link = None
            if self._closing:
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self._links += 1
        number = self._links
        _, link = await asyncio.wait_for(
            loop.create_connection(lambda: _Link(self, number), self.host, self.port), 10
        )
        assert link.transport is not None
        link.transport.write(
            encode_connect(
                self.client_id, self.clean_session, self.keepalive, self.username, self.password
            )
        )
        rc = await asyncio.wait_for(link.connack, 10)
        if rc != 0:
            link.transport.close()
            raise MqttError("broker refused CONNECT: return code %d" % rc)
        self._link = link
        if self._subs:
            link.transport.write(
                encode_subscribe(self._pid(), [(t, q) for t, q, _, _ in self._subs])
            )
        # what the broker never acknowledged goes again, then what waited for a link
        for pid, (topic, payload, retain) in self._inflight.items():
            link.transport.write(encode_publish(topic, payload, 1, pid, retain, dup=True))
        while self._outbox:
            self._send(*self._outbox.popleft())
        self._up.set()
        ping = asyncio.ensure_future(self._pinger(link))
        try:
            await link.closed
        finally:
            ping.cancel()

    async def _pinger(self, link: _Link) -> None:
        while link.transport is not None and not link.transport.is_closing():
            await asyncio.sleep(max(self.keepalive / 2, 0.5))
            if link.transport is not None and not link.transport.is_closing():
                link.transport.write(PINGREQ_BYTES)

    def _disconnect(self) -> None:
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.write(DISCONNECT_BYTES)
            link.transport.close()

    # -- inside the loop -----------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            fn(*args)  # not running yet: nothing else touches our state
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def _pid(self) -> int:
        for _ in range(65536):
            self._next_pid = self._next_pid % 65535 + 1
            if self._next_pid not in self._inflight:
                return self._next_pid
        raise MqttError("65,535 publishes in flight")

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        link = self._link
        if link is None or link.transport is None or link.transport.is_closing():
            if qos == 0:
                self.dropped += 1
                return
            if len(self._outbox) >= OUTBOX_MAX:
                self._outbox.popleft()
                self.dropped += 1
            self._outbox.append((0, topic, payload, qos, retain))
            return
        self._send(0, topic, payload, qos, retain)

    def _send(self, pid: int, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        link = self._link
        assert link is not None and link.transport is not None
        if qos:
            pid = self._pid()
            self._inflight[pid] = (topic, payload, retain)
        link.transport.write(encode_publish(topic, payload, qos, pid, retain))

    def _subscribe(
        self, topic: str, qos: int, handler: Handler | None, batch: BatchHandler | None
    ) -> None:
        self._subs.append((topic, qos, handler, batch))
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.write(encode_subscribe(self._pid(), [(topic, qos)]))

    def _route(self, topic: str) -> tuple[Handler | None, BatchHandler | None]:
        for pattern, _, handler, batch in self._subs:
            if topic_matches(pattern, topic):
                return handler, batch
        return None, None

    def _packets(self, link: _Link, packets: list[tuple[int, int, bytes]]) -> None:
        batches: dict[int, tuple[BatchHandler, list[Message]]] = {}
        acks: list[int] = []
        for kind, flags, body in packets:
            if kind == PUBLISH:
                m = decode_publish(flags, body)
                m.link = link.number
                self.received += 1
                handler, batch = self._route(m.topic)
                if batch is not None:
                    batches.setdefault(id(batch), (batch, []))[1].append(m)
                    continue
                if handler is not None:
                    try:
                        handler(m.topic, m.payload)
                    except Exception as e:  # a handler's fault must not take the link down
                        self.errors += 1
                        self.last_error = "handler for %s: %r" % (m.topic, e)
                if m.qos:
                    acks.append(m.pid)
            elif kind == PUBACK:
                if len(body) >= 2:
                    self._inflight.pop(struct.unpack_from(">H", body)[0], None)
            elif kind == CONNACK:
                if len(body) != 2:
                    raise MqttError("CONNACK of %d bytes" % len(body))
                if not link.connack.done():
                    link.connack.set_result(body[1])
            elif kind in (SUBACK, PINGRESP):
                if kind == SUBACK:
                    self.subacks += 1
                    if b"\x80" in body[2:]:
                        self.errors += 1
                        self.last_error = "broker refused a subscription"
            else:
                raise MqttError("unexpected packet type %d" % kind)
        if acks and link.transport is not None:
            link.transport.write(encode_pubacks(acks))
        for batch, messages in batches.values():
            batch(messages)
