"""The soak run: the firmware for a long stretch at the board's window, with events, against a real segment.

A Pico W board (5 s window) in the unix port reads a simulated PMU that
stalls now and then (``stall_after``: the link stays open, frames stop),
so the firmware raises a source-lost event and a restored one when it has
reconnected: one loss a minute in the full profile (LIGHTNODE_PROFILE=full,
10 minutes), one every ~19 s in CI (75 s). Afterwards every transaction
is committed exactly once and in order, the device's hash chain holds,
``lightnode audit`` is clean and ``lightnode device dump`` matches the
ledger.
"""

import pytest
from _firmware_support import FULL, Rig, check_chain, events
from lightnode.firmware.ln import wire

pytestmark = pytest.mark.micropython

SECONDS = 600 if FULL else 75
RATE = 10  # PMU frames per second
# frames per link before the PMU stalls; the firmware calls the source lost 3 s
# later (app.LOSS_MS) and reconnects 1 s after that (app.RETRY_MS)
STALL_AFTER = 560 if FULL else 150
PERIOD_S = STALL_AFTER / RATE + 4


def test_soak_every_transaction_once_in_order_audit_and_dump_clean(tmp_path):
    with Rig(tmp_path, pmu_rate=RATE, pmu_faults={"stall_after": STALL_AFTER}) as rig:
        stats = rig.run_firmware(SECONDS)
        entries = rig.wait_committed(stats["last_seq"], timeout=60)
        code, report = rig.dump()
        audit = rig.audit()
        window = rig.facts["default_window_s"]

    seqs = [e.seq for e in entries]
    assert seqs == list(range(stats["first_seq"], stats["last_seq"] + 1)), seqs  # once each, in order
    assert len(seqs) == stats["appended"]
    txs = check_chain(entries)
    assert audit.exit_code == 0, audit.output
    assert code == 0, report["counts"]
    counts = report["counts"]
    assert counts["missing"] == counts["different"] == counts["corrupt"] == 0, counts
    assert counts["committed"] >= len(report["records"]) - 3, counts
    assert stats["bad_acks"] == 0 and stats["nacks"] == 0, stats
    assert stats["pending"] <= 3, stats

    # the board's window: readings at least every window, more often only when an event closed one
    readings = [tx for tx in txs if tx.kind == wire.KIND_READINGS]
    assert len(readings) >= SECONDS // window - 2 - SECONDS // PERIOD_S, len(readings)
    # the events: each stall a loss, each reconnect a restore, each its own transaction
    lost = events(entries, wire.EV_COMM_LOSS)
    restored = events(entries, wire.EV_COMM_RESTORED)
    want = int(SECONDS // PERIOD_S)
    assert want - 1 <= len(lost) <= want + 1, (len(lost), want)
    assert len(restored) >= len(lost) - 1, (len(restored), len(lost))
    for (s_lost, b_lost), (s_back, _b_back) in zip(lost, restored, strict=False):
        assert s_lost < s_back
        assert b_lost[wire.E_SEVERITY] == wire.SEV_ALARM
    hbs = [tx for tx in txs if tx.kind == wire.KIND_HEARTBEAT]
    assert len(hbs) >= stats["heartbeats"] and stats["heartbeats"] >= 2, stats
    assert all(hb.body[wire.HB_LINK] == wire.LINK_UP for hb in hbs[1:]), \
        [hb.body for hb in hbs]  # the link held all along
    print("soak: %d s, %d transactions, %d losses, min free heap %s bytes"
          % (SECONDS, len(seqs), len(lost), stats["min_free_heap"]))
