"""``lightnode device dump``: a unix-port board's journal and retention ring, checked against the ledger.

The firmware runs in the unix port against a real segment (Mosquitto, a
producer, two witnesses, a simulated PMU); then the dump of its board
directory agrees with the producer's store, record by record. Records the
node has not seen yet are pending, not errors; a freed record the ledger
lacks, and a record the ledger holds another transaction for, are errors
(exit 1).
"""

import json
import struct

import pytest
from _firmware_support import Rig, invoke
from lightnode import devicedump, wire
from lightnode.firmware.ln import journal as fmt
from lightnode.firmware.ln import wire as lnwire

pytestmark = pytest.mark.micropython


def _rewrite(path, seq, new_data, new_id):
    """Put ``new_data`` in place of record ``seq`` of journal file ``path``, with a valid CRC."""
    raw = bytearray(path.read_bytes())
    out, at = bytearray(), 0
    while at + fmt.HEADER_BYTES <= len(raw):
        _n, _crc, s, _tid = struct.unpack_from(fmt.HEADER, raw, at)
        body = bytes(raw[at + fmt.HEADER_BYTES: at + fmt.HEADER_BYTES + _n])
        if s == seq:
            body = new_data
            hdr = bytearray(struct.pack(fmt.HEADER, len(body), 0, s, new_id))
        else:
            hdr = bytearray(raw[at: at + fmt.HEADER_BYTES])
        struct.pack_into("<I", hdr, 4, fmt._crc(hdr, body))
        out += hdr + body
        at += fmt.HEADER_BYTES + _n
    path.write_bytes(bytes(out))


def test_dump_matches_the_ledger_and_names_what_does_not(tmp_path):
    with Rig(tmp_path, app={"window_s": 1}) as rig:
        stats = rig.run_firmware(10)
        assert stats["appended"] >= 8 and stats["freed"] >= 1, stats
        code, report = rig.dump()
        assert code == 0, report
        counts = report["counts"]
        assert report["device"] == rig.device_hex and report["segment"] == "feeder-9"
        assert counts["committed"] >= stats["appended"] - 3, report["counts"]
        assert counts["missing"] == counts["different"] == counts["corrupt"] == 0
        freed = [r for r in report["records"] if r["freed"]]
        assert freed and all(r["status"] == "committed" for r in freed), report["counts"]
        ledger = {e.seq: e.tx_id.hex() for e in rig.entries()}
        for r in report["records"]:
            if r["status"] == "committed":
                assert ledger[r["seq"]] == r["tx_id"]
        assert report["last_seq"] == stats["last_seq"]

        # no node: what the board signs now is pending, not an error
        rig.producer.stop()
        stats2 = rig.run_firmware(4)
        code, report = rig.dump()
        assert code == 0, report
        pending = [r for r in report["records"] if r["status"] == "pending"]
        assert len(pending) >= stats2["appended"] >= 3, (report["counts"], stats2)
        assert all(not r["freed"] for r in pending)
        assert all(r["seq"] > stats["last_seq"] for r in pending)
        # the text form says the same, in a line per record
        text = invoke("device", "dump", str(rig.board), "--store", rig.store)
        assert text.exit_code == 0, text.output
        assert "%d pending" % len(pending) in text.output

        # against a store that never saw this device: its freed records are missing
        empty = "sqlite:///" + str(tmp_path / "empty.db")
        from lightnode.ledger.store import open_store

        open_store(empty).close()
        res = invoke("device", "dump", str(rig.board), "--store", empty, "--json")
        assert res.exit_code == 1, res.output
        bad = json.loads(res.output[res.output.find("{"):res.output.rfind("}") + 1])
        assert bad["counts"]["missing"] == len(freed), bad["counts"]

        # a record the board holds under a committed number, signed by its own key, that the
        # ledger does not hold there (a fork): different
        snap = devicedump.read_journal(rig.board)
        victim = next(r for r in snap.records if r.freed)
        seed = (rig.board / "lightnode" / "key.bin").read_bytes()
        tx = wire.decode(victim.data)
        forged, forged_id = wire.make(seed, rig.device, "feeder-9", tx.seq, tx.prev, tuple(tx.time),
                                      lnwire.KIND_HEARTBEAT,
                                      {0: "9.9.9", 1: 1, 2: 0, 3: 2, 4: 0, 5: 0})
        _rewrite(snap.path / victim.file, victim.seq, forged, forged_id)
        res = invoke("device", "dump", str(rig.board), "--store", rig.store)
        assert res.exit_code == 1, res.output
        assert "different" in res.output and "seq %d" % victim.seq in res.output


def test_a_torn_tail_is_read_as_the_board_reads_it(tmp_path):
    """CPython reads the board's own journal (made here by ln.journal on CPython) and stops where a cut tore it."""
    seed = b"\x42" * 32
    dev = b"LN\x00\x00\x00\x00\x00\x42"
    jdir = tmp_path / "lightnode" / "journal"
    jdir.parent.mkdir()
    j = fmt.Journal(str(jdir), 200_000)
    signer = wire.Signer(seed, dev, "feeder-9")
    ids = []
    for i in range(5):
        seq, _skipped = j.reserve_seq()
        data, tx_id = signer.make(seq, j.prev, (1_700_000_000_000_000 + i, 1, 500), 4,
                                  {0: "0.1.0", 1: 1000, 2: i, 3: 2, 4: 1, 5: 0})
        j.append(seq, tx_id, data)
        ids.append(tx_id)
    j.sync()
    j.close()
    seg = sorted(jdir.glob("j*"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x10\x00\x00\x00" + b"\x00" * 20)  # a header cut short
    snap = devicedump.read_journal(tmp_path)
    assert [r.tx_id for r in snap.records] == ids
    assert snap.torn == [(seg.name, seg.stat().st_size - 24, 24)]
    assert snap.state == "ok" and snap.limit == fmt.RESERVE and snap.next_skip == fmt.RESERVE - 5
    # the board's own journal, opened after the cut, agrees with the dump
    j2 = fmt.Journal(str(jdir), 200_000)
    assert j2.prev == snap.prev and j2.reserve_seq() == (snap.limit, snap.next_skip)
    j2.close()
