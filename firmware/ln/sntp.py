"""SNTP client (RFC 5905 on-wire, RFC 4330 client rules), microseconds, no floats.

MicroPython's ``ntptime`` keeps whole seconds and checks nothing. Here the
core is sans-IO: ``request`` builds the 48-byte client packet, ``parse``
checks every field of a reply and returns a ``Sample`` with the offset and
round-trip delay from the four timestamps. Everything is integer
microseconds (boards have 30-bit floats); NTP's 64-bit fractions convert
exactly. ``query`` is a thin UDP transport over ``socket``.

    from ln import sntp
    s = sntp.query("127.0.0.1", now_us=clock.now_us)   # SntpError if refused
    clock.sync_sample(s)
"""

import struct

from lightnode.drivers import ticks

# Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
NTP_UNIX_S = 2208988800
ERA_S = 1 << 32
MODE_CLIENT = 3
MODE_SERVER = 4
VERSION = 4
LEAP_UNSYNC = 3
PACKET = 48
# RFC 5905 MAXDIST: a server whose root distance is above this is not a clock.
MAX_ROOT_DISTANCE_US = 1500000

# Reasons a reply or a query is refused (SntpError.reason).
R_TIMEOUT = "timeout"
R_LINK = "link"
R_SHORT = "short"
R_MODE = "mode"
R_VERSION = "version"
R_STRATUM = "stratum"
R_KISS = "kiss-o'-death"
R_UNSYNC = "unsynchronised"
R_ORIGIN = "originate mismatch"
R_TIMES = "timestamps"
R_DISTANCE = "root distance"


class SntpError(Exception):
    """The server or the link refused us a time; ``reason`` is one of R_*.

    ``kiss`` holds the four-letter kiss code (``"RATE"``, ``"DENY"``...)
    of a kiss-o'-death reply, else None.
    """

    def __init__(self, reason, detail="", kiss=None):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail
        self.kiss = kiss


def us_to_ntp(us):
    """(seconds, fraction) of the NTP timestamp for ``us`` since 1970.

    The fraction is rounded up so that ``ntp_to_us`` gives ``us`` back
    exactly; seconds wrap into era 1 after 2036-02-07.
    """
    if us < 0:
        raise ValueError("time before 1970")
    s, rem = divmod(us, 1000000)
    frac = ((rem << 32) + 999999) // 1000000
    return (s + NTP_UNIX_S) % ERA_S, frac


def ntp_to_us(sec, frac):
    """Microseconds since 1970 of an NTP timestamp, rounded to nearest.

    RFC 4330 section 3: with the top bit of the seconds set the time is in
    era 0 (1968-2036), else in era 1 (2036-2104).
    """
    if not sec & 0x80000000:
        sec += ERA_S
    return (sec - NTP_UNIX_S) * 1000000 + ((frac * 1000000 + 0x80000000) >> 32)


def short_to_us(v):
    """Microseconds of an NTP short (16.16 seconds), rounded to nearest."""
    return (v * 1000000 + 0x8000) >> 16


def request(t1_us, salt=0):
    """The 48-byte client request sent at ``t1_us`` (us since 1970).

    ``salt`` (0..4095) fills the fraction's bits below a microsecond, so the
    echoed originate timestamp is hard to guess for an off-path spoofer.
    Returns (packet, originate bytes the reply must echo).
    """
    sec, frac = us_to_ntp(t1_us)
    frac = (frac & ~0xFFF) | (salt & 0xFFF)
    pkt = bytearray(PACKET)
    pkt[0] = (0 << 6) | (VERSION << 3) | MODE_CLIENT
    struct.pack_into(">II", pkt, 40, sec, frac)
    return pkt, bytes(pkt[40:48])


class Sample:
    """One checked reply: offset and delay (us), and what the server said of itself."""

    def __init__(
        self, offset_us, delay_us, stratum, root_delay_us, root_disp_us, leap, refid, t4_us
    ):
        self.offset_us = offset_us
        self.delay_us = delay_us
        self.stratum = stratum
        self.root_delay_us = root_delay_us
        self.root_disp_us = root_disp_us
        self.leap = leap
        self.refid = refid
        self.t4_us = t4_us  # our clock when the reply came

    def __repr__(self):
        return "Sample(offset=%dus, delay=%dus, stratum=%d)" % (
            self.offset_us,
            self.delay_us,
            self.stratum,
        )


def offset_delay(t1, t2, t3, t4):
    """RFC 5905 on-wire: (offset, delay) from the four timestamps, integers.

    offset = ((t2 - t1) + (t3 - t4)) / 2, floored; delay = (t4 - t1) - (t3 - t2).
    """
    return ((t2 - t1) + (t3 - t4)) // 2, (t4 - t1) - (t3 - t2)


