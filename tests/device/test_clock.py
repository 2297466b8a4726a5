# SNTP arithmetic and the disciplined clock, without sockets: golden values,
# NTP timestamps at their edges, the ticks wrap, step against slew, and how
# uncertainty grows. Time is moved by shifting the ticks shim.
import struct

from lightnode.drivers import ticks
from ln import clock, sntp, wire

PORTS = ("unix", "wasm")

T0 = 1767225600000000  # 2026-01-01 00:00:00 UTC, us
SLACK = 50000  # real time that passes while a test runs (the wasm port is slow)


def advance(us):
    ticks._offset += us


def advance_fed(c, us):
    # Long spans in steps under half a ticks period, touched as the main loop would.
    while us > 0:
        n = min(us, clock.MAX_FEED_US - 1000000)
        advance(n)
        c.touch()
        us -= n


def near(a, b, tol=SLACK):
    return abs(a - b) <= tol


def reply(
    orig, t2_us, t3_us, stratum=2, leap=0, version=4, mode=4, rdelay=0, rdisp=0, refid=b"GPS\x00"
):
    pkt = bytearray(48)
    pkt[0] = (leap << 6) | (version << 3) | mode
    pkt[1] = stratum
    struct.pack_into(">II", pkt, 4, rdelay, rdisp)
    pkt[12:16] = refid
    pkt[24:32] = orig
    struct.pack_into(">II", pkt, 32, *sntp.us_to_ntp(t2_us))
    struct.pack_into(">II", pkt, 40, *sntp.us_to_ntp(t3_us))
    return bytes(pkt)


def refused(reason, *args):
    try:
        sntp.parse(*args)
    except sntp.SntpError as e:
        assert e.reason == reason, (e.reason, reason)
        return e
    raise AssertionError("accepted, expected %s" % reason)


def test_offset_delay_golden():
    # Client 100 us behind; 10 us each way, 30 us in the server.
    assert sntp.offset_delay(1000, 1110, 1140, 1050) == (100, 20)
    assert sntp.offset_delay(0, 150, 160, 20) == (145, 10)
    assert sntp.offset_delay(T0, T0 - 2000000, T0 - 1999990, T0 + 30) == (-2000010, 20)
    assert sntp.offset_delay(0, 0, 0, 3) == (-2, 3)  # floored


def test_ntp_timestamp_edges():
    assert sntp.us_to_ntp(0) == (sntp.NTP_UNIX_S, 0)
    assert sntp.ntp_to_us(sntp.NTP_UNIX_S, 0) == 0
    assert sntp.us_to_ntp(500000) == (sntp.NTP_UNIX_S, 0x80000000)
    assert sntp.ntp_to_us(sntp.NTP_UNIX_S, 0x40000000) == 250000
    assert sntp.us_to_ntp(1) == (sntp.NTP_UNIX_S, 4295)
    assert sntp.us_to_ntp(999999)[1] == 0xFFFFEF3A
    # Era 0 ends 2036-02-07 06:28:16 UTC; era 1 starts at NTP seconds 0.
    era1 = ((1 << 32) - sntp.NTP_UNIX_S) * 1000000
    assert era1 == 2085978496000000
    assert sntp.us_to_ntp(era1) == (0, 0)
    assert sntp.ntp_to_us(0, 0) == era1
    assert sntp.ntp_to_us(0xFFFFFFFF, 0) == era1 - 1000000
    assert sntp.us_to_ntp(era1 - 1) == (0xFFFFFFFF, 0xFFFFEF3A)
    # The largest fraction rounds up into the next second.
    assert sntp.ntp_to_us(0xFFFFFFFF, 0xFFFFFFFF) == era1
    # The range ends in 2104 (era 1, seconds 0x7FFFFFFF) and starts in 1968.
    assert sntp.ntp_to_us(0x7FFFFFFF, 0xFFFFFFFF) == ((3 << 31) - sntp.NTP_UNIX_S) * 1000000
    # 1968-01-20 (NTP seconds 0x80000000) is before 1970: negative, still exact.
    assert sntp.ntp_to_us(0x80000000, 0) == (0x80000000 - sntp.NTP_UNIX_S) * 1000000
    for us in (
        0,
        1,
        2,
        499999,
        500000,
        999998,
        999999,
        T0 + 123457,
        era1 - 1,
        era1 + 1,
        era1 + 999999,
    ):
        assert sntp.ntp_to_us(*sntp.us_to_ntp(us)) == us, us
    assert sntp.short_to_us(0x00010000) == 1000000
    assert sntp.short_to_us(0x00008000) == 500000
    assert sntp.short_to_us(1) == 15  # 15.26 us
    try:
        sntp.us_to_ntp(-1)
    except ValueError:
        pass
    else:
        raise AssertionError("negative time accepted")


