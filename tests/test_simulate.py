"""``lightnode simulate``: every shipped scenario, shortened, against Mosquitto, with the report.

For each scenario (``simulator/scenarios/*.toml``): light nodes, a
producing ``lightnode node`` and two witnesses, the scenario's attacks and
grid events, a Mosquitto of the test's own. Every injected attack
transaction is refused with the right reason or flagged, every attack is
detected, no legitimate transaction is lost (each one the fleet signed is
committed exactly once, with its own id), every expectation of the file
holds, and the run record (``run.json``) and the summary say so. Then the
main job as the README runs it (embedded broker, SQLite), and a run whose
expectation cannot hold exits non-zero.

The full-length runs are ``lightnode simulate NAME`` (``--profile full``,
the default); here each is cut to about 12 s (``LIGHTNODE_SIM_S`` to
change it).
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _node_support import mosquitto
from lightnode.simulator import report, scenario
from lightnode.simulator.run import Options, run
from rich.console import Console

SHORT_S = float(os.environ.get("LIGHTNODE_SIM_S", "12"))
# A 50 us/s drift turns a PMU's angle 0.9 degrees a second: the analysis needs
# about 10 s of it after the attack, which starts a sixth of the way in.
DURATIONS = {"gps_spoof": max(SHORT_S, 36.0)}
# Attacks whose every transaction must be refused (the others are judged by their flags).
PER_TX = {"spoofed_device", "replay", "tamper", "revoked_device", "cloned_device", "flood"}


def _summary(record):
    buf = io.StringIO()
    report.print_summary(record, Console(file=buf, width=160, color_system=None))
    return buf.getvalue()


@pytest.mark.parametrize("name", scenario.names())
def test_scenario_shortened_against_mosquitto(tmp_path, name):
    out = tmp_path / "run"
    with mosquitto(tmp_path) as port:
        record = run(Options(name, duration_s=DURATIONS.get(name, SHORT_S), profile="ci",
                             broker="mqtt://127.0.0.1:%d" % port, out=str(out), quiet=True))
    report.check_run(record)
    assert json.loads((out / "run.json").read_text())["ok"] == record["ok"]
    failed = [e for e in record["expectations"] if not e["met"]]
    assert not failed, (failed, [a for a in record["attacks"]])

    t = record["totals"]
    assert t["transactions"] > 0 and t["lost"] == 0, t
    assert t["committed"] == t["transactions"], t  # each signed one, exactly once
    for n in record["light_nodes"]:  # (a device revoked early may have signed nothing legitimate)
        assert n["lost"] == 0 and n["tx_committed"] == n["tx_signed"], n

    sc = scenario.load(name)
    assert len(record["attacks"]) == len(sc.attacks)
    for a in record["attacks"]:
        assert a["injected"] > 0 and a["detected"], a
        if a["kind"] in PER_TX:  # 100% of what was injected refused or flagged
            assert a["rejected"] + a["flagged"] >= a["injected"], a
            assert a["reasons"] or a["flags"], a
        else:
            assert a["flagged"] > 0, a
    text = _summary(record)
    assert "PASS" in text and "0 lost" in text, text


def test_default_simulate_on_the_embedded_defaults(tmp_path):
    """The README's first command, shortened: exit 0, the summary, and the report's path last."""
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-c", "from lightnode.cli import main; main()", "simulate",
         "--duration", str(SHORT_S), "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "160"})
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert "PASS" in res.stdout and "expectation" in res.stdout, res.stdout
    assert lines[-1].startswith("report: "), lines[-3:]
    html = Path(lines[-1][len("report: "):].strip())
    assert html.is_file() and html.parent == out.resolve(), html
    record = json.loads((out / "run.json").read_text())
    assert record["ok"] and record["scenario"]["name"] == "substation"
    assert record["broker"].endswith("(embedded)") and record["store"].startswith("sqlite:///")


def test_a_light_node_of_the_real_firmware_takes_part(tmp_path):
    """``--firmware 1``: one PMU light node is the firmware in the unix port, on a served PMU.

    The board is a Pico 2 W here (the scenario's Pico W budget is the firmware's own test).
    """
    from lightnode import micropython as mp
    from lightnode.errors import HarnessError

    try:
        mp.find_micropython()
    except HarnessError as e:
        pytest.skip(str(e))
    text = scenario.path_of("substation").read_text().replace(
        'name = "ln-pmu-north"\ndevice = "pmu-north"\n',
        'name = "ln-pmu-north"\ndevice = "pmu-north"\nboard = "pico2_w"\n')
    assert 'board = "pico2_w"' in text
    (tmp_path / "substation.toml").write_text(text)
    with mosquitto(tmp_path) as port:
        record = run(Options(str(tmp_path / "substation.toml"), duration_s=max(SHORT_S, 15.0),
                             firmware=1, broker="mqtt://127.0.0.1:%d" % port,
                             out=str(tmp_path / "run"), quiet=True))
    (fw,) = [n for n in record["light_nodes"] if n["firmware"]]
    assert fw["name"] == "ln-pmu-north" and fw["board"] == "pico2_w", fw
    assert fw["tx_signed"] >= 5 and fw["tx_committed"] == fw["tx_signed"] and fw["lost"] == 0, fw
    assert fw["readings"] > 0 and fw["acked"] >= fw["tx_signed"] - 3, fw  # block acks freed it
    assert record["totals"]["lost"] == 0 and record["ok"], record["expectations"]


def test_firmware_heap_lets_a_pico_w_firmware_node_take_part(tmp_path):
    """``--firmware 1 --firmware-heap 256`` on the default scenario, as docs/simulator.md says:
    the Pico W's own budget is not enough for the firmware yet."""
    from lightnode import micropython as mp
    from lightnode.errors import HarnessError

    try:
        mp.find_micropython()
    except HarnessError as e:
        pytest.skip(str(e))
    with mosquitto(tmp_path) as port:
        res = subprocess.run(
            [sys.executable, "-c", "from lightnode.cli import main; main()", "simulate",
             "--duration", "15", "--firmware", "1", "--firmware-heap", "256", "--broker",
             "mqtt://127.0.0.1:%d" % port, "--out", str(tmp_path / "run"), "--json"],
            capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    record = json.loads(res.stdout)
    (fw,) = [n for n in record["light_nodes"] if n["firmware"]]
    assert fw["board"] == "pico_w" and fw["tx_signed"] >= 2 and fw["lost"] == 0, fw
    assert fw["tx_committed"] == fw["tx_signed"], fw


def test_firmware_is_refused_where_it_cannot_take_part(tmp_path):
    """The firmware reads PMUs: more firmware nodes than a scenario's free PMU nodes is refused."""
    res = subprocess.run(
        [sys.executable, "-c", "from lightnode.cli import main; main()", "simulate",
         "tamper_in_transit", "--firmware", "9", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 2, res.stdout + res.stderr
    assert "firmware" in res.stdout and "C37.118" in res.stdout, res.stdout


def test_an_expectation_that_fails_gives_a_non_zero_exit(tmp_path):
    """The substation with one more expectation no run can meet: a PMU's clock-step event."""
    text = scenario.path_of("substation").read_text()
    text += '\n[[expect]]\nkind = "event_committed"\ndevice = "ln-pmu-north"\ntype = "clock-step"\n'
    (tmp_path / "substation.toml").write_text(text)
    with mosquitto(tmp_path) as port:
        res = subprocess.run(
            [sys.executable, "-c", "from lightnode.cli import main; main()", "simulate",
             str(tmp_path / "substation.toml"), "--duration", str(SHORT_S), "--broker",
             "mqtt://127.0.0.1:%d" % port, "--out", str(tmp_path / "run")],
            capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "160"})
    assert res.returncode == 1, res.stdout[-4000:] + res.stderr[-4000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert not record["ok"]
    failed = [e["name"] for e in record["expectations"] if not e["met"]]
    assert failed == ["expect:event_committed:ln-pmu-north:clock-step"], record["expectations"]
    assert "FAIL" in res.stdout and res.stdout.strip().splitlines()[-1].startswith("report: ")
