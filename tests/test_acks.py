"""Block acks and NACKs (lightnode.node.acks, the Producer's acks, ln.ack under CPython).

Round trips; one cumulative ack per device per final block; a redelivered
transaction acked again with the same bytes; every tampered ack refused
with its reason, by the SDK and by the device code alike.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from _node_support import SEGMENT, Device
from lightnode import keys, registry
from lightnode.firmware.ln import ack as dev_ack
from lightnode.firmware.ln import wire as spec
from lightnode.ledger import checkpoint as cp
from lightnode.ledger.chain import DUPLICATE, Ledger
from lightnode.ledger.store import open_store
from lightnode.node import acks, quorum

P_SEED, W_SEED, ACK_SEED = b"\x71" * 32, b"\x72" * 32, b"\x73" * 32
P_PUB, W_PUB, ACK_PUB = (keys.public_key(s) for s in (P_SEED, W_SEED, ACK_SEED))
P_KID, W_KID, ACK_KID = (registry.key_id(k) for k in (P_PUB, W_PUB, ACK_PUB))
NODE = {P_KID: P_PUB, ACK_KID: ACK_PUB}
WITNESSES = {W_KID: W_PUB}
CHAIN = cp.SEGMENT_PREFIX + SEGMENT
DEVICE_NODES = {
    P_KID: (P_PUB, ("checkpoint",)),
    W_KID: (W_PUB, ("checkpoint",)),
    ACK_KID: (ACK_PUB, ("ack",)),
}


class Out:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, payload))

    def subscribe(self, topic, handler, qos: int = 1) -> None:
        pass

    def acks(self) -> list[tuple[str, bytes]]:
        return [(t, m) for t, m in self.published if t.endswith("/ack")]


class Node:
    def __init__(self, tmp: Path) -> None:
        self.ledger = Ledger(open_store(str(tmp / "p.db")), P_SEED, P_KID, witnesses=WITNESSES)
        self.out = Out()
        self.p = quorum.Producer(self.ledger, self.out, SEGMENT, ACK_SEED, ACK_KID)
        self.records: dict[tuple[bytes, int], bytes] = {}

    def send(self, d: Device, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            seq = d.seq
            data = d.tx()
            self.records[(d.device_id, seq)] = data
            self.ledger.add_transaction(data)
            out.append(data)
        return out

    def cut_and_cosign(self) -> list[tuple[str, bytes]]:
        s = self.ledger.cut(CHAIN)
        assert s is not None
        self.p.on_block(s)
        before = len(self.out.acks())
        assert self.p.on_cosig(cp.cosign(s.raw, W_SEED, W_KID)) is True
        return self.out.acks()[before:]


def test_nack_round_trip_and_reasons() -> None:
    for reason in acks.NACK_REASONS:
        data = acks.make_nack(ACK_SEED, ACK_KID, b"dev-1", 3, bytes(32), reason, 5)
        n = acks.verify_nack(data, {ACK_KID: ACK_PUB})
        assert (n.device, n.seq, n.tx_id, n.reason, n.time) == (b"dev-1", 3, bytes(32), reason, 5)
        d = dev_ack.check_nack(data, DEVICE_NODES, b"dev-1")
        assert (d.seq, d.reason) == (3, reason)
    assert set(acks.NACK_REASONS) >= set(spec.REASONS) | {"unknown-device", "fork"}
    with pytest.raises(ValueError):
        acks.make_nack(ACK_SEED, ACK_KID, b"dev-1", 3, bytes(32), "because", 5)
    with pytest.raises(ValueError):
        acks.make_nack(ACK_SEED, ACK_KID, b"", 3, bytes(32), "fork", 5)
    # by the checkpoint key (kid unknown as an ack key), or an ack for a NACK
    by_cp = acks.make_nack(P_SEED, P_KID, b"dev-1", None, None, "fork", 5)
    with pytest.raises(acks.AckError) as e:
        acks.verify_nack(by_cp, {ACK_KID: ACK_PUB})
    assert e.value.reason == "unknown-key"
    with pytest.raises(dev_ack.AckError) as de:
        dev_ack.check_nack(by_cp, DEVICE_NODES, b"dev-1")
    assert de.value.reason == "unknown-key"


def test_one_cumulative_ack_per_device_per_final_block(tmp_path: Path) -> None:
    node = Node(tmp_path)
    d1, d2 = Device(21), Device(22)
    node.send(d1, 5)
    node.send(d2, 2)
    sent = node.cut_and_cosign()
    assert len(sent) == 2
    by_device = {}
    for topic, data in sent:
        a = acks.verify_ack(data, NODE, WITNESSES)
        assert topic == spec.TOPIC_ACK % (SEGMENT, a.device.hex())
        by_device[a.device] = a
        rec = node.records[(a.device, a.seq)]
        acks.verify_ack(data, NODE, WITNESSES, record=rec, device_id=a.device)
        got = dev_ack.check_ack(
            data, DEVICE_NODES, a.device, SEGMENT, lambda seq, dev=a.device: _rec(node, dev, seq)
        )
        assert got.seq == a.seq
    assert by_device[d1.device_id].seq == 4 and by_device[d2.device_id].seq == 1
    # a second cosignature of a final block sends nothing more
    s = node.ledger.store.head(CHAIN)
    assert s is not None
    assert node.p.on_cosig(cp.cosign(s.signed, W_SEED, W_KID)) is False
    assert len(node.out.acks()) == 2
    # the next block: only the device in it
    node.send(d1, 1)
    [(_, data)] = node.cut_and_cosign()
    assert acks.verify_ack(data, NODE, WITNESSES).seq == 5


def _rec(node: Node, device: bytes, seq: int):
    data = node.records.get((device, seq))
    if data is None:
        return None
    from lightnode import wire

    return data, wire.decode(data).id


def test_redelivered_is_reacked_the_same(tmp_path: Path) -> None:
    node = Node(tmp_path)
    d = Device(23)
    txs = node.send(d, 3)
    [(topic, first)] = node.cut_and_cosign()
    # seq 1 again: a duplicate for the ledger, the same ack again for the device
    assert node.ledger.add_transaction(txs[1]).status == DUPLICATE
    assert node.p.reack(d.device_id, 1) is True
    assert node.out.published[-1] == (topic, first)
    # pending, not final: no ack yet
    more = node.send(d, 1)
    assert node.ledger.add_transaction(more[0]).status == DUPLICATE
    assert node.p.reack(d.device_id, 3) is False
    # after a restart (no cache), the ack is made again from the store and holds
    p2 = quorum.Producer(node.ledger, node.out, SEGMENT, ACK_SEED, ACK_KID)
    assert p2.reack(d.device_id, 2) is True
    a = acks.verify_ack(node.out.published[-1][1], NODE, WITNESSES, record=txs[2])
    assert a.seq == 2
    assert p2.reack(b"nobody", 0) is False


def test_tampered_acks_refused(tmp_path: Path) -> None:
    node = Node(tmp_path)
    d = Device(24)
    txs = node.send(d, 2)
    [(_, good)] = node.cut_and_cosign()
    a = acks.verify_ack(good, NODE, WITNESSES, expected_tx_id=_rec(node, d.device_id, 1)[1])

    def sdk(data: bytes, **kw) -> str:
        with pytest.raises(acks.AckError) as e:
            acks.verify_ack(data, kw.pop("node", NODE), kw.pop("witnesses", WITNESSES), **kw)
        assert e.value.reason in acks.ACK_REASONS
        return e.value.reason

    def device(data: bytes, nodes=DEVICE_NODES, device_id=d.device_id) -> str:
        with pytest.raises(dev_ack.AckError) as e:
            dev_ack.check_ack(
                data, nodes, device_id, SEGMENT, lambda seq: _rec(node, d.device_id, seq)
            )
        return e.value.reason

    flipped = bytearray(good)
    flipped[-1] ^= 1
    assert sdk(bytes(flipped)) == device(bytes(flipped)) == "bad-signature"
    # a byte of the payload changed (the tx id's last byte): signature, or the id, refuses it
    i = good.index(a.tx_id) + 31
    changed = good[:i] + bytes([good[i] ^ 1]) + good[i + 1 :]
    assert sdk(changed) == "bad-signature"
    assert device(changed) in ("tx-mismatch", "bad-signature")
    assert sdk(good, expected_tx_id=hashlib.sha256(b"x").digest()) == "tx-mismatch"
    assert sdk(good, record=txs[0]) == "tx-mismatch"
    assert sdk(good, device_id=b"other") == "wrong-device"
    assert device(good, device_id=b"other") == "wrong-device"
    assert sdk(good, node={P_KID: P_PUB}) == "unknown-key"
    assert sdk(good, witnesses={}) == "unknown-key"
    # an ack signed by the checkpoint key, or a NACK where an ack is expected
    by_cp = acks.make_ack(
        P_SEED,
        P_KID,
        d.device_id,
        a.seq,
        a.tx_id,
        a.checkpoint,
        a.cosignatures,
        a.index,
        a.size,
        a.path,
    )
    assert device(by_cp) == "unknown-key"
    nack = acks.make_nack(ACK_SEED, ACK_KID, d.device_id, 1, a.tx_id, "fork", 1)
    assert sdk(nack) == device(nack) == "content-type"
    # not final: only the producer's own signature as "cosignature"
    own = cp.cosign(a.checkpoint, P_SEED, P_KID)
    lone = acks.make_ack(
        ACK_SEED, ACK_KID, d.device_id, a.seq, a.tx_id, a.checkpoint, [own], a.index, a.size, a.path
    )
    assert sdk(lone, witnesses={W_KID: W_PUB, P_KID: P_PUB}) == "not-final"
    assert device(lone) == "not-final"
    # a wrong proof
    bad = [hashlib.sha256(a.path[0]).digest(), *a.path[1:]]
    wrong = acks.make_ack(
        ACK_SEED,
        ACK_KID,
        d.device_id,
        a.seq,
        a.tx_id,
        a.checkpoint,
        a.cosignatures,
        a.index,
        a.size,
        bad,
    )
    assert sdk(wrong, record=txs[1]) == device(wrong) == "bad-proof"
    assert sdk(b"\xa0") == device(b"\xa0") == "bad-cose"


def test_device_fixtures_are_current() -> None:
    here = Path(__file__).resolve().parent / "data" / "acks"
    sys.path.insert(0, str(here))
    try:
        import make_acks
    finally:
        sys.path.remove(str(here))
    assert (here / "acks.json").read_text() == make_acks.text(), "run tests/data/acks/make_acks.py"
