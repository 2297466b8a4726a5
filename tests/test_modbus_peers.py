"""The Modbus driver against real peers: pymodbus over TCP and over RTU on pseudo-terminals,
from CPython and from inside the MicroPython unix port; the listen-only tap on a shared pty bus;
and small misbehaving servers for the faults a field line produces.
"""

import json
import os
import socket
import threading
import time
import tty

import pytest
from _need import need
from lightnode import micropython as mp
from lightnode.drivers import link
from lightnode.drivers.modbus import (
    ExceptionResponse,
    ModbusLinkError,
    ModbusTimeout,
    RemoteProtocolError,
    master,
    pdu,
    registers,
    rtu,
    tap,
    tcp,
)
from lightnode.probe_modbus import run_on_device
from lightnode.simulator.modbus_server import MeterServer, PtyBus, ScadaPoller, load_map

METER = load_map()
READS = [p["read"] for p in METER["points"]]


def _require(what):
    return need(what)


def _every_function(m, unit=1):
    """Read and write with every supported function code; what came back, by step."""
    out = {}
    out["write_register"] = m.write_register(unit, 200, 0xBEEF)
    out["read_holding"] = m.read_holding(unit, 200, 1)
    out["write_registers"] = m.write_registers(unit, 201, [1, 2, 65535])
    out["read_back"] = m.read_holding(unit, 200, 4)
    out["write_coil"] = m.write_coil(unit, 3, True)
    out["write_coils"] = m.write_coils(unit, 8, [True, False, True, True])
    out["read_coils"] = m.read_coils(unit, 0, 12)
    out["read_discrete"] = m.read_discrete_inputs(unit, 0, 2)
    out["read_input"] = m.read_input(unit, 12, 1)
    out["exception"] = m.read_holding(unit, 299, 2)
    return out


def _check_every_function(out):
    assert out["write_register"] in ((200, 0xBEEF), [200, 0xBEEF])
    assert out["read_holding"] == [0xBEEF]
    assert out["write_registers"] in ((201, 3), [201, 3])
    assert out["read_back"] == [0xBEEF, 1, 2, 65535]
    assert out["write_coil"] in ((3, True), [3, True])
    assert out["write_coils"] in ((8, 4), [8, 4])
    assert out["read_coils"] == [False, False, False, True, False, False, False, False,
                                 True, False, True, True]
    assert out["read_discrete"] == [True, False]  # the breaker point: closed
    assert 4900 <= out["read_input"][0] <= 5010  # frequency, 0.01 Hz
    exc = out["exception"]
    if isinstance(exc, ExceptionResponse):
        exc = [exc.function, exc.code]
    assert exc == [3, 2]  # illegal data address: past the 300 holding registers


def _check_points(values, srv):
    exact = srv.values(0.0)
    for p, got in zip(METER["points"], values, strict=True):
        want = exact[p["name"]]
        tol = max(abs(want) * 1e-6, float(p["read"].get("scale", 0)), 10.0 if "scale_register" in p["read"] else 0, 1.0 if p["read"]["type"][0] in "us" else 0)
        assert abs(float(got) - want) <= tol, (p["name"], got, want)


def test_tcp_every_function_and_meter_points():
    with MeterServer(frozen=True) as srv:
        host, port = srv.start_tcp()
        m = master.Master(link.TcpLink(host, port, 1000), master.TCP, timeout_ms=500, retries=1)
        _check_every_function(_every_function(m))
        _check_points(m.read_points(1, READS), srv)
        assert m.retried == 0
        m.close()


def _pty_stream(path):
    return open(path, "r+b", buffering=0)


def test_rtu_every_function_and_meter_points():
    with MeterServer(frozen=True) as srv:
        path = srv.start_rtu(baud=115200)
        m = master.Master(link.StreamLink(_pty_stream(path), 1000), master.RTU, timeout_ms=500,
                          retries=1, baud=115200)
        _check_every_function(_every_function(m))
        _check_points(m.read_points(1, READS), srv)
        m.close()


def test_values_move_while_it_runs():
    with MeterServer() as srv:
        host, port = srv.start_tcp()
        m = master.Master(link.TcpLink(host, port, 1000), master.TCP, timeout_ms=500)
        first = m.read_value(1, "input", 0, "f32")
        time.sleep(0.3)
        assert m.read_value(1, "input", 0, "f32") != first
        e1 = m.read_value(1, "input", 20, "u64")
        time.sleep(0.6)
        assert m.read_value(1, "input", 20, "u64") >= e1  # an energy counter never runs back
        m.close()


