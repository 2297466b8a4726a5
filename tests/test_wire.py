"""lightnode.wire: round trips, every refusal reason, limits, canonical forms, signatures.

Inputs are built here with cbor2 and pynacl directly (not with the code
under test), then changed in one place, so each test says which fault
gives which reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from lightnode import wire as codec
from lightnode.errors import DecodeError, VerifyError, WireError
from lightnode.firmware.ln import wire
from nacl.signing import SigningKey

DATA = Path(__file__).resolve().parent / "data"
# RFC 8032 section 7.1, TEST 1: a published key, obviously not a secret.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
DEVICE = bytes.fromhex("4c4e0001a5c3e701")
SEGMENT = "feeder-7"
TIME = [1_700_000_000_000_000, wire.TQ_NTP, 1500]
HEARTBEAT = {0: "1.2.0", 1: 61_000, 2: 12, 3: 1, 4: wire.TQ_NTP, 5: 0}
READINGS = [{0: TIME[0], 1: 20_000, 2: [0, 0, 1000], 3: [[1, 1, [50_012, 1, -2, 0]]], 4: [[4, 0]]}]


def payload_map(**changes: Any) -> dict[int, Any]:
    p = {
        0: 1,
        1: DEVICE,
        2: SEGMENT,
        3: 1042,
        4: hashlib.sha256(b"1041").digest(),
        5: TIME,
        6: 4,
        7: HEARTBEAT,
    }
    for k, v in changes.items():
        key = {
            "version": 0,
            "device": 1,
            "segment": 2,
            "seq": 3,
            "prev": 4,
            "time": 5,
            "kind": 6,
            "body": 7,
        }[k]
        if v is _DROP:
            del p[key]
        else:
            p[key] = v
    return p


_DROP = object()


def header(**changes: Any) -> dict[int, Any]:
    h = {1: -8, 4: DEVICE, 258: -16, 259: 60}
    h.update({int(k[1:]): v for k, v in changes.items() if v is not _DROP})
    for k in [int(k[1:]) for k, v in changes.items() if v is _DROP]:
        del h[k]
    return h


def build(
    payload: bytes | None = None,
    protected: bytes | None = None,
    unprotected: dict[Any, Any] | None = None,
    tag: int | None = 18,
    sign_with: bytes = SEED,
    payload_hash: bytes | None = None,
    signature: bytes | None = None,
) -> bytes:
    """A wire transaction from parts, signed over its Sig_structure with pynacl, encoded by cbor2."""
    if payload is None:
        payload = cbor2.dumps(payload_map(), canonical=True)
    if protected is None:
        protected = cbor2.dumps(header(), canonical=True)
    h = hashlib.sha256(payload).digest() if payload_hash is None else payload_hash
    if signature is None:
        tbs = cbor2.dumps(["Signature1", protected, b"", h])
        signature = SigningKey(sign_with).sign(tbs).signature
    sign1: Any = [protected, unprotected or {}, h, signature]
    if tag is not None:
        sign1 = cbor2.CBORTag(tag, sign1)
    return cbor2.dumps([sign1, payload], canonical=True)


def reason(data: bytes, key: bytes | None = PUBLIC) -> str | None:
    try:
        tx = codec.decode(data)
        if key is not None:
            tx.verify(key)
    except WireError as e:
        assert e.reason in wire.REASONS
        return e.reason
    return None


# -- round trips ----------------------------------------------------------------------


def test_signer_round_trip_and_the_specs_bytes():
    s = codec.Signer(SEED, DEVICE, SEGMENT)
    assert s.public == PUBLIC
    prev = hashlib.sha256(b"1041").digest()
    data, tx_id = s.make(1042, prev, TIME, wire.KIND_HEARTBEAT, HEARTBEAT)
    # the same bytes, built independently
    assert data == build()
    tx = codec.decode(data)
    tx.verify(PUBLIC)
    assert tx == codec.verify(data, PUBLIC)
    assert tx.id == tx_id == hashlib.sha256(tx.envelope).digest()
    assert data == b"\x82" + tx.envelope + cbor2.dumps(tx.payload)
    assert tx.envelope[0] == 0xD2
    assert (tx.version, tx.device_id, tx.kid, tx.segment, tx.seq, tx.prev) == (
        1,
        DEVICE,
        DEVICE,
        SEGMENT,
        1042,
        prev,
    )
    assert tx.time == codec.Time(*TIME) and tx.time.quality_name == "ntp"
    assert (tx.kind, tx.kind_name, tx.body) == (4, "heartbeat", HEARTBEAT)
    assert tx.alg == wire.ALG_EDDSA and tx.header == header()
    assert tx.payload_hash == hashlib.sha256(tx.payload).digest()
    assert len(tx.signature) == 64


def test_protected_header_and_sig_structure_bytes():
    # {1: -8, 4: h'4c4e0001a5c3e701', 258: -16, 259: 60}
    ph = codec.protected_header(DEVICE)
    assert ph.hex() == "a4012704484c4e0001a5c3e7011901022f190103183c"
    h = bytes(range(32))
    tbs = codec.sig_structure(ph, h)
    assert tbs == cbor2.dumps(["Signature1", ph, b"", h])
    assert len(tbs) == 70  # the spec's number for an 8-byte device id
    sig = bytes(64)
    assert codec.envelope(ph, h, sig) == cbor2.dumps(cbor2.CBORTag(18, [ph, {}, h, sig]))


@pytest.mark.parametrize(
    "kind, body",
    [
        (wire.KIND_READINGS, READINGS),
        (wire.KIND_EVENT, {0: 7, 1: 3, 2: 1, 3: 50_512, 4: 50_500, 5: TIME[0]}),
        (wire.KIND_EVENT, {0: 7, 1: 0, 2: None, 3: None, 5: TIME[0]}),
        (wire.KIND_OPERATOR, {"a": 1, 1000: 2}),
        (wire.KIND_HEARTBEAT, HEARTBEAT),
        (wire.KIND_REGISTRATION, {0: b"\x01" * 32, "b": [True, False, None]}),
        (wire.KIND_SUMMARY, {}),
    ],
)
def test_every_kind_round_trips(kind, body):
    s = codec.Signer(SEED, DEVICE, SEGMENT)
    data, _ = s.make(0, bytes(32), TIME, kind, body)
    tx = codec.verify(data, PUBLIC)
    assert tx.kind == kind and tx.body == body
    # mixed key types sort in RFC 8949 bytewise order, as cbor2 would not (it sorts by length first)
    if kind == wire.KIND_OPERATOR:
        assert tx.payload.endswith(bytes.fromhex("a21903e802616101"))


def test_readings_body_through_the_readings_module():
    s = codec.Signer(SEED, DEVICE, SEGMENT)
    data, _ = s.make(0, bytes(32), TIME, wire.KIND_READINGS, READINGS)
    tx = codec.decode(data)
    (series,) = tx.readings()
    assert series.times == [TIME[0], TIME[0] + 20_000, TIME[0] + 40_000, TIME[0] + 61_000]
    assert series.points[0].values == [50_012, 50_013, 50_011, 50_011]
    with pytest.raises(ValueError):
        codec.decode(build()).readings()  # a heartbeat has none


def test_edge_values_round_trip():
    s = codec.Signer(SEED, b"\xff" * 32, "a" * 32)
    for seq in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1):
        data, _ = s.make(
            seq, b"\xff" * 32, [2**64 - 1, 3, 0], wire.KIND_SUMMARY, {-(2**64): 2**64 - 1}
        )
        tx = codec.verify(data, s.public)
        assert tx.seq == seq and tx.time.us == 2**64 - 1
    codec.verify(codec.Signer(SEED, b"\x00", "-").make(0, bytes(32), [0, 0, 0], 6, {})[0], PUBLIC)


def test_alg_minus_19_is_ed25519_too():
    data = build(protected=cbor2.dumps(header(_1=-19), canonical=True))
    assert codec.verify(data, PUBLIC).alg == wire.ALG_ED25519


def test_from_parts_is_the_same_transaction():
    data = build()
    tx = codec.decode(data)
    assert codec.from_parts(tx.envelope, tx.payload) == tx
    assert codec.join(tx.envelope, tx.payload) == data
    with pytest.raises(DecodeError) as e:
        codec.from_parts(tx.envelope + b"\x00", tx.payload)
    assert e.value.reason == wire.R_MALFORMED


def test_decode_takes_bytes_like_and_refuses_other_types():
    data = build()
    assert codec.decode(bytearray(data)) == codec.decode(memoryview(data)) == codec.decode(data)
    with pytest.raises(TypeError):
        codec.decode(data.hex())  # type: ignore[arg-type]


# -- every reason, from a targeted change --------------------------------------------


def _payload(**changes: Any) -> bytes:
    return cbor2.dumps(payload_map(**changes), canonical=True)


def _protected(**changes: Any) -> bytes:
    return cbor2.dumps(header(**changes), canonical=True)


CASES = {
    wire.R_OVERSIZED: [
        build(payload=_payload(kind=6, body={0: b"\x00" * 16_300})),
        build(payload=_payload(kind=6, body={0: [[[[[[[[0]]]]]]]]})),  # 9 deep inside the payload
        build(payload=_payload(kind=6, body={0: [0] * 2049})),
        build(payload=_payload(kind=6, body={i: 0 for i in range(2049)})),
    ],
    wire.R_MALFORMED: [
        build()[:-1],
        build() + b"\x00",
        b"",
        b"\x82",
        build(payload=_payload(segment="feeder-7").replace(b"feeder-7", b"feeder\xc3\x28")),
        build(payload=_payload()[:-1]),
        build(protected=_protected()[:-1]),
        build(protected=b""),  # an empty protected header is not a CBOR document
    ],
    wire.R_UNSUPPORTED: [
        build(payload=_payload(kind=6, body={0: 1.5})),
        build(payload=_payload(kind=6, body={0: cbor2.CBORTag(1, 0)})),
        build(payload=_payload(kind=6, body={b"k": 1})),  # byte-string map key
        build(payload=_payload(body={}).replace(b"\x07\xa0", b"\x07\xbf\xff", 1)),  # indefinite map
        build(tag=None).replace(b"\x82\x84", b"\x82\xd2\xd2\x84", 1),  # two tags deep
        codec.decode(build()).envelope,  # an envelope alone: a tag at the top
        build(payload=_payload(kind=6, body={0: cbor2.undefined})),
    ],
    wire.R_NON_CANONICAL: [
        build(
            payload=_payload(seq=1042).replace(b"\x03\x19\x04\x12", b"\x03\x1a\x00\x00\x04\x12", 1)
        ),
        build(payload=cbor2.dumps({1: DEVICE, **payload_map()})),  # keys 1, 0, 2, ...: unsorted
        build().replace(b"\x82\xd2", b"\x98\x02\xd2", 1),  # outer array count in long form
        build(
            payload=_payload(kind=6, body={1: 0}).replace(
                b"\xa1\x01\x00", b"\xa2\x01\x00\x00\x00", 1
            )
        ),
        build(
            payload=_payload(kind=6, body={1: 0}).replace(
                b"\xa1\x01\x00", b"\xa2\x01\x00\x01\x00", 1
            )
        ),
        build(protected=bytes.fromhex("a404484c4e0001a5c3e70101271901022f190103183c")),
    ],
    wire.R_STRUCTURE: [
        cbor2.dumps([1, 2]),
        cbor2.dumps({0: 1}),
        cbor2.dumps(cbor2.loads(build()) + [b""]),
        cbor2.dumps([cbor2.loads(build())[0], {}]),
        cbor2.dumps([cbor2.CBORTag(18, [b"", {}, b""]), b""]),
        build(signature=bytes(63)),
        build(payload_hash=bytes(31)),
        cbor2.dumps([cbor2.CBORTag(18, [{}, {}, bytes(32), bytes(64)]), b""]),
        cbor2.dumps([cbor2.CBORTag(18, [b"", [], bytes(32), bytes(64)]), b""]),
        cbor2.dumps([cbor2.CBORTag(18, [b"", {}, None, bytes(64)]), b""]),
        cbor2.dumps(
            [cbor2.loads(build())[0], cbor2.CBORTag(24, b"")]
        ),  # a tag where the payload goes
    ],
    wire.R_TAG: [build(tag=17), build(tag=None), build(tag=98), build(tag=2), build(tag=258)],
    wire.R_ALG: [
        build(protected=_protected(_1=-7)),
        build(protected=_protected(_1=-53)),
        build(protected=_protected(_1="EdDSA")),
        build(protected=cbor2.dumps({1: -999})),
    ],
    wire.R_PROTECTED: [
        build(protected=_protected(_3=60)),  # content type, which RFC 9995 forbids
        build(protected=_protected(_258=_DROP)),
        build(protected=_protected(_259=_DROP)),
        build(protected=_protected(_4=_DROP)),
        build(protected=_protected(_1=_DROP)),
        build(protected=_protected(_258=-43)),
        build(protected=_protected(_259=50)),
        build(protected=_protected(_4=b"")),
        build(protected=_protected(_4=b"\x01" * 33)),
        build(protected=_protected(_4="4c4e")),
        build(protected=cbor2.dumps([1, -8])),
        build(protected=_protected(_260="https://example.org/p")),
    ],
    wire.R_UNPROTECTED: [build(unprotected={4: DEVICE}), build(unprotected={"x": 1})],
    wire.R_PAYLOAD_HASH: [
        build(payload_hash=hashlib.sha256(_payload(seq=1043)).digest()),
        build(payload_hash=bytes(32)),
    ],
    wire.R_PAYLOAD: [
        build(payload=cbor2.dumps([1, 2])),
        build(payload=_payload(body=_DROP)),
        build(payload=cbor2.dumps({**payload_map(), 8: 0}, canonical=True)),
        build(payload=_payload(version=-1)),
        build(payload=_payload(version=True)),
        build(payload=_payload(device=b"")),
        build(payload=_payload(device="4c4e")),
        build(payload=_payload(segment="Feeder-7")),
        build(payload=_payload(segment="")),
        build(payload=_payload(segment="f" * 33)),
        build(payload=_payload(seq=2**63)),
        build(payload=_payload(seq=-1)),
        build(payload=_payload(prev=bytes(31))),
        build(payload=_payload(time=[1, 2])),
        build(payload=_payload(time=[1, 4, 0])),
        build(payload=_payload(time=[1, 1, -1])),
        build(payload=_payload(kind=0)),
        build(payload=_payload(kind=7)),
        build(payload=_payload(kind=wire.KIND_READINGS, body=[])),
        build(payload=_payload(kind=wire.KIND_READINGS, body={})),
        build(payload=_payload(kind=wire.KIND_READINGS, body=[[1]])),
        build(payload=_payload(kind=wire.KIND_EVENT, body={0: 1, 1: 0})),
        build(payload=_payload(kind=wire.KIND_EVENT, body={0: 1, 1: 4, 5: 0})),
        build(payload=_payload(kind=wire.KIND_EVENT, body={0: 1, 1: 0, 5: 0, 6: 0})),
        build(payload=_payload(kind=wire.KIND_EVENT, body={0: 1, 1: 0, 2: -1, 5: 0})),
        build(payload=_payload(kind=wire.KIND_EVENT, body={0: 1, 1: 0, 3: "x", 5: 0})),
        build(payload=_payload(body={**HEARTBEAT, 0: 1})),
        build(payload=_payload(body={**HEARTBEAT, 4: 9})),
        build(payload=_payload(body={k: v for k, v in HEARTBEAT.items() if k != 5})),
        build(payload=_payload(kind=wire.KIND_OPERATOR, body=[])),
        build(payload=_payload(kind=wire.KIND_SUMMARY, body=None)),
    ],
    wire.R_VERSION: [build(payload=_payload(version=2)), build(payload=_payload(version=0))],
    wire.R_KID: [build(payload=_payload(device=b"\x01" * 8))],
    wire.R_SIGNATURE: [
        build(sign_with=bytes(32)),
        build(signature=bytes(64)),
        build(signature=SigningKey(SEED).sign(b"something else").signature),
        # alg changed from -8 to -19 after signing: the alg is inside what was signed
        build(
            protected=_protected(_1=-19),
            signature=SigningKey(SEED)
            .sign(
                cbor2.dumps(["Signature1", _protected(), b"", hashlib.sha256(_payload()).digest()])
            )
            .signature,
        ),
    ],
}


@pytest.mark.parametrize(
    "expected, data",
    [(r, d) for r, ds in CASES.items() for d in ds],
    ids=[f"{r}-{i}" for r, ds in CASES.items() for i in range(len(ds))],
)
def test_each_reason(expected, data):
    assert reason(data) == expected
    err = (
        DecodeError
        if expected not in (wire.R_SIGNATURE, wire.R_PAYLOAD_HASH, wire.R_KID)
        else VerifyError
    )
    with pytest.raises(err):
        codec.decode(data).verify(PUBLIC)


def test_every_reason_is_covered():
    assert set(CASES) == set(wire.REASONS)


def test_wrong_key_and_ed448_key():
    data = build()
    assert reason(data, SigningKey(bytes(32)).verify_key.encode()) == wire.R_SIGNATURE
    assert reason(data, bytes(57)) == wire.R_ALG  # an Ed448 key
    for bad in (bytes(31), bytes(33), b""):
        with pytest.raises(ValueError):
            codec.decode(data).verify(bad)
    with pytest.raises(TypeError):
        codec.decode(data).verify(PUBLIC.hex())  # type: ignore[arg-type]


def test_small_order_and_non_canonical_keys_refused_as_libsodium_does():
    data = build()
    identity = bytes([1]) + bytes(31)  # small order A
    assert reason(data, identity) == wire.R_SIGNATURE
    non_canonical = bytes([0xED]) + b"\xff" * 30 + b"\x7f"  # y = p
    assert reason(data, non_canonical) == wire.R_SIGNATURE


def test_reasons_come_in_the_specs_order():
    # the scan's first fault wins over anything later in the bytes
    assert reason(build(tag=17, unprotected={1: 1.5})) == wire.R_UNSUPPORTED
    # the payload is a document of its own, scanned once the envelope has passed
    assert reason(build(tag=17, payload=_payload(kind=6, body={0: 1.5}))) == wire.R_TAG
    bad_shape = cbor2.dumps([cbor2.CBORTag(17, [b"", {}, bytes(32)]), b""])
    assert reason(bad_shape) == wire.R_STRUCTURE  # before bad-tag
    assert reason(build(tag=17, protected=_protected(_1=-7))) == wire.R_TAG  # before alg
    assert reason(build(protected=_protected(_1=-7, _3=0))) == wire.R_ALG  # before protected-header
    assert reason(build(protected=_protected(_3=0), unprotected={1: 1})) == wire.R_PROTECTED
    assert reason(build(unprotected={1: 1}, payload_hash=bytes(32))) == wire.R_UNPROTECTED
    # payload-hash before anything about the payload's own bytes
    assert reason(build(payload=b"\xff", payload_hash=bytes(32))) == wire.R_PAYLOAD_HASH
    assert reason(build(payload=_payload(version=2, seq=-1))) == wire.R_PAYLOAD  # before version
    assert (
        reason(build(payload=_payload(version=2, device=b"\x01"))) == wire.R_VERSION
    )  # before kid
    assert reason(build(payload=_payload(device=b"\x01"), sign_with=bytes(32))) == wire.R_KID


def test_limits_at_the_edge():
    # a document of exactly MAX_TX_BYTES decodes as far as structure; one more byte is oversized
    fill = 16_384 - len(build(payload=_payload(kind=6, body={0: b""})))
    for extra, expect in ((fill - 3, None), (fill - 2, wire.R_OVERSIZED)):
        data = build(payload=_payload(kind=6, body={0: b"\x00" * extra}))
        assert len(data) == 16_384 + (expect is not None)
        assert reason(data) == expect
    # nesting: eight levels in the payload (map, body map, 6 arrays) pass, nine do not
    ok: Any = 0
    for _ in range(6):
        ok = [ok]
    assert reason(build(payload=_payload(kind=6, body={0: ok}))) is None
    assert reason(build(payload=_payload(kind=6, body={0: [ok]}))) == wire.R_OVERSIZED
    assert reason(build(payload=_payload(kind=6, body={0: [0] * 2048}))) is None
    assert reason(build(payload=_payload(kind=6, body={i: 0 for i in range(2048)}))) is None


def test_scan_limits_directly():
    nest = b"\x81" * wire.MAX_DEPTH + b"\x00"
    assert codec.scan(nest) == [(1, wire.MAX_DEPTH + 1)]
    for doc, expect in (
        (b"\x81" + nest, wire.R_OVERSIZED),
        (b"\x99\x08\x01", wire.R_OVERSIZED),  # refused at the head, before the entries
        (b"\xbb" + b"\xff" * 8, wire.R_OVERSIZED),
        (b"\x99\x08\x00\x00", wire.R_MALFORMED),  # a count the bytes do not hold
        (b"\x5b" + b"\xff" * 8, wire.R_MALFORMED),  # a length the bytes do not hold
        (b"\x7a\x00\x01\x00\x00a", wire.R_MALFORMED),
    ):
        with pytest.raises(DecodeError) as e:
            codec.scan(doc)
        assert e.value.reason == expect, doc.hex()
    # data items: 1 + 8 + 8 * 2047 = 16385, reachable only past MAX_TX_BYTES
    doc = b"\x88" + (b"\x99\x07\xff" + b"\x00" * 2047) * 8
    with pytest.raises(DecodeError) as e:
        codec.scan(doc, max_bytes=len(doc))
    assert e.value.reason == wire.R_OVERSIZED and "data items" in str(e.value)
    ok = b"\x88" + (b"\x99\x07\xff" + b"\x00" * 2047) * 7 + b"\x99\x07\xfe" + b"\x00" * 2046
    assert len(codec.scan(ok, max_bytes=len(ok))) == 8


# -- CBOR: RFC 8949 Appendix A and the canonical forms ------------------------------------


def _load_reason(data: bytes, tag_depth: int = codec.TAGS_NONE) -> str | None:
    try:
        codec._load(data, tag_depth)
    except WireError as e:
        return e.reason
    return None


def test_appendix_a():
    refused = {
        "f818": wire.R_MALFORMED,
        "f7": wire.R_UNSUPPORTED,
        "f0": wire.R_UNSUPPORTED,
        "f8ff": wire.R_UNSUPPORTED,
    }
    ok = n_refused = 0
    for entry in json.loads((DATA / "cbor" / "appendix_a.json").read_text()):
        x = entry["hex"]
        data = bytes.fromhex(x)
        if x in refused:
            expect = refused[x]
        elif x[:2] in ("f9", "fa", "fb") or x[0] in "cd" or not entry["roundtrip"]:
            expect = wire.R_UNSUPPORTED  # floats, tags, indefinite lengths
        else:
            expect = None
        assert _load_reason(data) == expect, x
        if expect is None:
            obj = codec._load(data)
            assert codec.encode(obj) == data
            if "decoded" in entry and x != "a201020304":
                assert obj == entry["decoded"]
            ok += 1
        else:
            n_refused += 1
    assert (ok, n_refused) == (37, 45)


@pytest.mark.parametrize(
    "x",
    [
        "1800",
        "1817",
        "190000",
        "1900ff",
        "1a0000ffff",
        "1b00000000ffffffff",
        "3800",
        "390017",
        "3a0000ffff",
        "3b00000000ffffffff",
        "5800",
        "58170000",
        "7800",
        "780161",
        "9800",
        "99000100",
        "b800",
        "ba000000010000",
        "a202000100",  # unsorted
        "a201000100",  # duplicate
        "a22000181800",  # length-first (RFC 7049) order, not bytewise
        "a2616100186400",
        "a262616100616200",  # "aa" before "b"
    ],
)
def test_non_canonical_forms(x):
    assert _load_reason(bytes.fromhex(x)) == wire.R_NON_CANONICAL


@pytest.mark.parametrize(
    "x",
    [
        "5f4100ff",
        "7f6161ff",
        "9fff",
        "bfff",
        "9f01ff",
        "5f",
        "9f",
        "f90000",
        "fa00000000",
        "fb0000000000000000",
        "f7",
        "e0",
        "f3",
        "f820",
        "c000",
        "d2d2",
        "a14000",
        "a1f500",
        "a1f600",
        "a1800000",
        "a1a00000",
    ],
)
def test_unsupported_forms(x):
    assert _load_reason(bytes.fromhex(x)) == wire.R_UNSUPPORTED


@pytest.mark.parametrize(
    "x",
    [
        "",
        "1c",
        "1d",
        "1e",
        "5c",
        "ff",
        "1f",
        "3f",
        "df",
        "81ff",
        "f800",
        "f81f",
        "18",
        "19ff",
        "41",
        "62c3",
        "8201",
        "a101",
        "0000",
        "61ff",
        "62c080",
        "63eda080",
        "64f4908080",
        "6180",
    ],
)
def test_malformed_forms(x):
    assert _load_reason(bytes.fromhex(x)) == wire.R_MALFORMED


def test_bytewise_key_order_is_accepted_and_encoded():
    assert _load_reason(bytes.fromhex("a261620062616100")) is None
    assert codec.encode({-1: 0, 24: 0, 23: 0}).hex() == "a317001818002000"
    assert codec.encode({"a": 1, 1000: 2}).hex() == "a21903e802616101"
    # cbor2's canonical order is length-first (RFC 7049): not ours
    assert cbor2.dumps({"a": 1, 1000: 2}, canonical=True).hex() == "a26161011903e802"


def test_encode_refuses_outside_the_subset():
    for bad in (
        1.5,
        {1, 2},
        object(),
        {b"k": 1},
        {True: 1},
        {None: 1},
        {(1,): 1},
        cbor2.CBORTag(18, []),
    ):
        with pytest.raises(TypeError):
            codec.encode(bad)
    for bad in (
        1 << 64,
        -(1 << 64) - 1,
        [0] * 2049,
        [[[[[[[[[0]]]]]]]]],
        [[0] * 2047] * 8,
        "\ud800",
    ):
        with pytest.raises(ValueError):
            codec.encode(bad)
    assert codec.encode([[[[[[[[0]]]]]]]]) == b"\x81" * 8 + b"\x00"


def test_make_refuses_what_decode_would():
    s = codec.Signer(SEED, DEVICE, SEGMENT)
    good = (0, bytes(32), TIME, wire.KIND_HEARTBEAT, HEARTBEAT)
    for i, bad in ((0, -1), (0, 2**63), (1, bytes(31)), (2, [0, 9, 0]), (3, 9), (4, {0: "x"})):
        args = list(good)
        args[i] = bad
        with pytest.raises(ValueError):
            s.make(*args)
    with pytest.raises(ValueError):
        s.make(0, bytes(32), TIME, wire.KIND_SUMMARY, {0: b"\x00" * 16_300})
    for args in ((bytes(31), DEVICE, SEGMENT), (SEED, b"", SEGMENT), (SEED, bytes(33), SEGMENT)):
        with pytest.raises(ValueError):
            codec.Signer(*args)
    with pytest.raises(ValueError):
        codec.Signer(SEED, DEVICE, "Feeder").make(*good)


# -- plain COSE_Sign1 (cose-wg/Examples) ------------------------------------------------


def _vector(name: str) -> dict[str, Any]:
    return json.loads((DATA / "cose" / f"{name}.json").read_text())


def test_cose_wg_ed25519_sign1_verifies():
    v = _vector("eddsa-examples_eddsa-sig-01")
    key = bytes.fromhex(v["input"]["sign0"]["key"]["x_hex"])
    msg = codec.decode_cose_sign1(bytes.fromhex(v["output"]["cbor"]))
    assert msg.alg == -8 and msg.kid == b"11" and msg.payload == b"This is the content."
    assert (
        codec.sig_structure(msg.protected, msg.payload).hex().upper()
        == v["intermediates"]["ToBeSign_hex"]
    )
    msg.verify(key)
    with pytest.raises(VerifyError) as e:
        msg.verify(key, payload=b"This is other content.")
    assert e.value.reason == wire.R_SIGNATURE


def test_cose_wg_ed448_refused():
    v = _vector("eddsa-examples_eddsa-sig-02")
    msg = codec.decode_cose_sign1(bytes.fromhex(v["output"]["cbor"]))
    with pytest.raises(VerifyError) as e:
        msg.verify(bytes.fromhex(v["input"]["sign0"]["key"]["x_hex"]))
    assert e.value.reason == wire.R_ALG


def test_envelope_alone_verifies_without_its_payload():
    tx = codec.decode(build())
    msg = codec.decode_cose_sign1(tx.envelope)
    assert msg.is_hash_envelope and msg.kid == DEVICE and msg.payload == tx.payload_hash
    msg.verify(PUBLIC)
    for bad, expect in (
        (tx.envelope[1:], wire.R_TAG),
        (tx.envelope[:-1], wire.R_MALFORMED),
        (b"\xd1" + tx.envelope[1:], wire.R_TAG),
    ):
        with pytest.raises(WireError) as e:
            codec.decode_cose_sign1(bad)
        assert e.value.reason == expect
