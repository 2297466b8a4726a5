# Modbus codec: golden bytes for every function code (the examples of the
# Modbus Application Protocol spec v1.1b3, section 6), CRC-16 known values,
# RTU and TCP frames fed whole and one byte at a time, exception responses,
# register decoding in all four orders for every type, RTU timing.
from lightnode.drivers.modbus import (
    ExceptionResponse,
    LocalProtocolError,
    RemoteProtocolError,
    master,
    pdu,
    registers,
    rtu,
    tap,
    tcp,
)

PORTS = ("unix", "wasm")

h = bytes.fromhex

# (request, request PDU, response PDU, result): spec section 6 examples.
GOLDEN = [
    ((1, 19, 19), "0100130013", "0103cd6b05",
     [True, False, True, True, False, False, True, True,
      True, True, False, True, False, True, True, False,
      True, False, True]),
    ((2, 196, 22), "0200c40016", "0203acdb35",
     [False, False, True, True, False, True, False, True,
      True, True, False, True, True, False, True, True,
      True, False, True, False, True, True]),
    ((3, 107, 3), "03006b0003", "0306022b00000064", [555, 0, 100]),
    ((4, 8, 1), "0400080001", "0402000a", [10]),
    ((5, 172, True), "0500acff00", "0500acff00", (172, True)),
    ((6, 1, 3), "0600010003", "0600010003", (1, 3)),
    ((15, 19, [True, False, True, True, False, False, True, True, True, False]),
     "0f0013000a02cd01", "0f0013000a", (19, 10)),
    ((16, 1, [10, 258]), "100001000204000a0102", "1000010002", (1, 2)),
]


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %s%r" % (exc.__name__, fn.__name__, args))


