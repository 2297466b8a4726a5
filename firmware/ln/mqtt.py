"""The device's uplink: an MQTT 3.1.1 codec (sans-IO) and a QoS1 client on asyncio.

Two layers. The codec (``encode_*``, ``decode_*``, ``Parser``) takes and
returns bytes and runs under MicroPython and CPython alike; it reads what
the broker sends into one buffer allocated at start, through a memoryview,
and refuses a packet larger than that buffer with ``MqttError``. The
client (``Client``, MicroPython's asyncio) owns the socket: one reconnect
loop handles every link error (backoff with jitter, capped), keeps the
session alive with pings, holds a bounded window of QoS1 publishes and sends
every unacknowledged one again (DUP, in order) on the next link.
docs/uplink.md describes its states.

    from ln import mqtt
    c = mqtt.Client("127.0.0.1", 1883, device_hex, user=device_hex, password=pw)
    c.subscribe(wire.TOPIC_ACK % (segment, device_hex), on_ack)
    asyncio.create_task(c.run())
    await c.publish(wire.TOPIC_TX % (segment, device_hex), cose_bytes, key=seq)
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_CONNECT = const(1)
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_SUBSCRIBE = const(8)
_SUBACK = const(9)
_UNSUBACK = const(11)
_PINGREQ = const(12)
_PINGRESP = const(13)
_DISCONNECT = const(14)

_RX_BYTES = const(4096)  # default receive buffer: the largest packet the broker may send us
_MAX_REMAINING = const(268435455)  # four length bytes
PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"

CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class MqttError(Exception):
    """What the broker or the link did wrong: a refused CONNACK, a broken or oversized packet, silence.

    ``code`` is the CONNACK return code for a refused CONNECT, else 0.
    """

    def __init__(self, msg, code=0):
        super().__init__(msg)
        self.code = code


# -- codec ----------------------------------------------------------------------------


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 0xFFFF:
        raise ValueError("MQTT string over 65,535 bytes")
    return struct.pack(">H", len(b)) + b


def _packet(first, body):
    if len(body) > _MAX_REMAINING:
        raise ValueError("packet over the MQTT limit")
    return bytes((first,)) + _varint(len(body)) + body


def encode_connect(client_id, keepalive=60, username=None, password=None, clean_session=False):
    """CONNECT; ``clean_session=False`` asks the broker to keep our session (subscriptions, queued acks)."""
    if not client_id:
        raise ValueError("client_id: at least one byte")
    if not 0 <= keepalive <= 0xFFFF:
        raise ValueError("keepalive: 0 to 65,535 s")
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1 has no password without a user name")
    flags = 0x02 if clean_session else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = _str("MQTT") + bytes((4, flags)) + struct.pack(">H", keepalive) + _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return _packet(_CONNECT << 4, body)


def encode_publish_head(topic, size, qos=1, pid=0, dup=False, retain=False):
    """A PUBLISH up to its payload of ``size`` bytes (the payload is written after it, not copied in)."""
    if qos not in (0, 1):
        raise ValueError("qos: 0 or 1")
    if qos and not 0 < pid <= 0xFFFF:
        raise ValueError("packet id: 1 to 65,535")
    if not topic or "+" in topic or "#" in topic:
        raise ValueError("topic: not empty, no wildcards")
    var = _str(topic)
    if qos:
        var += struct.pack(">H", pid)
    n = len(var) + size
    if n > _MAX_REMAINING:
        raise ValueError("payload over the MQTT limit")
    first = (_PUBLISH << 4) | (qos << 1) | (0x08 if dup and qos else 0) | (1 if retain else 0)
    return bytes((first,)) + _varint(n) + var


def encode_publish(topic, payload, qos=1, pid=0, dup=False, retain=False):
    return encode_publish_head(topic, len(payload), qos, pid, dup, retain) + bytes(payload)


def encode_puback(pid):
    if not 0 < pid <= 0xFFFF:
        raise ValueError("packet id: 1 to 65,535")
    return struct.pack(">BBH", _PUBACK << 4, 2, pid)


def encode_subscribe(pid, topics):
    """SUBSCRIBE ``topics``, a list of (topic filter, qos)."""
    if not 0 < pid <= 0xFFFF:
        raise ValueError("packet id: 1 to 65,535")
    if not topics:
        raise ValueError("SUBSCRIBE needs a topic")
    body = struct.pack(">H", pid)
    for t, q in topics:
        if not t or q not in (0, 1, 2):
            raise ValueError("subscription %r qos %r" % (t, q))
        body += _str(t) + bytes((q,))
    return _packet((_SUBSCRIBE << 4) | 0x02, body)


def decode_connack(body):
    """(session present, return code) of a CONNACK body."""
    if len(body) != 2:
        raise MqttError("CONNACK of %d bytes" % len(body))
    if body[0] > 1:
        raise MqttError("CONNACK flags 0x%02x" % body[0])
    if body[1] > 5:
        raise MqttError("CONNACK return code %d" % body[1])
    if body[1] and body[0]:
        raise MqttError("CONNACK refusal with a session")
    return body[0] == 1, body[1]


def decode_puback(body):
    if len(body) != 2:
        raise MqttError("PUBACK of %d bytes" % len(body))
    pid = (body[0] << 8) | body[1]
    if not pid:
        raise MqttError("PUBACK for packet id 0")
    return pid


def decode_suback(body):
    """(packet id, granted codes as bytes); 0x80 is a refused subscription."""
    if len(body) < 3:
        raise MqttError("SUBACK of %d bytes" % len(body))
    codes = bytes(body[2:])
    for c in codes:
        if c not in (0, 1, 2, 0x80):
            raise MqttError("SUBACK code 0x%02x" % c)
    return (body[0] << 8) | body[1], codes


def decode_publish(flags, body):
    """(topic, payload, qos, pid, dup, retain); the payload is a slice of ``body`` (a view while it is one)."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MqttError("PUBLISH with qos 3")
    n = len(body)
    if n < 2:
        raise MqttError("PUBLISH too short")
    tlen = (body[0] << 8) | body[1]
    at = 2 + tlen
    if not tlen or n < at + (2 if qos else 0):
        raise MqttError("PUBLISH topic length %d in %d bytes" % (tlen, n))
    try:
        topic = bytes(body[2:at]).decode()
    except UnicodeError:
        raise MqttError("PUBLISH topic not UTF-8")
    if "+" in topic or "#" in topic:
        raise MqttError("PUBLISH topic with a wildcard")
    pid = 0
    if qos:
        pid = (body[at] << 8) | body[at + 1]
        at += 2
        if not pid:
            raise MqttError("PUBLISH qos %d with packet id 0" % qos)
    return topic, body[at:], qos, pid, bool(flags & 8), bool(flags & 1)


