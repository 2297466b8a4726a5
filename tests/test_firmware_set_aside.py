"""The whole firmware NACKed: its own record set aside with a signed EV_SET_ASIDE event, once.

A NACK for the board's pending record, with that record's id, makes the
board keep it, stop sending it, and sign an EV_SET_ASIDE event naming it
(value: the seq, limit: the reason's index in ``ln.ack.NACK_REASONS``),
which the node's acks count as covering it (docs/acks.md). A NACK whose
id is not the record's (the node NACKs a topic mismatch before any
signature check: anyone's bytes under the board's seq) sets nothing aside.
Runs on the rig of ``_firmware_support`` (Mosquitto, producer, two witnesses,
the simulated PMU, the firmware in the unix port).
"""

import time

import pytest
from _firmware_support import Rig, decode
from _node_support import SEGMENT
from lightnode import keys, registry
from lightnode.devicedump import DumpError
from lightnode.firmware.ln import ack as lnack
from lightnode.firmware.ln import wire
from lightnode.node import acks
from lightnode.node.mqtt import Transport

pytestmark = pytest.mark.micropython

ACK_SEED = b"\x0a" * 32  # the producer's ack key (_node_support)


def _journal(rig):
    try:
        return rig.journal()
    except DumpError:
        return None


def test_a_nacked_record_is_set_aside_with_one_signed_event(tmp_path):
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 2}) as rig:
        fw = rig.start_firmware(seconds=24)
        rig.wait_for("a first block ack", lambda: (s := _journal(rig)) and s.freed > 0, 20)
        rig.producer.stop()  # what the board signs from now on stays pending
        time.sleep(3)
        pending = rig.journal().pending
        target, other = pending[-1], pending[-2]
        kid = registry.key_id(keys.public_key(ACK_SEED))
        now = time.time_ns() // 1000
        nacks = [
            acks.make_nack(ACK_SEED, kid, rig.device, target.seq, target.tx_id,
                           wire.R_PAYLOAD, now),
            # another record's number with bytes that are not the board's
            acks.make_nack(ACK_SEED, kid, rig.device, other.seq, b"\x01" * 32,
                           lnack.NR_TOPIC, now),
            acks.make_nack(ACK_SEED, kid, rig.device, target.seq, target.tx_id,
                           wire.R_PAYLOAD, now),  # again: no second event in one boot
        ]  # fmt: skip
        sender = Transport.from_url("mqtt://127.0.0.1:%d" % rig.broker_port, client_id="nacker")
        sender.start()
        assert sender.wait_connected(5)
        for data in nacks:
            sender.publish(wire.TOPIC_ACK % (SEGMENT, rig.device_hex), data)
            time.sleep(0.3)
        time.sleep(2)
        sender.close()
        rig.producer.start()
        rig.producer.wait_ready()
        # the node's acks pass the record, committed (queued for the node) or set aside
        rig.wait_for("an ack past seq %d" % target.seq,
                     lambda: rig.journal().freed > target.seq, 40)
        stats = fw.wait()
        entries = rig.entries()

    assert stats["nacks"] == 3, stats
    aside = []
    for e in entries:
        tx = decode(e)
        if tx.kind == wire.KIND_EVENT and tx.body[wire.E_TYPE] == wire.EV_SET_ASIDE:
            aside.append((e.seq, tx.body[wire.E_VALUE], tx.body.get(wire.E_LIMIT)))
    reason = lnack.NACK_REASONS.index(wire.R_PAYLOAD)
    assert [(v, r) for _, v, r in aside] == [(target.seq, reason)], aside
    assert aside[0][0] > target.seq
