"""The whole firmware under faults: power cuts at the process, a killed broker, a network outage, forged acks.

Each runs the firmware in the MicroPython unix port against a real
Mosquitto, a producing ``lightnode node`` with two witnesses and the
simulated PMU (``_firmware_support.Rig``). The long profile
(LIGHTNODE_PROFILE=full) makes the outage 2 minutes; CI runs 20 s.
"""

import hashlib
import random
import time

import pytest
from _firmware_support import FULL, Rig, check_chain, events
from _node_support import SEGMENT
from lightnode import keys, registry
from lightnode.devicedump import DumpError
from lightnode.firmware.ln import ack as lnack
from lightnode.firmware.ln import wire
from lightnode.ledger import checkpoint
from lightnode.ledger.store import open_store
from lightnode.node import acks
from lightnode.node.mqtt import Transport
from test_node_cli_quorum import WITNESS_SEEDS

pytestmark = pytest.mark.micropython

KILLS = 50
OUTAGE_S = 120 if FULL else 20
ACK_SEED, CP_SEED = b"\x0a" * 32, b"\x0c" * 32  # the producer's (_node_support)


def _snapshot(rig):
    try:
        return rig.journal()
    except DumpError:
        return None  # no journal yet: the first boot makes it


def test_fifty_power_cuts_lose_nothing_reuse_nothing_and_record_each_skip(tmp_path):
    rnd = random.Random(int(time.time()))
    seen = {}  # seq -> tx id, of every record any snapshot of the journal held
    boots = []  # (first seq the boot may sign, numbers it skips), read off the journal before it

    def look():
        snap = _snapshot(rig)
        if snap is None:
            return 0, 0
        for r in snap.records:
            assert seen.setdefault(r.seq, r.tx_id) == r.tx_id, "seq %d reused" % r.seq
        return snap.limit, snap.next_skip

    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 1}) as rig:
        for _ in range(KILLS):
            boots.append(look())
            fw = rig.start_firmware()
            time.sleep(rnd.uniform(0.3, 2.6))
            assert fw.alive(), fw.output()[-3000:]
            fw.kill()
        boots.append(look())
        stats = rig.run_firmware(6)
        look()
        entries = rig.wait_committed(stats["last_seq"])
        code, report = rig.dump()
        store = open_store(rig.store)
        try:
            forks = [f for f in store.flags(kind="fork") if f.device == rig.device]
        finally:
            store.close()

    ledger = {e.seq: e.tx_id for e in entries}
    assert len(ledger) == len(entries)  # once each
    assert not forks, forks
    lost = sorted(s for s in seen if ledger.get(s) != seen[s])
    assert not lost, "journaled, not on the ledger as journaled: %s" % lost
    check_chain(entries)  # in order, each prev the previous id: nothing between them missing
    skips = dict(events(entries, wire.EV_SEQ_SKIP))
    # a boot cut before it signed anything leaves the next to start at the same number
    signed_boots = {limit: skipped for limit, skipped in boots if limit in ledger}
    for limit, skipped in signed_boots.items():
        if skipped:
            assert limit in skips, "boot at seq %d skipped %d unrecorded" % (limit, skipped)
            assert skips[limit][wire.E_VALUE] == skipped
    assert len(skips) == sum(1 for k in signed_boots.values() if k)
    # every gap in the device's numbers is a recorded skip, and nothing else
    seqs = sorted(ledger)
    for a, b in zip(seqs, seqs[1:], strict=False):
        if b != a + 1:
            assert b in skips and skips[b][wire.E_VALUE] == b - a - 1, (a, b)
    assert len(signed_boots) >= KILLS // 3, (signed_boots, boots)
    assert code == 0 and report["counts"]["committed"] >= 1, report["counts"]


def _heartbeats(entries):
    out = []
    for e in entries:
        from lightnode.firmware.ln import txn

        tx = txn.decode(e.data)
        if tx.kind == wire.KIND_HEARTBEAT:
            out.append((tx.time[0], tx.body))
    return out


def test_broker_killed_and_an_outage_lose_nothing_and_show_in_heartbeats(tmp_path):
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 1}, proxy=True) as rig:
        fw = rig.start_firmware(seconds=18 + OUTAGE_S + 20)
        time.sleep(6)
        # the broker dies without a trace: no persistence, every session gone
        rig.kill_broker()
        down_from = time.time()
        time.sleep(4)
        down_until = time.time()
        rig.start_broker()
        time.sleep(8)
        # the network between board and broker goes dark: packets dropped, no reset
        rig.net.blackhole()
        dark_from = time.time()
        time.sleep(OUTAGE_S)
        dark_until = time.time()
        rig.net.restore()
        stats = fw.wait()
        entries = rig.wait_committed(stats["last_seq"], timeout=60)
        code, report = rig.dump()
        audit = rig.audit()

    # records the broker lost with its sessions come again and are committed late (after the
    # node's reorder wait, flagged), so the ledger holds each once but not in arrival order
    entries = sorted(entries, key=lambda e: e.seq)
    seqs = [e.seq for e in entries]
    assert seqs == list(range(stats["first_seq"], stats["last_seq"] + 1)), seqs
    assert len(seqs) == stats["appended"]
    check_chain(entries)
    assert stats["bad_acks"] == 0 and stats["nacks"] == 0, stats
    assert code == 0 and report["counts"]["missing"] == 0, report["counts"]
    assert audit.exit_code == 0, audit.output
    link = stats["link"]
    assert link["reconnects"] >= 1, link

    hbs = _heartbeats(entries)

    def during(a, b):
        return [body for t, body in hbs if a * 1e6 <= t <= b * 1e6]

    # the broker's death: the link is down in the heartbeats signed meanwhile; offline with
    # records unsent the board signs one, then one per 10 min (the journal's offline budget)
    down = [b for b in during(down_from, down_until + 1) if b[wire.HB_LINK] != wire.LINK_UP]
    assert len(down) == 1, during(down_from, down_until + 1)
    # the outage: the journal fills up (nothing is acked), and empties after
    dark = during(dark_from, dark_until)
    assert len(dark) >= min(OUTAGE_S, 40) // 2, len(dark)  # past 45 s the board sees it: spaced
    depths = [b[wire.HB_JOURNAL] for b in dark]
    assert depths[-1] >= OUTAGE_S // 2 and depths[-1] > depths[0], depths
    # normal: before the broker's death (after it, records it lost wait for the board's resend,
    # up to 20 s when the node resubscribed after the board's republish)
    normal = [b[wire.HB_JOURNAL] for b in during(down_from - 4, down_from - 0.5)]
    assert max(normal) < depths[-1] // 2, (normal, depths)
    after = [b[wire.HB_JOURNAL] for b in during(dark_until + 3, time.time() + 60)]
    assert after and min(after) < depths[-1] // 2, (after, depths)
    if OUTAGE_S > 45:  # past 1.5 keepalives (30 s) the board itself sees the link dead
        assert any(b[wire.HB_LINK] != wire.LINK_UP for b in dark), dark