# Fixed-header flags the broker must send as they are; PUBLISH carries its own.
_FLAGS = {_CONNACK: 0, _PUBACK: 0, _SUBACK: 0, _UNSUBACK: 0, _PINGRESP: 0}


class Parser:
    """Bytes from the broker in, whole packets out, in one buffer allocated here.

    Read straight into it: ``n = sock.readinto(p.space()); p.advance(n)``;
    then ``p.next()`` gives ``(type, flags, body)`` until None, ``body`` a
    memoryview valid until the next call. ``feed(data)`` does both for
    bytes at hand. A packet over ``size`` bytes, a length of five bytes or
    a type the broker never sends is an ``MqttError``.
    """

    def __init__(self, size=_RX_BYTES):
        if size < 16:
            raise ValueError("receive buffer: at least 16 bytes")
        self.size = size
        self.buf = bytearray(size + 5)  # the body and a fixed header of at most 5 bytes
        self.mv = memoryview(self.buf)
        self.at = 0  # where the next packet starts
        self.end = 0  # bytes held

    def reset(self):
        self.at = self.end = 0

    def space(self):
        at = self.at
        if at:
            held = self.end - at
            if held:
                self.mv[0:held] = self.mv[at : self.end]  # a forward copy: overlap is safe
            self.at, self.end = 0, held
        return self.mv[self.end :]

    def advance(self, n):
        if n < 0 or self.end + n > len(self.buf):
            raise ValueError("advance past the buffer")
        self.end += n

    def next(self):
        at, end, buf = self.at, self.end, self.buf
        if end - at < 2:
            return None
        first = buf[at]
        kind = first >> 4
        if kind == _PUBLISH:
            pass
        elif kind in _FLAGS:
            if first & 0x0F != _FLAGS[kind]:
                raise MqttError("packet type %d with flags 0x%x" % (kind, first & 0x0F))
        else:
            raise MqttError("packet type %d from a broker" % kind)
        length = 0
        shift = 0
        i = at + 1
        while True:
            if i >= end:
                return None  # the length is not whole yet
            b = buf[i]
            i += 1
            length |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MqttError("remaining length over four bytes")
        if length > self.size:
            raise MqttError("packet of %d bytes over the %d-byte receive buffer" % (length, self.size))
        if end - i < length:
            return None
        self.at = i + length
        return kind, first & 0x0F, self.mv[i : i + length]

    def feed(self, data):
        """Every whole packet in ``data`` (with what came before) as ``[(type, flags, bytes), ...]``."""
        out = []
        mv = memoryview(data)
        while True:
            room = self.space()
            n = min(len(room), len(mv))
            room[:n] = mv[:n]
            self.advance(n)
            mv = mv[n:]
            while True:
                p = self.next()
                if p is None:
                    break
                out.append((p[0], p[1], bytes(p[2])))
            if not len(mv):
                return out