DEVICE_EVERY_FUNCTION = """
import sys, json
from lightnode.drivers.modbus import master, ExceptionResponse
from lightnode.drivers import link
with open(sys.argv[1]) as f:
    cfg = json.loads(f.read())
for kind in ("tcp", "rtu"):
    if kind == "tcp":
        m = master.Master(link.TcpLink(cfg["host"], cfg["port"], 1000), master.TCP, 500, 1)
    else:
        m = master.Master(link.StreamLink(open(cfg["path"], "r+b"), 1000), master.RTU, 500, 1, baud=115200)
    out = {}
    out["write_register"] = m.write_register(1, 200, 0xBEEF)
    out["read_holding"] = m.read_holding(1, 200, 1)
    out["write_registers"] = m.write_registers(1, 201, [1, 2, 65535])
    out["read_back"] = m.read_holding(1, 200, 4)
    out["write_coil"] = m.write_coil(1, 3, True)
    out["write_coils"] = m.write_coils(1, 8, [True, False, True, True])
    out["read_coils"] = m.read_coils(1, 0, 12)
    out["read_discrete"] = m.read_discrete_inputs(1, 0, 2)
    out["read_input"] = m.read_input(1, 12, 1)
    e = m.read_holding(1, 299, 2)
    out["exception"] = [e.function, e.code] if isinstance(e, ExceptionResponse) else e
    out["points"] = m.read_points(1, cfg["reads"])
    m.close()
    mp_result({"kind": kind, "out": out})
"""


@pytest.mark.micropython
def test_every_function_from_micropython(tmp_path):
    _require(mp.find_micropython)
    _require(mp.find_mpy_cross)
    with MeterServer(frozen=True) as tcp_srv, MeterServer(frozen=True) as rtu_srv:
        host, port = tcp_srv.start_tcp()
        path = rtu_srv.start_rtu(baud=115200)
        cfg = tmp_path / "cfg.json"  # in a file: long arguments crash this unix port build
        cfg.write_text(json.dumps({"host": host, "port": port, "path": path, "reads": READS}))
        run = mp.run_unix(code=DEVICE_EVERY_FUNCTION, board="pico_w", args=(str(cfg),), timeout=60).check()
    got = {r["kind"]: r["out"] for r in run.results}
    assert set(got) == {"tcp", "rtu"}
    for kind, out in got.items():
        _check_every_function(out)
        _check_points(out["points"], tcp_srv if kind == "tcp" else rtu_srv)


@pytest.mark.micropython
def test_heap_flat_over_1000_reads_at_pico_w_budget():
    _require(mp.find_micropython)
    _require(mp.find_mpy_cross)
    with MeterServer() as srv:
        host, port = srv.start_tcp()
        cfg = {"kind": "tcp", "host": host, "port": port, "baud": 9600, "unit": 1, "timeout_ms": 1000,
               "retries": 1, "reads": [["input", 0, 3, "f32", "ABCD"]], "loops": 1000, "heap_every": 100}
        results = run_on_device(cfg, board="pico_w").check().results
    stats = [r for r in results if "heap" in r][0]
    heap = stats["heap"]
    rom = mp.rom_image().stat().st_size  # the ROMFS image sits in the heap too, as the board's flash
    print("pico_w heap after gc.collect, every 100 reads (less the %d-byte ROM image): before %d, %s"
          % (rom, stats["before"] - rom, [h - rom for h in heap]))
    assert len(heap) == 10 and stats["requests"] == 1000 and stats["retried"] == 0
    # flat after warm-up: no sample differs from the first by more than one GC block pair
    assert max(heap) - min(heap) <= 32, heap
    assert 220 < [r for r in results if "values" in r][0]["values"][0] < 240