def test_requests_golden():
    for request, req_hex, _resp, _result in GOLDEN:
        assert pdu.encode_request(*request) == h(req_hex), request
        assert pdu.decode_request(h(req_hex)) == request, req_hex
        assert pdu.request_length(h(req_hex), len(req_hex) // 2) == len(req_hex) // 2


def test_responses_golden():
    for request, _req, resp_hex, result in GOLDEN:
        assert pdu.decode_response(h(resp_hex), request) == result, resp_hex
        assert pdu.response_length(h(resp_hex), len(resp_hex) // 2) == len(resp_hex) // 2
        function = request[0]
        if function in (1, 2, 3, 4):
            assert pdu.encode_response(function, result) == h(resp_hex)
        elif function in (5, 6):
            assert pdu.encode_response(function, result) == h(resp_hex)
        else:
            assert pdu.encode_response(function, (request[1], len(request[2]))) == h(resp_hex)


def test_exception_responses():
    # spec section 7: read input registers of a missing address
    got = pdu.decode_response(h("8402"), (4, 1185, 1))
    assert got == ExceptionResponse(4, 2)
    assert got.function == 4 and got.code == 2 and got.name == "illegal data address"
    assert pdu.encode_response(4, got) == h("8402")
    for function in pdu.FUNCTIONS:
        r = pdu.decode_response(bytes((function | 0x80, 4)), (function, 0, 1 if function < 15 else [1]))
        assert r == ExceptionResponse(function, 4) and r != ExceptionResponse(function, 3)
    assert "server device failure" in repr(ExceptionResponse(3, 4))
    _raises(RemoteProtocolError, pdu.decode_response, h("840201"), (4, 0, 1))


def test_malformed_responses():
    cases = [
        ("0306022b0000", (3, 107, 3)),      # byte count says 6, 4 bytes follow
        ("0304022b0000", (3, 107, 3)),      # byte count for 2 registers, 3 asked
        ("0403000a00", (4, 8, 1)),          # odd byte count
        ("0400080001", (3, 8, 1)),          # another function's answer
        ("0500acff01", (5, 172, True)),     # echo differs
        ("0600010004", (6, 1, 3)),          # echo differs
        ("0f0013000b", (15, 19, [True] * 10)),
        ("03", (3, 0, 1)),
    ]
    for resp_hex, request in cases:
        _raises(RemoteProtocolError, pdu.decode_response, h(resp_hex), request)


def test_malformed_requests():
    for req in ("", "01", "0300000000", "03007e007e", "0100000fa1", "0500000001",
                "0f0000000a01ff", "10000100020400", "1000010000000", "1000010002030001"[:14], "2b0e01"):
        _raises(RemoteProtocolError, pdu.decode_request, h(req) if len(req) % 2 == 0 else b"\x10")


def test_local_limits():
    for request in ((3, 0, 0), (3, 0, 126), (1, 0, 2001), (3, 65535, 2), (6, 0, 65536),
                    (16, 0, [0] * 124), (15, 0, [True] * 1969), (16, 0, [70000]), (7, 0, 1)):
        _raises(LocalProtocolError, pdu.encode_request, *request)
    assert pdu.encode_request(3, 65535, 1) == h("03ffff0001")
    assert pdu.encode_request(3, 0, 125)[-2:] == h("007d")


def test_crc16_known_values():
    assert rtu.crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value
    assert rtu.crc16(b"") == 0xFFFF
    assert rtu.crc16(h("010300000001")) == 0x0A84
    assert rtu.encode(1, h("0300000001")) == h("010300000001840a")
    # the serial-line spec's example: unit 0x11 reads holding 0x6B, 3 registers
    assert rtu.encode(0x11, h("03006b0003")) == h("1103006b00037687")
    assert rtu.encode(1, h("040000000a")) == h("0104000000000a700d"[:2] + "040000000a700d")
    assert rtu.encode(1, h("0600010003")) == h("010600010003980b")
    assert rtu.crc16(h("00ff00ff"), 1, 3) == rtu.crc16(h("ff00"))


def test_rtu_timing():
    assert rtu.t35_us(9600) == 4011 and rtu.t15_us(9600) == 1719
    assert rtu.t35_us(19200) == 2006 and rtu.t15_us(19200) == 860
    assert rtu.t35_us(1200) == 32084
    for baud in (38400, 57600, 115200):
        assert rtu.t35_us(baud) == 1750 and rtu.t15_us(baud) == 750
    assert rtu.char_us(9600) == 1146
    assert rtu.DEFAULT_LINE == (9600, "E", 1)


def _frames_rtu(data, step, kind):
    f = rtu.RtuFramer()
    out = []
    for i in range(0, len(data), step):
        f.feed(data[i:i + step])
        while True:
            got = f.response() if kind == "response" else f.request()
            if got is None:
                break
            out.append((got[0], bytes(got[1])))
    return out, f.pending()


def test_rtu_frames_whole_and_bytewise():
    reqs = b"".join(rtu.encode(7, h(g[1])) for g in GOLDEN)
    resps = b"".join(rtu.encode(7, h(g[2])) for g in GOLDEN) + rtu.encode(7, h("8302"))
    for step in (len(reqs), 1, 3):
        got, left = _frames_rtu(reqs, step, "request")
        assert got == [(7, h(g[1])) for g in GOLDEN] and left == 0
        got, left = _frames_rtu(resps, step, "response")
        assert got == [(7, h(g[2])) for g in GOLDEN] + [(7, h("8302"))] and left == 0


def test_rtu_faults():
    good = rtu.encode(1, h("0306022b00000064"))
    bad = good[:-1] + bytes((good[-1] ^ 1,))
    f = rtu.RtuFramer()
    f.feed(bad)
    e = _raises(RemoteProtocolError, f.response)
    assert "CRC" in str(e)
    f.reset()
    f.feed(good[:-3])
    assert f.response() is None and f.pending() == len(good) - 3  # truncated: waits, never guesses
    f.reset()
    f.feed(h("0163"))  # unknown function
    _raises(RemoteProtocolError, f.response)
    f.reset()
    f.feed(bytes(200))
    _raises(RemoteProtocolError, f.feed, bytes(100))  # more than an ADU without a frame
    assert f.pending() == 0


def test_tcp_frames_whole_and_bytewise():
    stream = b"".join(tcp.encode(i, 1, h(g[2])) for i, g in enumerate(GOLDEN))
    assert tcp.encode(1, 1, h("0300000002")) == h("000100000006010300000002")
    for step in (len(stream), 1, 5):
        f = tcp.TcpFramer()
        out = []
        for i in range(0, len(stream), step):
            f.feed(stream[i:i + step])
            while True:
                got = f.frame()
                if got is None:
                    break
                out.append((got[0], got[1], bytes(got[2])))
        assert out == [(i, 1, h(g[2])) for i, g in enumerate(GOLDEN)]


def test_tcp_faults():
    for hdr in ("000100010006", "0001000000ff", "000100000001", "000100000000"):
        f = tcp.TcpFramer()
        f.feed(h(hdr + "0103"))
        _raises(RemoteProtocolError, f.frame)
    f = tcp.TcpFramer()
    f.feed(h("0001000000060103000000"))
    assert f.frame() is None  # length points past what arrived: wait for it


def test_master_core_rtu_and_tcp():
    for framing in (master.RTU, master.TCP):
        core = master.MasterCore(framing)
        for request, req_hex, resp_hex, result in GOLDEN:
            frame = core.start(5, request)
            if framing == master.RTU:
                assert frame == rtu.encode(5, h(req_hex))
                answer = rtu.encode(5, h(resp_hex))
            else:
                assert frame == tcp.encode(core.tid, 5, h(req_hex))
                answer = tcp.encode(core.tid, 5, h(resp_hex))
            for b in answer[:-1]:
                assert core.receive(bytes((b,))) is None
            assert core.receive(answer[-1:]) == result
        core.start(5, (3, 0, 1))
        other = rtu.encode(6, h("03020001")) if framing == master.RTU else tcp.encode(core.tid, 6, h("03020001"))
        _raises(RemoteProtocolError, core.receive, other)


def test_master_core_stale_tid():
    core = master.MasterCore(master.TCP)
    core.start(1, (3, 0, 1))
    old = tcp.encode(core.tid - 1 if core.tid else 0xFFFF, 1, h("03020001"))
    assert core.receive(old) is None and core.stale is not None
    assert core.receive(tcp.encode(core.tid, 1, h("03020007"))) == [7]


# Every type in every order: the value, and its registers as they travel.
U32 = 0x075BCD15
U64 = 0x0102030405060708
WORDS32 = {"ABCD": [0x075B, 0xCD15], "CDAB": [0xCD15, 0x075B], "BADC": [0x5B07, 0x15CD],
           "DCBA": [0x15CD, 0x5B07]}
WORDS64 = {"ABCD": [0x0102, 0x0304, 0x0506, 0x0708], "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
           "BADC": [0x0201, 0x0403, 0x0605, 0x0807], "DCBA": [0x0807, 0x0605, 0x0403, 0x0201]}


def _swap(w):
    return ((w & 0xFF) << 8) | (w >> 8)


def test_registers_every_type_every_order():
    for order in registers.ORDERS:
        w32 = WORDS32[order]
        w64 = WORDS64[order]
        assert registers.decode(w32, "u32", order) == U32
        assert registers.decode(w32, "s32", order) == U32
        assert registers.decode(w64, "u64", order) == U64
        assert registers.decode(w64, "s64", order) == U64
        assert registers.encode(U32, "u32", order) == w32
        assert registers.encode(U64, "u64", order) == w64
        # negative and float values through the same permutation
        neg32 = registers.encode(-2, "s32", order)
        assert registers.decode(neg32, "s32", order) == -2 and registers.decode(neg32, "u32", order) == 0xFFFFFFFE
        neg64 = registers.encode(-2, "s64", order)
        assert registers.decode(neg64, "s64", order) == -2
        f32 = {"ABCD": [0x4148, 0], "CDAB": [0, 0x4148], "BADC": [0x4841, 0], "DCBA": [0, 0x4841]}[order]
        assert registers.decode(f32, "f32", order) == 12.5 and registers.encode(12.5, "f32", order) == f32
        f64 = {"ABCD": [0x3FF8, 0, 0, 0], "CDAB": [0, 0, 0, 0x3FF8], "BADC": [0xF83F, 0, 0, 0],
               "DCBA": [0, 0, 0, 0xF83F]}[order]
        assert registers.decode(f64, "f64", order) == 1.5 and registers.encode(1.5, "f64", order) == f64
        assert registers.decode(registers.encode(-230.25, "f64", order), "f64", order) == -230.25
        r16 = [0x1234] if order in ("ABCD", "CDAB") else [0x3412]
        assert registers.decode(r16, "u16", order) == 0x1234
        assert registers.decode([_swap(0xFFFE)] if order in ("BADC", "DCBA") else [0xFFFE], "s16", order) == -2
    assert registers.decode([9, 0x4148, 0], "f32", "ABCD", 1) == 12.5
    assert registers.decode([1], "bool") is True
    _raises(ValueError, registers.decode, [1], "u32")
    _raises(ValueError, registers.decode, [1, 2], "u32", "ABDC")
    _raises(ValueError, registers.encode, 70000, "u16")
    _raises(ValueError, registers.count, "u128")


def test_scaled_and_sunspec_points():
    assert registers.decode_point({"table": "input", "address": 0, "type": "u16", "scale": 0.01},
                                  [5002], 0) == 50.02
    sun = {"table": "holding", "address": 100, "type": "s16", "scale_register": 103}
    assert registers.decode_point(sun, [2212, 0, 0, 0xFFFF], 100) == 221.2  # SF -1
    assert registers.decode_point(sun, [2212, 0, 0, 2], 100) == 221200.0
    assert registers.decode_point(sun, [0x8000, 0, 0, 1], 100) is None  # not implemented
    assert registers.decode_point(sun, [2212, 0, 0, 0x8000], 100) is None  # SF not implemented
    _raises(ValueError, registers.decode_point, sun, [1, 2, 3], 100)
    assert registers.span(sun) == (100, 103)
    reads = [{"table": "input", "address": 0, "type": "f32"}, {"table": "input", "address": 4, "type": "u64"},
             {"table": "input", "address": 60, "type": "u16"}, sun,
             {"table": "discrete", "address": 0, "type": "bool"}]
    assert registers.plan(reads) == [("discrete", 0, 1), ("holding", 100, 4), ("input", 0, 8), ("input", 60, 1)]


def test_tap_pairs_requests_and_answers():
    bus = b""
    for _request, req_hex, resp_hex, _result in GOLDEN:
        bus += rtu.encode(3, h(req_hex)) + rtu.encode(3, h(resp_hex))
    bus += rtu.encode(3, h("03006b0003")) + rtu.encode(3, h("8302"))
    expected = [(3, g[0], g[3]) for g in GOLDEN] + [(3, (3, 107, 3), ExceptionResponse(3, 2))]
    for step in (len(bus), 1, 7):
        t = tap.Tap()
        got = []
        for i in range(0, len(bus), step):
            got += t.feed(bus[i:i + step])
        assert got == expected, step
        assert t.dropped == 0
    # joined mid-frame, a damaged frame, an unanswered request: it finds its feet again
    t = tap.Tap()
    noisy = bus[5:20] + b"\x00\xff" + bus
    got = t.feed(noisy)
    assert got[-len(expected):] == expected and t.dropped > 0
    t = tap.Tap()
    lone = rtu.encode(3, h("0400080001"))
    got = t.feed(lone + bus)
    assert got[0] == (3, (4, 8, 1), None) and got[1:] == expected and t.unanswered == 1


def test_tap_readings():
    reads = [{"table": "input", "address": 0, "type": "f32"}, {"table": "input", "address": 2, "type": "u16", "scale": 0.1},
             {"table": "holding", "address": 0, "type": "u16"}]
    t = tap.Tap()
    assert t.readings(1, (4, 0, 3), [0x4148, 0, 2305], reads) == [(0, 12.5), (1, 230.5)]
    assert t.readings(1, (4, 1, 2), [0, 2305], reads) == [(1, 230.5)]
    assert t.readings(1, (4, 0, 3), ExceptionResponse(4, 2), reads) == []
    assert t.readings(1, (4, 0, 3), None, reads) == []