def topic_matches(pattern, topic):
    """MQTT topic filter matching (``+`` one level, ``#`` the rest)."""
    if pattern == topic:
        return True
    p = pattern.split("/")
    t = topic.split("/")
    for i in range(len(p)):
        if p[i] == "#":
            return True
        if i >= len(t) or (p[i] != "+" and p[i] != t[i]):
            return False
    return len(p) == len(t)


# -- platform quirks ------------------------------------------------------------------

# errno values a non-blocking connect or read may raise meaning "not yet".
# MicroPython's rp2 port (lwIP) uses Linux numbering; the esp32 port passes
# ESP-IDF's newlib numbers through (EINPROGRESS 119, EALREADY 120, ETIMEDOUT
# 116), and lwIP there also raises 118 while connecting.
BUSY_ERRNO = {
    "rp2": (11, 110, 114, 115),  # EAGAIN, ETIMEDOUT, EALREADY, EINPROGRESS
    "esp32": (11, 116, 118, 119, 120),
    "linux": (11, 114, 115),  # the unix port
    "darwin": (35, 36, 37),  # EAGAIN, EINPROGRESS, EALREADY
}


def busy_errno(platform=None):
    if platform is None:
        import sys

        platform = sys.platform
    return BUSY_ERRNO.get(platform, BUSY_ERRNO["linux"])


# -- client (MicroPython asyncio) ------------------------------------------------------

# Link states (Client.state).
_DOWN = const("down")  # no link; waiting out the backoff
_CONNECTING = const("connecting")  # TCP, TLS, CONNECT sent, waiting for CONNACK
_UP = const("up")  # CONNACK 0: publishing
_CLOSED = const("closed")  # close() called

_ITEM_PID = const(0)
_ITEM_TOPIC = const(1)
_ITEM_PAYLOAD = const(2)
_ITEM_KEY = const(3)
_ITEM_QOS = const(4)
_ITEM_SENT = const(5)  # the link number it was last sent on, 0 never


