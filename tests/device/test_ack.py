# ln.ack: the device checks a real block ack and NACK made by the SDK
# (tests/data/acks, made by make_acks.py), and refuses each broken one with its reason.
import binascii

import _vectors
from ln import ack, wire

_V = _vectors.load("acks/acks.json")
h = binascii.unhexlify


def _nodes():
    import hashlib

    out = {}
    for n in _V["nodes"]:
        key = h(n["key"])
        kid = hashlib.sha256(key).digest()[: wire.KID_BYTES]
        pk, roles = out.get(kid, (key, ()))
        out[kid] = (pk, roles + (n["role"],))
    return out


NODES = _nodes()
DEVICE = h(_V["device"])
SEGMENT = _V["segment"]
RECORDS = [(h(d), h(i)) for d, i in _V["records"]]


def _record(seq):
    return RECORDS[seq] if 0 <= seq < len(RECORDS) else None


def _reason(data, nodes=NODES, device=DEVICE, segment=SEGMENT, record_for=_record):
    try:
        ack.check_ack(data, nodes, device, segment, record_for)
    except ack.AckError as e:
        assert e.reason in ack.ACK_REASONS, e.reason
        return e.reason
    return None


def test_a_real_ack_frees_up_to_its_seq():
    a = ack.check_ack(h(_V["ack"]), NODES, DEVICE, SEGMENT, _record)
    assert a.seq == _V["seq"] == 4
    assert a.tx_id == RECORDS[4][1]
    assert a.chain == "seg:" + SEGMENT and a.size == 10 and a.index == 8


def test_refused_made_by_the_sdk():
    for reason, data in sorted(_V["refused"].items()):
        assert _reason(h(data)) == reason, reason


def test_refused_for_this_device():
    data = h(_V["ack"])
    assert _reason(data, device=b"LN\x00\x00\x00\x00\x00\x04") == ack.AR_DEVICE
    assert _reason(data, segment="feeder-4") == ack.AR_CHAIN
    assert _reason(data, record_for=lambda seq: None) == ack.AR_TX
    # the device's record under that seq is another transaction
    assert _reason(data, record_for=lambda seq: (RECORDS[3][0], RECORDS[4][1])) == ack.AR_PROOF
    assert _reason(data, record_for=lambda seq: RECORDS[3]) == ack.AR_TX


def test_refused_keys():
    data = h(_V["ack"])
    # only the ack key configured: the checkpoint's signer is unknown
    only_ack = dict((k, v) for k, v in NODES.items() if "ack" in v[1])
    assert _reason(data, nodes=only_ack) == ack.AR_KEY
    # one checkpoint key left: the cosignature is by no configured key
    producer_kid = None
    for k, v in NODES.items():
        if "checkpoint" in v[1]:
            producer_kid = k
            break
    some = dict((k, v) for k, v in NODES.items() if "checkpoint" not in v[1] or k == producer_kid)
    assert _reason(data, nodes=some) in (ack.AR_QUORUM, ack.AR_KEY)


def test_refused_tampered():
    data = bytearray(h(_V["ack"]))
    data[-1] ^= 1  # the ack's own signature
    assert _reason(bytes(data)) == ack.AR_SIGNATURE
    assert _reason(b"\xa0") == ack.AR_COSE
    assert _reason(h(_V["ack"])[:-1]) == ack.AR_COSE
    assert _reason(h(_V["nack"])) == ack.AR_CTY


def test_nack():
    n = ack.check_nack(h(_V["nack"]), NODES, DEVICE)
    assert n.reason == ack.NR_REVOKED_DEVICE and n.seq == 5 and n.tx_id == RECORDS[0][1]
    try:
        ack.check_nack(h(_V["ack"]), NODES, DEVICE)
        raise AssertionError("an ack taken for a NACK")
    except ack.AckError as e:
        assert e.reason == ack.AR_CTY
    try:
        ack.check_nack(h(_V["nack"]), NODES, b"LN\x00\x00\x00\x00\x00\x04")
        raise AssertionError("another device's NACK taken")
    except ack.AckError as e:
        assert e.reason == ack.AR_DEVICE


def test_inclusion_root_edges():
    leaf = ack.leaf_hash(b"x")
    assert ack.inclusion_root(leaf, 0, 1, []) == leaf
    assert ack.inclusion_root(leaf, 1, 1, []) is None
    assert ack.inclusion_root(leaf, 0, 2, []) is None  # too short
    assert ack.inclusion_root(leaf, 0, 1, [leaf]) is None  # too long
