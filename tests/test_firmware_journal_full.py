"""Journal full: the whole firmware offline until its journal fills, then back.

The firmware runs in the MicroPython unix port against a real Mosquitto, a
producing ``lightnode node`` with two witnesses and the simulated PMU
(``_firmware_support.Rig``), with a small journal quota from app.json. The
network between board and broker goes dark (a netem blackhole: no acks,
nothing delivered) while the PMU stalls now and then (each stall a
comm-loss and a restore event). As the journal fills, the batcher signs
routine windows decimated (one min/max/mean sample each, ``agg`` in the
series), then several decimated windows per transaction; events go in
whole. Then the network comes back and everything is delivered: every
sequence number once, in order; every event; every frame the board read
in exactly one series, full-rate or decimated, as the ledger's decoded
readings (``lightnode.readings``) show.

The PMU runs at 50 frames/s with 1 s windows (50 samples a window), so
the journal fills within the time the board's MQTT link takes to notice a
dark network (1.5 keepalives): nothing here waits for a reconnect's
backoff.
"""

import time

import pytest
from _firmware_support import Rig, check_chain, decode
from lightnode import readings
from lightnode.firmware.ln import wire

pytestmark = pytest.mark.micropython

QUOTA = 32768  # bytes of pending records: the smallest the journal takes (one segment)
RATE = 50  # frames/s: 50 samples a window, about 1.1 KB full-rate
STALL_AFTER = 300  # frames per PMU link: a stall every ~10 s (6 s of frames, 3 s to notice, 1 s retry)
WIDEN = 4  # decimated windows per transaction past the second threshold
DARK_MAX_S = 42  # under 1.5 MQTT keepalives: the board's link never notices (a reconnect costs backoff)


def _readings(entries):
    """(seq, [Series]) of each readings transaction, decoded the SDK's way."""
    out = []
    for e in entries:
        tx = decode(e)
        if tx.kind == wire.KIND_READINGS:
            out.append((e.seq, readings.decode_body(tx.body), len(e.data)))
    return out


def _widened_pending(rig):
    try:
        snap = rig.journal()
    except Exception:  # the journal mid-write: look again
        return None
    from lightnode.firmware.ln import txn

    for r in snap.pending:
        tx = txn.decode(r.data)
        if tx.kind == wire.KIND_READINGS and len(tx.body) >= WIDEN:
            return r.seq
    return None


def test_journal_full_decimates_routine_readings_keeps_every_event_and_loses_nothing(tmp_path):
    app = {"window_s": 1, "heartbeat_every": 2, "journal_quota_bytes": QUOTA, "widen_windows": WIDEN}
    with Rig(tmp_path, app=app, pmu_rate=RATE, pmu_faults={"stall_after": STALL_AFTER},
             proxy=True) as rig:
        fw = rig.start_firmware(seconds=95)
        time.sleep(4)  # online: full-rate windows, acked and freed
        rig.net.blackhole()
        dark_from = time.monotonic()
        rig.wait_for("a widened decimated transaction on the board", lambda: _widened_pending(rig),
                     DARK_MAX_S, every=0.5)
        dark_s = time.monotonic() - dark_from
        rig.net.restore()
        stats = fw.wait()
        entries = rig.wait_committed(stats["last_seq"], timeout=60)
        code, report = rig.dump()
        audit = rig.audit()

    print("firmware stats:", stats)
    # nothing lost: every number once, in order, chained; nothing dropped on the board
    seqs = [e.seq for e in entries]
    assert seqs == list(range(stats["first_seq"], stats["last_seq"] + 1)), seqs
    assert len(seqs) == stats["appended"]
    txs = check_chain(entries)
    assert stats["dropped"] == 0 and "hb_dropped" not in stats, stats
    assert audit.exit_code == 0, audit.output
    assert code == 0 and report["counts"]["missing"] == 0, report["counts"]

    # every event the board made is committed, whole; the outage had some
    evs = [tx for tx in txs if tx.kind == wire.KIND_EVENT]
    assert len(evs) == stats["events"], (len(evs), stats)
    losses = [tx for tx in evs if tx.body[wire.E_TYPE] == wire.EV_COMM_LOSS]
    assert len(losses) >= 3, len(losses)

    # the readings: full-rate first, decimated while the journal filled, several windows a transaction past 80 %
    rd = _readings(entries)
    full = [(seq, ss, n) for seq, ss, n in rd if all(s.agg is None for s in ss)]
    dec = [(seq, ss, n) for seq, ss, n in rd if all(s.agg is not None for s in ss)]
    assert len(full) + len(dec) == len(rd), "a transaction mixes raw and decimated series"
    assert full and dec, (len(full), len(dec))
    assert full[0][0] < dec[0][0], "decimated before the journal filled"
    widened = [x for x in dec if len(x[1]) == WIDEN]
    assert widened, [len(x[1]) for x in dec]
    for _seq, ss, _n in dec:
        for s in ss:
            assert s.n == 1 and s.agg >= 1  # a whole window, one sample
            for p in s.points:
                assert p.mins is not None and p.mins[0] <= p.values[0] <= p.maxs[0]
    assert stats["decimated"] == sum(len(ss) for _seq, ss, _n in dec), stats

    # every frame the board read is in exactly one series, raw or aggregated (the simulated
    # PMU starts its timeline again on each link, so times are not compared across windows)
    series = [s for _seq, ss, _n in rd for s in ss]
    assert sum(s.n if s.agg is None else s.agg for s in series) == stats["frames"], stats

    # what a transaction costs on flash and on the wire (a window here: 50 samples)
    per_window = max(n for _seq, _ss, n in full)
    one = [n for _seq, ss, n in dec if len(ss) == 1]
    wide = [n for _seq, ss, n in widened]
    print("journal full: %.0f s dark; full-rate window %d bytes; decimated window %s bytes; "
          "%d decimated windows in one transaction %s bytes"
          % (dark_s, per_window, max(one) if one else "-", WIDEN, max(wide)))
    # min/max/mean of a window is three samples a point: at this test's 50 samples a window it
    # is under half a full-rate window (at a Pico W's 250, about a tenth: bench/firmware.py)
    assert not one or max(one) < per_window // 2, (one, per_window)
    assert max(wide) < WIDEN * (max(one) if one else per_window // 2), wide