class Client:
    """One persistent MQTT session for the device, kept up by ``run()`` until ``close()``.

    ``ssl`` is an ``ssl.SSLContext`` (see ``tls_context``) or None for plain
    TCP. ``window`` bounds the QoS1 publishes awaiting PUBACK; ``publish``
    waits while it is full. ``on_reject(key, reason)`` is called when the
    application rejects a record (a NACK) that the window still holds.
    """

    def __init__(self, host, port, client_id, user=None, password=None, keepalive=60,
                 ssl=None, server_hostname=None, window=8, rx_bytes=_RX_BYTES,
                 backoff_ms=(250, 30000), timeout_ms=10000, on_reject=None):
        if not 1 <= window <= 64:
            raise ValueError("window: 1 to 64 publishes")
        if keepalive < 1:
            raise ValueError("keepalive: at least 1 s (a dead link must be noticed)")
        self.host = host
        self.port = port
        self.ssl = ssl
        self.server_hostname = server_hostname or host
        self._connect = encode_connect(client_id, keepalive, user, password, False)
        self.keepalive = keepalive
        self.window = window
        self.backoff_ms = backoff_ms
        self.timeout_ms = timeout_ms
        self.on_reject = on_reject
        self._parser = Parser(rx_bytes)
        self._win = []  # items (lists, see _ITEM_*) in the order published
        self._subs = []  # [topic filter, qos, callback, link number subscribed on]
        self._acks = []  # PUBACKs owed to the broker
        self._pid = 0
        self._link = 0
        self._closing = False
        self._stream = None
        self._err = None
        # link state, for heartbeats
        self.state = _DOWN
        self.connected = False
        self.sessions = 0  # links that reached CONNACK 0
        self.reconnects = 0  # of them, those after the first
        self.session_present = False
        self.last_error = ""
        self.errors = 0
        self.sent = 0  # PUBLISH packets written, DUP included
        self.resent = 0  # of them, with DUP
        self.acked = 0  # PUBACKs for our publishes
        self.received = 0  # PUBLISH packets from the broker
        self.rejected = 0
        self._ev_setup()

    def _ev_setup(self):
        import asyncio

        self._asyncio = asyncio
        self._room = asyncio.Event()  # set when the window frees a place
        self._wake = asyncio.Event()  # something for the writer
        self._up = asyncio.Event()  # set while the link is up
        self._done = asyncio.Event()  # a session's reader or writer ended

    # -- what the application uses ---------------------------------------------------

    def status(self):
        """The link state for a heartbeat."""
        return {
            "state": self.state,
            "connected": self.connected,
            "reconnects": self.reconnects,
            "in_flight": len(self._win),
            "last_error": self.last_error,
        }

    @property
    def in_flight(self):
        return len(self._win)

    def subscribe(self, topic, callback, qos=1):
        """Call ``callback(topic, payload)`` for each message on ``topic``; renewed on every link."""
        if qos not in (0, 1):
            raise ValueError("qos: 0 or 1")
        self._subs.append([topic, qos, callback, 0])
        self._wake.set()

    async def publish(self, topic, payload, key=None, qos=1):
        """Queue ``payload`` for ``topic``; waits while the window is full. QoS1 is sent until PUBACKed."""
        encode_publish_head(topic, len(payload), qos, 1)  # a caller's mistake shows here
        while len(self._win) >= self.window:
            self._room.clear()
            await self._room.wait()
        pid = 0
        if qos:
            pid = self._next_pid()
        self._win.append([pid, topic, payload, key, qos, 0])
        self._wake.set()

    def reject(self, key, reason):
        """Drop the record ``key`` from the window (the node NACKed it): it is not sent again.

        ``on_reject(key, reason)`` runs whether or not the window still held
        it, so the journal moves it aside in one place. True if it was held.
        """
        held = False
        for i in range(len(self._win)):
            if self._win[i][_ITEM_KEY] == key:
                del self._win[i]
                held = True
                self._room.set()
                break
        self.rejected += 1
        if self.on_reject is not None:
            self.on_reject(key, reason)
        return held

    async def wait_connected(self, timeout_ms):
        try:
            await self._asyncio.wait_for_ms(self._up.wait(), timeout_ms)
            return True
        except self._asyncio.TimeoutError:
            return False

    async def drain(self, timeout_ms):
        """Wait until every queued publish is acknowledged; False on timeout."""
        asyncio = self._asyncio
        t = 0
        while self._win:
            if t >= timeout_ms:
                return False
            await asyncio.sleep_ms(20)
            t += 20
        return True

    async def close(self):
        """Send DISCONNECT if up, and end ``run()``."""
        self._closing = True
        if self.connected and self._stream is not None:
            try:
                self._stream.write(DISCONNECT_BYTES)
                await self._asyncio.wait_for_ms(self._stream.drain(), 1000)
            except Exception:  # the link is going anyway
                pass
        self._fail(None)

    # -- the reconnect loop ----------------------------------------------------------

    async def run(self):
        """Connect, and again after every loss, until ``close()``: backoff doubling to the cap, with jitter."""
        import random

        asyncio = self._asyncio
        lo, cap = self.backoff_ms
        delay = lo
        while not self._closing:
            try:
                await self._session()
            except asyncio.CancelledError:
                self._teardown()
                raise
            except Exception as e:  # every link error ends here: OSError, MqttError, a timeout
                self.errors += 1
                self.last_error = self._describe(e)
            up = self.connected
            self._teardown()
            if self._closing:
                break
            if up:
                delay = lo  # the link was good: start the backoff again
            # jitter: 0.5 to 1.5 times the delay, so a fleet does not return in step
            await asyncio.sleep_ms(delay // 2 + (delay * random.getrandbits(10) >> 10))
            delay = min(delay * 2, cap)
        self.state = _CLOSED

    def _describe(self, e):
        if isinstance(e, OSError) and e.args and isinstance(e.args[0], int):
            return "OSError %d" % e.args[0]
        if isinstance(e, self._asyncio.TimeoutError):
            return "timeout"
        return "%s: %s" % (type(e).__name__, str(e).strip())

    def _teardown(self):
        self.connected = False
        self._up.clear()
        if self.state != _CLOSED:
            self.state = _DOWN
        st = self._stream
        self._stream = None
        if st is not None:
            try:
                st.close()
            except Exception:
                pass

    def _fail(self, err):
        """End the current session (from any task): the loop in ``run`` takes it from there."""
        if self._err is None:
            self._err = err
        self._done.set()

    async def _open(self):
        import socket

        asyncio = self._asyncio
        ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        try:
            s.setblocking(False)
            try:
                s.connect(ai[-1])
            except OSError as e:
                if e.args[0] not in busy_errno():
                    raise
            import select

            poll = select.poll()
            poll.register(s, select.POLLOUT)
            waited = 0
            while True:
                ev = poll.poll(0)
                if ev:
                    if ev[0][1] & (select.POLLERR | select.POLLHUP):
                        raise OSError(111)  # ECONNREFUSED on every port we run on
                    break
                if waited >= self.timeout_ms:
                    raise MqttError("TCP connect timed out after %d ms" % self.timeout_ms)
                await asyncio.sleep_ms(10)
                waited += 10
            poll.unregister(s)
            if self.ssl is not None:
                s = self.ssl.wrap_socket(s, server_hostname=self.server_hostname,
                                         do_handshake_on_connect=False)
            return asyncio.StreamReader(s)
        except BaseException:
            s.close()
            raise

    async def _session(self):
        asyncio = self._asyncio
        self.state = _CONNECTING
        self._err = None
        self._done.clear()
        self._parser.reset()
        st = await self._open()
        self._stream = st
        self._link += 1
        st.write(self._connect)
        try:
            await asyncio.wait_for_ms(st.drain(), self.timeout_ms)  # TLS handshake happens here
            kind, body = await asyncio.wait_for_ms(self._read_packet(st), self.timeout_ms)
        except asyncio.TimeoutError:
            raise MqttError("no CONNACK within %d ms" % self.timeout_ms)
        if kind != _CONNACK:
            raise MqttError("packet type %d before CONNACK" % kind)
        present, rc = decode_connack(body)
        if rc:
            raise MqttError("broker refused CONNECT: %s (%d)" % (CONNACK_CODES[rc], rc), rc)
        self.session_present = present
        self.sessions += 1
        if self.sessions > 1:
            self.reconnects += 1
        self.state = _UP
        self.connected = True
        self._up.set()
        self._last_rx = self._now()
        self._acks = []  # owed on the old link; the broker sends those messages again
        reader = asyncio.create_task(self._guard(self._reader(st)))
        writer = asyncio.create_task(self._guard(self._writer(st)))
        try:
            await self._done.wait()
        finally:
            reader.cancel()
            writer.cancel()
        if self._err is not None:
            raise self._err

    async def _guard(self, coro):
        try:
            await coro
        except Exception as e:
            self._fail(e)

    def _now(self):
        import time

        return time.ticks_ms()

    async def _read_packet(self, st):
        p = self._parser
        while True:
            pkt = p.next()
            if pkt is not None:
                return pkt[0], pkt[2]
            n = await st.readinto(p.space())
            if n is None:
                continue  # TLS: a record not whole yet
            if not n:
                raise MqttError("link closed by the broker")
            p.advance(n)

    async def _reader(self, st):
        p = self._parser
        while True:
            n = await st.readinto(p.space())
            if n is None:
                continue
            if not n:
                raise MqttError("link closed by the broker")
            p.advance(n)
            self._last_rx = self._now()
            while True:
                pkt = p.next()
                if pkt is None:
                    break
                self._packet(pkt[0], pkt[1], pkt[2])

    def _packet(self, kind, flags, body):
        if kind == _PUBACK:
            pid = decode_puback(body)
            win = self._win
            for i in range(len(win)):
                if win[i][_ITEM_PID] == pid and win[i][_ITEM_QOS]:
                    del win[i]
                    self.acked += 1
                    self._room.set()
                    break
        elif kind == _PUBLISH:
            topic, payload, qos, pid, _, _ = decode_publish(flags, body)
            self.received += 1
            for s in self._subs:
                if topic_matches(s[0], topic):
                    try:
                        s[2](topic, bytes(payload))
                    except Exception as e:  # the application's fault must not take the link down
                        self.errors += 1
                        self.last_error = "callback for %s: %s" % (topic, e)
                    break
            if qos:
                self._acks.append(pid)
                self._wake.set()
        elif kind == _SUBACK:
            _, codes = decode_suback(body)
            if 0x80 in codes:
                self.errors += 1
                self.last_error = "broker refused a subscription"
        elif kind == _CONNACK:
            raise MqttError("second CONNACK")
        # PINGRESP: _last_rx is all it is for; UNSUBACK: we never unsubscribe

    def _next_pid(self):
        while True:
            self._pid = self._pid % 0xFFFF + 1
            for item in self._win:
                if item[_ITEM_PID] == self._pid:
                    break
            else:
                return self._pid

    async def _send(self, st, data, payload=None):
        st.write(data)
        if payload is not None:
            st.write(payload)
        await self._asyncio.wait_for_ms(st.drain(), self.timeout_ms)

    async def _writer(self, st):
        """The only task that writes on a link: subscriptions, then the window in order, acks, pings."""
        asyncio = self._asyncio
        link = self._link
        ka_ms = self.keepalive * 1000
        last_tx = self._now()
        while True:
            self._wake.clear()
            subs = [s for s in self._subs if s[3] != link]
            if subs:
                await self._send(st, encode_subscribe(self._next_pid(), [(s[0], s[1]) for s in subs]))
                for s in subs:
                    s[3] = link
            while True:  # the first item not yet sent on this link, again after each await
                item = None
                for it in self._win:
                    if it[_ITEM_SENT] != link:
                        item = it
                        break
                if item is None:
                    break
                dup = item[_ITEM_SENT] != 0
                head = encode_publish_head(item[_ITEM_TOPIC], len(item[_ITEM_PAYLOAD]),
                                           item[_ITEM_QOS], item[_ITEM_PID], dup)
                item[_ITEM_SENT] = link
                if not item[_ITEM_QOS]:
                    self._win.remove(item)
                    self._room.set()
                await self._send(st, head, item[_ITEM_PAYLOAD])
                self.sent += 1
                if dup:
                    self.resent += 1
                last_tx = self._now()
            while self._acks:
                await self._send(st, encode_puback(self._acks.pop(0)))
                last_tx = self._now()
            now = self._now()
            if time_diff(now, self._last_rx) > ka_ms * 3 // 2:
                raise MqttError("no answer from the broker for %d s" % (ka_ms * 3 // 2000))
            if time_diff(now, last_tx) >= ka_ms // 2:
                await self._send(st, PINGREQ_BYTES)
                last_tx = self._now()
            if self._wake.is_set():
                continue
            try:
                await asyncio.wait_for_ms(self._wake.wait(), max(ka_ms // 4, 50))
            except asyncio.TimeoutError:
                pass


def time_diff(a, b):
    import time

    return time.ticks_diff(a, b)


def tls_context(ca_der):
    """A TLS client context that trusts only ``ca_der`` (the broker CA, DER) and checks the server's name."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca_der)
    return ctx
