"""``lightnode probe mms`` against the libiec61850 relay model, and against servers
that stay silent or talk nonsense; on CPython and inside the unix port."""

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from lightnode.probe_mms import mms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_mms_peers import TinyServer, _need  # noqa: E402

BRCB = "SIMPROT/LLN0.BR.brcbEV01"


@pytest.fixture(scope="module")
def target():
    try:
        from lightnode.simulator.mms_server import MmsServer

        srv = MmsServer(period_s=0.05, integrity_ms=100).start()
    except ImportError as e:
        _need("libiec61850 (pyiec61850-ng) is not installed: %s" % e)
    yield "127.0.0.1:%d" % srv.port
    srv.stop()


def _run(*args):
    return CliRunner().invoke(mms, [str(a) for a in args])


def _micropython():
    from lightnode import micropython as mp
    from lightnode.errors import HarnessError

    try:
        mp.find_micropython()
        mp.find_mpy_cross()
    except HarnessError as e:
        _need(str(e))


def test_discover_readable_and_json(target):
    r = _run(target, "--discover")
    assert r.exit_code == 0, r.output
    assert "negotiated PDU 4096 bytes" in r.output
    assert "SIMMEAS\n  logical nodes: LLN0, MMXU1\n  data sets: SIMMEAS/LLN0.Measurements" in r.output
    assert "logical nodes: LLN0, PTRC1, XCBR1" in r.output
    r = _run(target, "--discover", "--json")
    out = json.loads(r.stdout)
    assert sorted(out["devices"]) == ["SIMMEAS", "SIMPROT"]
    assert out["devices"]["SIMPROT"]["data_sets"] == ["SIMPROT/LLN0.Events"]


def test_read_readable_and_json(target):
    r = _run(target, "--read", "SIMMEAS/MMXU1.TotW", "--fc", "MX")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "SIMMEAS/MMXU1.TotW [MX]"
    assert "bits 0000000000000" in r.output and "Z (time quality 0x" in r.output
    out = json.loads(_run(target, "--read", "SIMMEAS/MMXU1.Hz.mag.f", "--fc", "mx", "--json").stdout)
    assert out["fc"] == "MX" and 49.9 < out["value"] < 50.1


def test_report_lines_and_summary(target):
    r = _run(target, "--report", BRCB, "--seconds", "1")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith("seq ")
    assert "0 with a missed sequence number, 0 dropped" in r.output.splitlines()[-1]
    out = json.loads(_run(target, "--report", "SIMMEAS/LLN0.RP.urcbMX01", "--seconds", "0.6", "--json").stdout)
    assert out["count"] >= 3 and out["gaps"] == 0
    assert out["reports"][0]["members"][0]["value"][2]["utc"] > 1e9


def _one_line_failure(r, start):
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), r.stderr
    assert "Traceback" not in r.output


def test_errors_are_one_line_and_non_zero(target):
    silent = TinyServer("silent")
    garbage = TinyServer("garbage")
    try:
        _one_line_failure(_run("127.0.0.1:%d" % silent.port, "--discover", "--timeout", "300"), "mms: timeout:")
        _one_line_failure(_run("127.0.0.1:%d" % garbage.port, "--discover", "--timeout", "300"),
                          "mms: RemoteProtocolError:")
    finally:
        silent.close()
        garbage.close()
    _one_line_failure(_run(target, "--read", "SIMMEAS/MMXU1.Nope", "--fc", "MX"), "mms: ServiceError:")
    _one_line_failure(_run(target, "--read", "MMXU1.Hz", "--fc", "MX"), "mms: bad argument:")
    assert _run(target).exit_code == 2
    assert _run(target, "--read", "SIMMEAS/MMXU1.Hz").exit_code == 2


def test_on_micropython(target):
    _micropython()
    r = _run(target, "--discover", "--json", "--on", "micropython")
    assert r.exit_code == 0, r.output
    here = json.loads(_run(target, "--discover", "--json").stdout)
    assert json.loads(r.stdout) == here
    r = _run(target, "--read", "SIMMEAS/MMXU1.TotW", "--fc", "MX", "--on", "micropython")
    assert r.exit_code == 0 and r.output.startswith("SIMMEAS/MMXU1.TotW [MX]"), r.output
    r = _run(target, "--report", BRCB, "--seconds", "0.8", "--on", "micropython")
    assert r.exit_code == 0 and "0 with a missed sequence number" in r.output, r.output
    silent = TinyServer("silent")
    try:
        _one_line_failure(_run("127.0.0.1:%d" % silent.port, "--discover", "--timeout", "300",
                               "--on", "micropython"), "mms: timeout:")
    finally:
        silent.close()