def test_request_layout():
    pkt, orig = sntp.request(T0 + 250000, salt=0xABC)
    assert len(pkt) == 48
    assert pkt[0] == 0x23  # LI 0, version 4, mode 3
    assert bytes(pkt[1:40]) == bytes(39)
    assert bytes(pkt[40:48]) == orig
    sec, frac = struct.unpack(">II", orig)
    assert sec == T0 // 1000000 + sntp.NTP_UNIX_S
    assert frac & 0xFFF == 0xABC
    assert abs(sntp.ntp_to_us(sec, frac) - (T0 + 250000)) <= 1  # salt is below a microsecond


def test_parse_good_reply():
    _, orig = sntp.request(T0, salt=7)
    data = reply(orig, T0 + 1010, T0 + 1040, stratum=3, rdelay=0x00000800, rdisp=0x00000100)
    s = sntp.parse(data, orig, T0, T0 + 60)
    assert (s.offset_us, s.delay_us) == (995, 30)
    assert s.stratum == 3 and s.leap == 0 and s.refid == b"GPS\x00"
    assert s.root_delay_us == 31250 and s.root_disp_us == 3906
    assert s.t4_us == T0 + 60
    # A memoryview and a longer datagram (extension fields) are fine.
    assert sntp.parse(memoryview(data + bytes(20)), orig, T0, T0 + 60).offset_us == 995
    # Version 3 servers are still answered.
    v3 = reply(orig, T0 + 10, T0 + 20, version=3)
    assert sntp.parse(v3, orig, T0, T0 + 30).offset_us == 0


def test_parse_refusals():
    _, orig = sntp.request(T0, salt=1)
    args = (orig, T0 + 10, T0 + 20)
    refused(sntp.R_SHORT, reply(*args)[:47], orig, T0, T0 + 30)
    refused(sntp.R_MODE, reply(*args, mode=3), orig, T0, T0 + 30)
    refused(sntp.R_MODE, reply(*args, mode=5), orig, T0, T0 + 30)
    refused(sntp.R_VERSION, reply(*args, version=2), orig, T0, T0 + 30)
    refused(sntp.R_VERSION, reply(*args, version=5), orig, T0, T0 + 30)
    refused(sntp.R_STRATUM, reply(*args, stratum=16), orig, T0, T0 + 30)
    refused(sntp.R_UNSYNC, reply(*args, leap=3), orig, T0, T0 + 30)
    e = refused(sntp.R_KISS, reply(*args, stratum=0, refid=b"RATE"), orig, T0, T0 + 30)
    assert e.kiss == "RATE"
    bad = bytearray(orig)
    bad[7] ^= 1
    refused(sntp.R_ORIGIN, reply(bytes(bad), T0 + 10, T0 + 20), orig, T0, T0 + 30)
    # A spoofed kiss-o'-death that does not echo us is not believed.
    refused(
        sntp.R_ORIGIN,
        reply(bytes(bad), T0 + 10, T0 + 20, stratum=0, refid=b"DENY"),
        orig,
        T0,
        T0 + 30,
    )
    refused(sntp.R_TIMES, reply(orig, T0 + 20, T0 + 10), orig, T0, T0 + 30)
    zero = bytearray(reply(*args))
    zero[40:48] = bytes(8)
    refused(sntp.R_TIMES, bytes(zero), orig, T0, T0 + 30)
    refused(sntp.R_DISTANCE, reply(*args, rdisp=0x00018001), orig, T0, T0 + 30)
    # Leap 1 and 2 (a leap second announced) are synchronised servers.
    assert sntp.parse(reply(*args, leap=1), orig, T0, T0 + 30).leap == 1


def test_never_synced_is_unknown():
    c = clock.Clock(initial_us=T0)
    assert c.quality() == (wire.TQ_UNSYNCED, clock.UNKNOWN_US)
    t, q, u = c.stamp()
    assert near(t, T0) and q == wire.TQ_UNSYNCED and u == clock.UNKNOWN_US


