"""``lightnode probe c37118``: readable by default, --json, one clear line and exit 1 on trouble,
and the same read inside MicroPython with --on micropython."""

from __future__ import annotations

import json
import socket

import pytest
from _need import need
from click.testing import CliRunner
from lightnode import micropython as mp
from lightnode.cli import main
from lightnode.simulator.pmu_server import PmuServer

T0 = 1767225600_000000


def _probe(*args):
    return CliRunner().invoke(main, ["probe", "c37118", *map(str, args)])


def _addr(pmu):
    return "%s:%d" % pmu.address


def test_readable():
    with PmuServer(fmt="int-polar", speed=20, t0_us=T0, extras=True) as pmu:
        r = _probe(_addr(pmu), "--idcode", 7, "--frames", 3)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("PMU 127.0.0.1:") and "IDCODE 7" in lines[0] and "CFG-2" in lines[0]
    assert "LN PMU 132KV" in lines[1] and "phasors int16 polar" in lines[1] and "50 Hz" in lines[1]
    assert "VA (V)" in lines[2] and "IC (A)" in lines[2]
    frames_ = [x for x in lines if x.startswith("2026-01-01T00:00:00.")]
    assert [x[:27] for x in frames_] == ["2026-01-01T00:00:00.%06dZ" % (20000 * k) for k in range(3)]
    assert all("STAT 0x0000" in x and " Hz " in x and "VA " in x for x in frames_)


def test_json():
    with PmuServer(fmt="float-rect", speed=20, t0_us=T0 + 5) as pmu:
        r = _probe(_addr(pmu), "--idcode", 7, "--frames", 4, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["config"]["pmus"][0]["phasors"] == ["VA", "VB", "VC", "IA", "IB", "IC"]
    assert [f["time_us"] for f in doc["frames"]] == [pmu.frame_time_us(k) for k in range(4)]
    f = doc["frames"][0]
    assert 49.9 < f["freq_hz"] < 50.1 and f["stat"] == 0
    assert 70000 < f["phasors"][0]["magnitude"] < 85000 and f["phasors"][3]["unit"] == "A"


def test_timeout_is_one_line_and_exit_1():
    with PmuServer(speed=20, t0_us=T0) as pmu:
        r = _probe(_addr(pmu), "--idcode", 9, "--frames", 2, "--timeout", 300)  # no such stream
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0
    assert "no configuration frame within 300 ms" in r.output


def test_refused_and_protocol_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = _probe("127.0.0.1:%d" % port, "--idcode", 7)
    assert r.exit_code == 1 and "cannot connect" in r.output and r.output.strip().count("\n") == 0
    with PmuServer(speed=20, t0_us=T0, faults={"bad_crc": [1]}) as pmu:
        r = _probe(_addr(pmu), "--idcode", 7, "--frames", 3)
    assert r.exit_code == 1 and "protocol error: bad CHK" in r.output
    r = _probe("127.0.0.1:99999")
    assert r.exit_code == 2


@pytest.mark.micropython
def test_on_micropython():
    need(mp.find_micropython)
    with PmuServer(fmt="int-rect", speed=20, t0_us=T0, extras=True) as pmu:
        here = _probe(_addr(pmu), "--idcode", 7, "--frames", 3, "--json")
    with PmuServer(fmt="int-rect", speed=20, t0_us=T0, extras=True) as pmu:
        there = _probe(_addr(pmu), "--idcode", 7, "--frames", 3, "--json", "--on", "micropython")
    assert here.exit_code == 0 and there.exit_code == 0, there.output
    a, b = json.loads(here.output), json.loads(there.output)
    assert (b["on"], a["on"]) == ("micropython", "cpython")
    assert a["frames"] == b["frames"] and a["config"] == b["config"]
    with PmuServer(speed=20, t0_us=T0, faults={"stall_after": 1}) as pmu:
        r = _probe(_addr(pmu), "--idcode", 7, "--frames", 3, "--timeout", 300, "--on", "micropython")
    assert r.exit_code == 1 and "LinkTimeout: no data frame within 300 ms" in r.output
