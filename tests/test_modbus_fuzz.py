"""Fuzz the Modbus parsers of remote bytes: any input parses or raises the driver's own error.

One target per parser (RTU frames, TCP frames, the tap decoder, and the
master core on top of both); inputs are random bytes and real frames
mutated, fed in random chunks. Bounded so the suite stays quick.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode.drivers.modbus import ExceptionResponse, ModbusError, master, pdu, rtu, tap, tcp

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_REQUESTS = [(1, 19, 19), (2, 196, 22), (3, 107, 3), (4, 8, 1), (5, 172, True), (6, 1, 3),
             (15, 19, [True, False] * 5), (16, 1, [10, 258])]
_RESULTS = {1: [True] * 19, 2: [False] * 22, 3: [555, 0, 100], 4: [10], 5: (172, True), 6: (1, 3),
            15: (19, 10), 16: (1, 2)}


def _pdus():
    out = []
    for req in _REQUESTS:
        out.append(pdu.encode_request(*req))
        out.append(pdu.encode_response(req[0], _RESULTS[req[0]]))
        out.append(pdu.encode_response(req[0], ExceptionResponse(req[0], 2)))
    return out


PDUS = _pdus()


@st.composite
def streams(draw, frame):
    """Real frames, some mutated (a byte flipped, cut, or noise between), then random chunks."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(st.binary(max_size=40)))
            continue
        data = bytearray(frame(draw(st.integers(0, 247)), draw(st.sampled_from(PDUS))))
        if kind == 2 and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        if kind == 3:
            data = data[:draw(st.integers(0, len(data)))]
        parts.append(bytes(data))
    data = b"".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    chunks, last = [], 0
    for c in cuts + [len(data)]:
        chunks.append(data[last:c])
        last = c
    return chunks


def _rtu_frame(unit, body):
    return rtu.encode(unit, body)


def _tcp_frame(unit, body):
    return tcp.encode(unit * 7 & 0xFFFF, unit, body)


@FUZZ
@given(streams(_rtu_frame), st.booleans())
def test_rtu_framer(chunks, as_response):
    f = rtu.RtuFramer()
    for chunk in chunks:
        try:
            f.feed(chunk)
        except ModbusError:
            continue
        for _ in range(300):
            try:
                got = f.response() if as_response else f.request()
            except ModbusError:
                f.skip(1)
                continue
            if got is None:
                break
            unit, body = got
            assert 0 <= unit <= 255 and len(body) >= 1
            try:
                if as_response:
                    pdu.decode_response(body, _REQUESTS[unit % len(_REQUESTS)])
                else:
                    pdu.decode_request(body)
            except ModbusError:
                pass


@FUZZ
@given(streams(_tcp_frame))
def test_tcp_framer(chunks):
    f = tcp.TcpFramer()
    for chunk in chunks:
        while chunk:
            k = f.feed(chunk)
            chunk = chunk[k:]
            while True:
                try:
                    got = f.frame()
                except ModbusError:
                    f.reset()
                    break
                if got is None:
                    break
                tid, unit, body = got
                assert len(body) <= pdu.MAX_PDU
            if k == 0:
                break


@FUZZ
@given(streams(_rtu_frame))
def test_tap_decoder(chunks):
    t = tap.Tap()
    seen = 0
    for chunk in chunks:
        for _unit, request, result in t.feed(chunk):  # never raises: it resynchronises
            seen += 1
            assert request[0] in pdu.FUNCTIONS
            assert result is None or isinstance(result, (list, tuple, ExceptionResponse))
        if seen % 3 == 0:
            t.gap()
    assert t.dropped >= 0


@FUZZ
@given(streams(_rtu_frame), streams(_tcp_frame), st.sampled_from(_REQUESTS))
def test_master_core(rtu_chunks, tcp_chunks, request):
    for framing, chunks in ((master.RTU, rtu_chunks), (master.TCP, tcp_chunks)):
        core = master.MasterCore(framing)
        core.start(1, request)
        for chunk in chunks:
            try:
                if core.receive(chunk) is not None:
                    core.start(1, request)
            except ModbusError:
                core.start(1, request)