def test_first_sync_steps():
    c = clock.Clock(initial_us=T0)
    assert c.sync(5000000, delay_us=400, root_delay_us=1000, root_disp_us=300) == 5000000
    assert c.steps == 1
    assert near(c.now_us(), T0 + 5000000)
    q, u = c.quality()
    assert q == wire.TQ_NTP
    assert 200 + 500 + 300 <= u < 1000 + SLACK * clock.WANDER_PPM // 1000000 + 1


def test_wrap_is_handled():
    ticks.force_wrap(5000)
    c = clock.Clock(initial_us=T0)
    c.sync(0)
    t = c.now_us()
    # Ten half-periods less a little, fed each time: five full wraps.
    step = clock.MAX_FEED_US - 1000000
    for _ in range(10):
        advance(step)
        c.touch()
    assert not c.lost
    assert near(c.now_us(), t + 10 * step)
    assert c.quality()[0] == wire.TQ_UNSYNCED  # 89 minutes is past the holdover
    # A clock left unfed for more than half a period says it is lost.
    advance(clock.MAX_FEED_US + 1000000)
    c.touch()
    assert c.lost
    assert c.quality() == (wire.TQ_UNSYNCED, clock.UNKNOWN_US)
    # The next sync steps it back into service.
    assert c.sync(1000) == 1000
    assert not c.lost and c.quality()[0] == wire.TQ_NTP


def test_step_vs_slew():
    c = clock.Clock(initial_us=T0)
    c.sync(0)
    before = c.now_us()
    assert c.sync(clock.STEP_US) is None  # at the threshold: slewed
    after = c.now_us()
    assert 0 <= after - before < SLACK  # no jump
    q, u = c.quality()
    assert u >= clock.STEP_US - SLACK * clock.SLEW_PPM // 1000000
    advance(100000000)  # 100 s slews 50 ms out at 500 ppm
    assert near(c.now_us(), after + 100000000 + 50000)
    advance(200000000)
    assert near(c.now_us(), after + 300000000 + clock.STEP_US)
    assert c._pending() == 0
    # Above the threshold, either way: stepped at once and reported.
    t = c.now_us()
    assert c.sync(-(clock.STEP_US + 1)) == -(clock.STEP_US + 1)
    assert near(c.now_us(), t - clock.STEP_US - 1)
    assert c.steps == 2


def test_time_never_runs_back_while_slewing():
    c = clock.Clock(initial_us=T0)
    c.sync(0)
    c.sync(-100000)
    last = c.now_us()
    for _ in range(50):
        advance(1000000)
        t = c.now_us()
        assert t >= last
        last = t


def test_frequency_learned_and_bounded():
    c = clock.Clock(initial_us=T0)
    c.sync(0)
    advance(100000000)
    # The true clock ran 50 ppm faster: 5 ms over 100 s.
    assert c.sync(5000) is None
    assert c.freq_known
    assert near(c.freq_ppb, 50000, 1000)
    # Next interval: drift corrected, the 5 ms slewed out (10 s at 500 ppm).
    t = c.now_us()
    advance(100000000)
    assert near(c.now_us(), t + 100000000 + 5000 + 5000)
    # A wild sample cannot teach more than MAX_PPM.
    advance(20000000)
    c.sync(100000)
    assert c.freq_ppb == clock.MAX_PPM * 1000
    d = clock.Clock(initial_us=T0)
    d.sync(0)
    advance(20000000)
    d.sync(-100000)
    assert d.freq_ppb == -clock.MAX_PPM * 1000
    # Syncs closer than the minimum interval leave the frequency alone.
    e = clock.Clock(initial_us=T0)
    e.sync(0)
    advance(1000000)
    e.sync(3000)
    assert e.freq_ppb == 0 and not e.freq_known


