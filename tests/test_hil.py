"""``lightnode hil``: the hardware-in-the-loop path, run in CI against the unix-port board.

The normal day, shortened to 20 s, against a Mosquitto of its own: the
board (the firmware in the MicroPython unix port, at the heap the
whole-firmware tests use) takes one PMU's light node, reads that PMU
served over C37.118 by the simulator's grid, and uploads to the run's
producer and two witnesses beside the emulated light nodes. The run must
meet every expectation; the test then checks the ledger itself: every
transaction the board signed committed once, in order, its hash chain
intact, the chain audits clean; run.json and the report are written.

The substation with the board on the PMU whose GPS receiver is spoofed:
the 1 ms step reaches the board in the frames it reads, and the full node
flags the board's transactions.

And the errors a user meets first: a real board with no --port, a port
that does not exist, a broker a real board cannot reach, a board that was
never flashed.
"""

import json
import os

import pytest
from _firmware_support import fw_heap
from _need import need
from _node_support import mosquitto
from click.testing import CliRunner
from lightnode import micropython as mp
from lightnode.firmware.ln import txn, wire
from lightnode.ledger.store import open_store

pytestmark = pytest.mark.micropython

DURATION_S = "60" if os.environ.get("LIGHTNODE_PROFILE") == "full" else "20"


def _cli():
    from lightnode.cli import main

    return main


def _hil(*args):
    return CliRunner().invoke(_cli(), ["hil", *args])


def test_hil_unix_board_normal_day(tmp_path):
    need(mp.find_micropython)
    out = tmp_path / "run"
    with mosquitto(tmp_path) as port:
        res = _hil("normal_day", "--duration", DURATION_S, "--broker", "mqtt://127.0.0.1:%d" % port,
                   "--heap", str(fw_heap()), "--out", str(out))
    board_log = (out / "board.log").read_text() if (out / "board.log").exists() else "(no board log)"
    assert res.exit_code == 0, res.output + "\nboard:\n" + board_log[-3000:]

    record = json.loads((out / "run.json").read_text())
    assert record["ok"], record["expectations"]
    names = {e["name"] for e in record["expectations"]}
    assert {"no_loss", "expect:no_time_flags", "hil:committed_once", "hil:chain_intact"} <= names
    board = record["light_nodes"][0]
    assert board["firmware"] is True and board["name"] == record["hil"]["light_node"]
    assert board["tx_committed"] == board["tx_signed"] >= 4 and board["lost"] == 0, board
    assert board["readings"] >= 14 * 50 * 10, board  # 14 points at 50 frames/s, most of the run
    assert record["totals"]["lost"] == 0
    assert len(record["light_nodes"]) == 6  # the board and the scenario's five others, emulated
    stats = record["hil"]["board_stats"]
    assert stats["nacks"] == 0 and stats["bad_acks"] == 0, stats
    # the board's frequency trace is plotted beside the emulated PMUs'
    assert sum(v is not None for v in record["series"]["frequency_hz"][board["name"]]) > 20

    # the ledger, read here: what the board signed, each once, in order, chained
    store = open_store(record["store"])
    try:
        entries = list(store.entries(chain="seg:normal-day", device=bytes.fromhex(board["device_id"])))
    finally:
        store.close()
    seqs = [e.seq for e in entries]
    assert seqs == list(range(stats["first_seq"], stats["last_seq"] + 1)), seqs
    prev = bytes(32)
    kinds = []
    for e in entries:
        tx = txn.decode(e.data)
        assert tx.prev == prev, "seq %d does not name the transaction before it" % e.seq
        prev = e.tx_id
        kinds.append(tx.kind)
    assert kinds.count(wire.KIND_READINGS) >= 3 and kinds.count(wire.KIND_HEARTBEAT) >= 1, kinds
    audit = CliRunner().invoke(_cli(), ["audit", "--store", record["store"],
                                        "--registry", str(out / "registry.db")])
    assert audit.exit_code == 0, audit.output

    html = (out / "report.html").read_text()
    assert board["name"] in html and "<img" in html


def test_hil_gps_step_in_the_frames_the_board_reads(tmp_path):
    """The substation with the board on the PMU whose GPS clock steps 1 ms: the step is in the
    C37.118 frames the firmware reads (timestamps and angles), and the full node flags the board."""
    need(mp.find_micropython)
    out = tmp_path / "run"
    with mosquitto(tmp_path) as port:
        res = _hil("substation", "--light-node", "ln-pmu-east", "--duration", DURATION_S,
                   "--broker", "mqtt://127.0.0.1:%d" % port, "--heap", str(fw_heap()), "--out", str(out))
    record = json.loads((out / "run.json").read_text())
    assert res.exit_code == 0, [e for e in record["expectations"] if not e["met"]]
    board = record["light_nodes"][0]
    assert board["name"] == "ln-pmu-east" and board["firmware"] and board["lost"] == 0, board
    gps = next(a for a in record["attacks"] if a["kind"] == "gps_step")
    assert gps["detected"] and gps["flags"].get("time-step"), gps
    flagged = {d["device"] for d in record["detections"] if d["kind"] in ("time-step", "angle-drift")}
    assert "ln-pmu-east" in flagged, record["detections"]


@pytest.mark.parametrize("args, says", [
    (["--board", "pico_w"], "give its serial port with --port"),
    (["--board", "esp32", "--port", "/dev/ttyACM-lightnode-none"], "no such port /dev/ttyACM-lightnode-none"),
    (["--board", "unix", "--port", "/dev/ttyACM0"], "takes no --port"),
])
def test_hil_port_errors(tmp_path, args, says):
    res = _hil("normal_day", "--out", str(tmp_path / "run"), *args)
    assert res.exit_code == 2, res.output
    assert says in " ".join(res.output.split()), res.output
    assert not (tmp_path / "run").exists()  # refused before anything was started


def test_hil_real_board_needs_a_broker_it_can_reach(tmp_path):
    master, slave = os.openpty()  # a port that exists
    try:
        path = os.ttyname(slave)
        res = _hil("normal_day", "--board", "pico_w", "--port", path, "--out", str(tmp_path / "run"))
        assert res.exit_code == 2 and "--broker-listen" in res.output, res.output
        res = _hil("normal_day", "--board", "pico_w", "--port", path,
                   "--broker", "mqtt://127.0.0.1:1883", "--out", str(tmp_path / "run"))
        assert res.exit_code == 2 and "loopback" in res.output, res.output
    finally:
        os.close(master)
        os.close(slave)


def test_hil_board_never_flashed(tmp_path):
    """A MicroPython board with no lightnode identity: the error says to flash it first."""
    need(mp.find_micropython)
    from lightnode.rawrepl import UnixBoardPort
    from lightnode.simulator.hil import HilError, SerialBoard

    (tmp_path / "blank").mkdir()
    with UnixBoardPort(tmp_path / "blank") as port:
        with pytest.raises(HilError) as e:
            SerialBoard("pico_w", port.path, tmp_path / "board.log").prepare()
    msg = str(e.value)
    assert "lightnode firmware flash --board pico_w --port %s" % port.path in msg, msg