def test_tap_decodes_a_pymodbus_conversation_without_transmitting():
    bus = PtyBus(3, listen_only=(2,))  # 0: the SCADA master, 1: the meter, 2: the tap
    tap_map = load_map(str(load_map.__defaults__[0]).replace("meter_modbus", "meter_tap"))
    reads = [p["read"] for p in tap_map["points"]]
    requests = registers.plan(reads)
    with MeterServer() as srv:
        srv.start_rtu(baud=115200, bus=bus, end=1)
        stream = _pty_stream(bus.paths[2])
        line = link.StreamLink(stream, 100)
        t = tap.Tap()
        got = []
        done = threading.Event()

        def listen():
            while True:  # in short turns, and one more after the poller is done
                last = done.is_set()
                got.extend(tap.listen(line, 0.2, t, baud=115200))
                if last:
                    return

        poller = ScadaPoller(bus.paths[0], requests + [("holding", 299, 2)], baud=115200, period_s=0.01)
        th = threading.Thread(target=listen, daemon=True)
        th.start()
        poller.start(rounds=3)
        poller.join()
        done.set()
        th.join(3)
        assert not th.is_alive()
        stream.close()
        written = bytes(bus.written[2])
        bus.close()
    assert written == b"", "the tap transmitted %r" % written
    answered = [(pdu.TABLE_OF[req[0]], req[1], res) for unit, req, res in got
                if unit == 1 and isinstance(res, list)]
    assert answered == [(t_, a, list(v)) for t_, a, v in poller.answers]
    exceptions = [res for _u, _r, res in got if isinstance(res, ExceptionResponse)]
    assert exceptions == [ExceptionResponse(3, 2)] * 3
    values = {}
    for unit, req, res in got:
        for i, v in t.readings(unit, req, res, reads):
            values[tap_map["points"][i]["name"]] = v
    assert set(values) == {p["name"] for p in tap_map["points"]}
    assert 225 < values["V_L1"] < 235 and 49.9 < values["F"] < 50.1
    assert t.dropped == 0 and t.unanswered == 0


# -- faults: tiny misbehaving servers --

class FaultyTcp:
    """A Modbus TCP server that answers each request as ``behave`` says."""

    def __init__(self, behave):
        self.behave = behave
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn):
        with conn:
            f = tcp.TcpFramer()
            while True:
                try:
                    data = conn.recv(260)
                except OSError:
                    return
                if not data:
                    return
                f.feed(data)
                got = f.frame()
                if got is None:
                    continue
                tid, unit, body = got
                self.requests += 1
                req = pdu.decode_request(bytes(body))
                good = tcp.encode(tid, unit, pdu.encode_response(req[0], [7] * req[2]))
                if self.behave(conn, tid, unit, req, good, self.requests) == "close":
                    return

    def close(self):
        self.sock.close()


def _silent(conn, tid, unit, req, good, n):
    return None


def _close_mid(conn, tid, unit, req, good, n):
    conn.sendall(good[:5])
    return "close"


def _wrong_tid(conn, tid, unit, req, good, n):
    conn.sendall(tcp.encode((tid + 5) & 0xFFFF, unit, good[7:]))


def _huge_length(conn, tid, unit, req, good, n):
    conn.sendall(good[:4] + b"\x01\x2c" + good[6:])


def _short_then_nothing(conn, tid, unit, req, good, n):
    conn.sendall(good[:-2])


def _exception(conn, tid, unit, req, good, n):
    conn.sendall(tcp.encode(tid, unit, bytes((req[0] | 0x80, 4))))


def _bytewise(conn, tid, unit, req, good, n):
    for i in range(len(good)):
        conn.sendall(good[i:i + 1])
        time.sleep(0.001)


def _stale_then_good(conn, tid, unit, req, good, n):
    conn.sendall(tcp.encode((tid - 1) & 0xFFFF, unit, good[7:]) + good)


def _close_first(conn, tid, unit, req, good, n):
    if n == 1:
        conn.sendall(good[:3])
        return "close"
    conn.sendall(good)


TIMEOUT_MS = 150