def test_uncertainty_grows_then_lapses():
    c = clock.Clock(initial_us=T0)
    c.sync(0, delay_us=2000, root_delay_us=1000, root_disp_us=300)
    q, u0 = c.quality()
    assert q == wire.TQ_NTP and near(u0, 1800, 10)
    advance(100000000)  # 100 s at 100 ppm: 10 ms more
    q, u = c.quality()
    assert q == wire.TQ_NTP and near(u, 1800 + 10000, 20)
    advance_fed(c, clock.HOLDOVER_US)
    q, u = c.quality()
    assert q == wire.TQ_UNSYNCED
    assert near(u, 1800 + (clock.HOLDOVER_US + 100000000) // 10000, 20)
    # Once the frequency is tracked the growth is slower.
    c.sync(0)
    advance(100000000)
    c.sync(0)
    assert c.freq_known
    advance(100000000)
    assert near(c.quality()[1], 100 * clock.TRACKED_PPM, 20)


def test_source_timestamp_preferred():
    c = clock.Clock(initial_us=T0)
    c.sync(0, delay_us=4000)
    assert c.stamp(source_us=T0 + 7, source_unc_us=1) == (T0 + 7, wire.TQ_SOURCE, 1)
    t, q, u = c.stamp(source_us=T0 + 9)
    assert (t, q) == (T0 + 9, wire.TQ_SOURCE) and u >= 2000
    t, q, u = c.stamp()
    assert q == wire.TQ_NTP and near(t, T0)


class FakeNet:
    """A socket module whose server answers each request with ``answer(orig)``."""

    AF_INET = 2
    SOCK_DGRAM = 2

    def __init__(self, answer):
        self.answer = answer
        self.sent = 0

    def getaddrinfo(self, host, port):
        return [(2, 2, 17, "", (host, port))]

    def socket(self, af, kind):
        return FakeSock(self)


class FakeSock:
    def __init__(self, net):
        self.net = net
        self.queue = []

    def connect(self, addr):
        pass

    def settimeout(self, t):
        assert 0 < t <= 10

    def send(self, pkt):
        self.net.sent += 1
        self.queue = list(self.net.answer(bytes(pkt[40:48]), self.net.sent))

    def recv(self, n):
        if not self.queue:
            raise OSError(110)  # ETIMEDOUT, at once
        return self.queue.pop(0)[:n]

    def close(self):
        pass


def fake_clock(times):
    times = list(times)
    return lambda: times.pop(0)


def test_query_keeps_least_delay():
    # Delays 300, 100, 500 us; the server is 7 ms ahead.
    now = fake_clock([T0, T0 + 300, T0 + 1000, T0 + 1100, T0 + 2000, T0 + 2500])
    sends = {1: T0 + 150, 2: T0 + 1050, 3: T0 + 2250}

    def answer(orig, n):
        t = sends[n] + 7000
        return [reply(orig, t, t)]

    net = FakeNet(answer)
    s = sntp.query("192.0.2.1", now_us=now, samples=3, timeout_ms=1000, socket_mod=net)
    assert (s.offset_us, s.delay_us, s.t4_us) == (7000, 100, T0 + 1100)
    assert net.sent == 3


def test_query_spoof_does_not_hide_the_answer():
    bad = lambda orig: bytes(8) if orig != bytes(8) else b"\x01" * 8  # noqa: E731
    net = FakeNet(lambda orig, n: [reply(bad(orig), T0 + 5, T0 + 5), reply(orig, T0 + 5, T0 + 5)])
    # Our clock is read at every datagram: the forgery's, then the answer's.
    s = sntp.query("x", now_us=fake_clock([T0, T0 + 8, T0 + 10]), samples=1, socket_mod=net)
    assert (s.offset_us, s.delay_us) == (0, 10)
    # Only forgeries: refused for what they were, once the time is up.
    net = FakeNet(lambda orig, n: [reply(bad(orig), T0 + 5, T0 + 5)])
    try:
        sntp.query("x", now_us=fake_clock([T0, T0 + 10]), samples=1, socket_mod=net)
    except sntp.SntpError as e:
        assert e.reason == sntp.R_ORIGIN
    else:
        raise AssertionError("forged reply accepted")


def test_query_kiss_stops_at_once():
    net = FakeNet(lambda orig, n: [reply(orig, T0, T0, stratum=0, refid=b"DENY")])
    try:
        sntp.query("x", now_us=fake_clock([T0, T0 + 10]), samples=3, socket_mod=net)
    except sntp.SntpError as e:
        assert e.reason == sntp.R_KISS and e.kiss == "DENY"
    else:
        raise AssertionError("kiss-o'-death accepted")
    assert net.sent == 1


def test_query_keeps_what_came_before_a_loss():
    net = FakeNet(lambda orig, n: [reply(orig, T0 + 5, T0 + 5)] if n == 1 else [])
    s = sntp.query("x", now_us=fake_clock([T0, T0 + 10, T0 + 20]), samples=3, socket_mod=net)
    assert s.delay_us == 10 and net.sent == 2
    net = FakeNet(lambda orig, n: [])
    try:
        sntp.query("x", now_us=fake_clock([T0]), samples=3, socket_mod=net)
    except sntp.SntpError as e:
        assert e.reason == sntp.R_TIMEOUT
    else:
        raise AssertionError("no reply, yet a sample")