def _kid(seed):
    return registry.key_id(keys.public_key(seed))


def _forgeries(device, seq, record, tx_id):
    """Acks for the board's own pending record ``seq`` that each get one thing wrong."""
    now = time.time_ns() // 1000

    def cp(root):
        signed = checkpoint.sign(checkpoint.Checkpoint("seg:" + SEGMENT, 1, root, bytes(32), now),
                                 CP_SEED, _kid(CP_SEED))
        return signed

    leaf = lnack.leaf_hash(record)
    good_cp = cp(leaf)
    wseed = WITNESS_SEEDS["node-b"][0]
    cosig = checkpoint.cosign(good_cp, wseed, _kid(wseed))
    stranger = b"\x99" * 32

    def mk(seed=ACK_SEED, tid=tx_id, c=good_cp, cosigs=(cosig,)):
        return acks.make_ack(seed, _kid(seed), device, seq, tid, c, list(cosigs), 0, 1, [])

    other = hashlib.sha256(b"another record").digest()
    wrong_root_cp = cp(lnack.leaf_hash(b"another record"))
    return {
        "wrong ack key": (mk(seed=stranger), lnack.AR_KEY),
        "wrong hash": (mk(tid=other), lnack.AR_TX),
        "proof of another record": (mk(c=wrong_root_cp, cosigs=(checkpoint.cosign(
            wrong_root_cp, wseed, _kid(wseed)),)), lnack.AR_PROOF),
        "checkpoint by a stranger": (mk(c=checkpoint.sign(checkpoint.Checkpoint(
            "seg:" + SEGMENT, 1, leaf, bytes(32), now), stranger, _kid(stranger))), lnack.AR_KEY),
        "no quorum: cosigned by the producer itself": (
            mk(cosigs=(checkpoint.cosign(good_cp, CP_SEED, _kid(CP_SEED)),)), lnack.AR_QUORUM),
        "no quorum: cosigned by a stranger": (
            mk(cosigs=(checkpoint.cosign(good_cp, stranger, _kid(stranger)),)), lnack.AR_QUORUM),
    }


def test_forged_acks_free_nothing(tmp_path):
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 2}) as rig:
        fw = rig.start_firmware(seconds=30)
        rig.wait_for("a first block ack", lambda: (s := _snapshot(rig)) and s.freed > 0, 20)
        rig.producer.stop()  # no more real acks: what the board signs from now on stays pending
        time.sleep(4)
        before = rig.journal()
        target = before.pending[-1]
        assert target.seq > before.freed, (target.seq, before.freed)
        forged = _forgeries(rig.device, target.seq, target.data, target.tx_id)
        for data, _reason in forged.values():  # the SDK agrees each is forged
            with pytest.raises(acks.AckError):
                acks.verify_ack(data, {_kid(s): keys.public_key(s) for s in (ACK_SEED, CP_SEED)},
                                {_kid(w[0]): keys.public_key(w[0]) for w in WITNESS_SEEDS.values()},
                                record=target.data, device_id=rig.device)
        attacker = Transport.from_url("mqtt://127.0.0.1:%d" % rig.broker_port, client_id="attacker")
        attacker.start()
        assert attacker.wait_connected(5)
        topic = wire.TOPIC_ACK % (SEGMENT, rig.device_hex)
        for data, _reason in forged.values():
            attacker.publish(topic, data)
            time.sleep(0.3)  # the board keeps at most a few acks waiting
        time.sleep(3)
        attacker.close()
        after = rig.journal()
        assert after.freed == before.freed, (before.freed, after.freed)
        assert [r.seq for r in after.pending][: len(before.pending)] == [r.seq for r in before.pending]
        # the real node back: real acks free what the forged ones could not
        rig.producer.start()
        rig.producer.wait_ready()
        rig.wait_for("the real ack for seq %d" % target.seq,
                     lambda: rig.journal().freed > target.seq, 30)
        stats = fw.wait()
        out = fw.output()

    assert stats["bad_acks"] == len(forged), (stats, out[-3000:])
    for name, (_data, reason) in forged.items():
        assert "ack refused: %s" % reason in out, (name, reason, out[-3000:])