@pytest.mark.parametrize("behave,expect,text", [
    (_silent, ModbusTimeout, "no answer from unit 1 within 150 ms"),
    (_close_mid, ModbusLinkError, "closed"),
    (_wrong_tid, RemoteProtocolError, "transaction id"),
    (_huge_length, RemoteProtocolError, "MBAP length 300"),
    (_short_then_nothing, ModbusTimeout, "incomplete answer"),
    (_exception, ExceptionResponse(3, 4), None),
    (_bytewise, [7, 7], None),
    (_stale_then_good, [7, 7], None),
    (_close_first, [7, 7], None),
])
def test_tcp_faults(behave, expect, text):
    srv = FaultyTcp(behave)
    try:
        def connect():
            return link.TcpLink("127.0.0.1", srv.port, 500)

        reconnect = connect if behave in (_close_mid, _close_first) else None
        m = master.Master(connect(), master.TCP, timeout_ms=TIMEOUT_MS, retries=2, connect=reconnect)
        t0 = time.monotonic()
        if isinstance(expect, type):
            with pytest.raises(expect) as info:
                m.read_holding(1, 0, 2)
            assert text in str(info.value)
        else:
            assert m.read_holding(1, 0, 2) == expect
        elapsed = time.monotonic() - t0
        assert elapsed < 3 * TIMEOUT_MS / 1000 + 0.5, elapsed  # never hangs past the timeouts
        m.close()
    finally:
        srv.close()


class FaultyRtu:
    """A slave on the far end of a pty pair, answering as ``behave`` says."""

    def __init__(self, behave):
        self.m, s = os.openpty()
        tty.setraw(s)
        tty.setraw(self.m)
        self.path = os.ttyname(s)
        self._s = s
        self.behave = behave
        self.requests = 0
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        f = rtu.RtuFramer()
        import select

        p = select.poll()
        p.register(self.m, select.POLLIN)
        while not self._stop:
            if not p.poll(20):
                continue
            try:
                f.feed(os.read(self.m, 256))
            except OSError:
                return
            got = f.request()
            if got is None:
                continue
            unit, body = got[0], bytes(got[1])
            self.requests += 1
            req = pdu.decode_request(body)
            good = rtu.encode(unit, pdu.encode_response(req[0], [7] * req[2]))
            self.behave(self, unit, req, good, self.requests)

    def send(self, data):
        os.write(self.m, data)

    def close(self):
        self._stop = True
        time.sleep(0.03)
        os.close(self.m)
        os.close(self._s)


def _crc_bad(s, unit, req, good, n):
    s.send(good[:-1] + bytes((good[-1] ^ 0xFF,)))


def _crc_bad_once(s, unit, req, good, n):
    _crc_bad(s, unit, req, good, n) if n == 1 else s.send(good)


def _rtu_truncated(s, unit, req, good, n):
    s.send(good[:-3])


def _rtu_bytewise(s, unit, req, good, n):
    for i in range(len(good)):
        s.send(good[i:i + 1])
        time.sleep(0.001)


def _rtu_other_unit(s, unit, req, good, n):
    s.send(rtu.encode(unit + 1, good[1:-2]))


def _rtu_exception(s, unit, req, good, n):
    s.send(rtu.encode(unit, bytes((req[0] | 0x80, 2))))


def _rtu_silent(s, unit, req, good, n):
    pass


def _rtu_count_past_end(s, unit, req, good, n):
    s.send(rtu.encode(unit, bytes((3, 250)) + bytes(4)))


@pytest.mark.parametrize("behave,expect,text", [
    (_crc_bad, RemoteProtocolError, "CRC"),
    (_crc_bad_once, [7, 7], None),
    (_rtu_truncated, ModbusTimeout, "incomplete answer"),
    (_rtu_bytewise, [7, 7], None),
    (_rtu_other_unit, RemoteProtocolError, "unit 2"),
    (_rtu_exception, ExceptionResponse(3, 2), None),
    (_rtu_silent, ModbusTimeout, "no answer"),
    (_rtu_count_past_end, ModbusTimeout, "incomplete answer"),
])
def test_rtu_faults(behave, expect, text):
    srv = FaultyRtu(behave)
    stream = _pty_stream(srv.path)
    try:
        m = master.Master(link.StreamLink(stream, 500), master.RTU, timeout_ms=TIMEOUT_MS, retries=2,
                          baud=115200)
        t0 = time.monotonic()
        if isinstance(expect, type):
            with pytest.raises(expect) as info:
                m.read_holding(1, 0, 2)
            assert text in str(info.value)
        else:
            assert m.read_holding(1, 0, 2) == expect
        assert time.monotonic() - t0 < 3 * TIMEOUT_MS / 1000 + 0.5
        if behave is _crc_bad_once:
            assert m.retried == 1
    finally:
        stream.close()
        srv.close()