def parse(data, originate, t1_us, t4_us):
    """Check a server reply and return a ``Sample``; SntpError if refused.

    ``originate`` is the 8 bytes ``request`` returned: the reply must echo
    them. ``t1_us`` and ``t4_us`` are our clock at send and at receipt.
    """
    if len(data) < PACKET:
        raise SntpError(R_SHORT, "%d bytes" % len(data))
    b0 = data[0]
    leap = b0 >> 6
    version = (b0 >> 3) & 7
    mode = b0 & 7
    if mode != MODE_SERVER:
        raise SntpError(R_MODE, "mode %d" % mode)
    if version not in (3, 4):
        raise SntpError(R_VERSION, "version %d" % version)
    # Checked before anything else the server says: a reply that does not
    # echo our request is not an answer to us, kiss-o'-death included.
    if bytes(data[24:32]) != originate:
        raise SntpError(R_ORIGIN)
    stratum = data[1]
    refid = bytes(data[12:16])
    if stratum == 0:
        code = "".join(chr(c) if 32 <= c < 127 else "?" for c in refid)
        raise SntpError(R_KISS, code, kiss=code)
    if stratum > 15:
        raise SntpError(R_STRATUM, "stratum %d" % stratum)
    if leap == LEAP_UNSYNC:
        raise SntpError(R_UNSYNC)
    rdelay, rdisp = struct.unpack_from(">II", data, 4)
    rs, rf, ts, tf = struct.unpack_from(">IIII", data, 32)
    if not (rs or rf) or not (ts or tf):
        raise SntpError(R_TIMES, "zero receive or transmit timestamp")
    t2 = ntp_to_us(rs, rf)
    t3 = ntp_to_us(ts, tf)
    if t3 < t2:
        raise SntpError(R_TIMES, "server transmit before receive")
    if t4_us < t1_us:
        raise ValueError("t4 before t1")
    root_delay_us = short_to_us(rdelay)
    root_disp_us = short_to_us(rdisp)
    if root_delay_us // 2 + root_disp_us > MAX_ROOT_DISTANCE_US:
        raise SntpError(R_DISTANCE, "%d us" % (root_delay_us // 2 + root_disp_us))
    offset, delay = offset_delay(t1_us, t2, t3, t4_us)
    if delay < 0:  # microsecond rounding on a fast link
        delay = 0
    return Sample(offset, delay, stratum, root_delay_us, root_disp_us, leap, refid, t4_us)


try:
    _Timeout = TimeoutError  # CPython's socket.timeout
except NameError:  # MicroPython raises OSError(ETIMEDOUT) or OSError(EAGAIN)
    _Timeout = ()


def _salt():
    try:
        import os

        return int.from_bytes(os.urandom(2), "big") & 0xFFF
    except (ImportError, AttributeError, NotImplementedError):
        return ticks.ticks_us() & 0xFFF


def _timed_out(e):
    # ETIMEDOUT is 110 on linux and rp2/esp32 lwIP builds, 116 on some; EAGAIN 11.
    return isinstance(e, _Timeout) or (e.args and e.args[0] in (110, 116, 11))


def query(host, port=123, now_us=None, samples=3, timeout_ms=2000, socket_mod=None):
    """Ask ``host`` ``samples`` times; the reply with the least delay wins.

    ``now_us`` is the clock the offset is measured against (us since 1970).
    All of it ends within ``timeout_ms``: the samples already in are kept
    when a later one is late. A reply that fails a check is dropped and the
    wait goes on (a spoofed packet must not hide the true one); a
    kiss-o'-death ends the query at once. SntpError if no sample came.
    """
    if socket_mod is None:
        import socket as socket_mod
    if now_us is None:
        now_us = _host_now_us
    addr = socket_mod.getaddrinfo(host, port)[0][-1]
    sock = socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM)
    buf = bytearray(PACKET + 16)
    best = None
    refused = None
    start = ticks.ticks_us()
    limit = timeout_ms * 1000
    # One datagram per call. MicroPython's stream readinto would keep
    # reading until the buffer is full, joining datagrams: recv there.
    recv_into = getattr(sock, "recv_into", None) or (lambda b: _recv_into(sock, b))
    try:
        sock.connect(addr)  # the stack drops datagrams from anyone else
        for _ in range(samples):
            t1 = now_us()
            pkt, orig = request(t1, _salt())
            try:
                sock.send(pkt)
            except OSError as e:
                raise SntpError(R_LINK, str(e))
            got = None
            while got is None:
                left = limit - ticks.ticks_diff(ticks.ticks_us(), start)
                if left <= 0:
                    break
                sock.settimeout(left / 1000000)
                try:
                    n = recv_into(buf)
                except OSError as e:
                    if _timed_out(e):
                        break
                    raise SntpError(R_LINK, str(e))
                t4 = now_us()
                try:
                    got = parse(memoryview(buf)[:n], orig, t1, t4)
                except SntpError as e:
                    if e.reason == R_KISS:
                        raise
                    refused = e
            if got is None:
                break
            if best is None or got.delay_us < best.delay_us:
                best = got
    finally:
        sock.close()
    if best is None:
        if refused is not None:
            raise refused
        raise SntpError(R_TIMEOUT, "no reply from %s:%d in %d ms" % (host, port, timeout_ms))
    return best


def _recv_into(sock, buf):
    data = sock.recv(len(buf))
    buf[: len(data)] = data
    return len(data)


def _host_now_us():
    import time

    if hasattr(time, "time_ns"):
        return time.time_ns() // 1000
    return int(time.time()) * 1000000  # pragma: no cover
