"""Every envelope the SDK's Signer makes verifies with pycose 1.1.0, a COSE library nobody here wrote.

pycose checks the envelope (the COSE payload is the 32-byte SHA-256 of the
transaction's payload); the hash is then checked by hand, as
docs/wire-format.md tells any COSE user to.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightnode import wire as codec
from lightnode.firmware.ln import wire

pycose = pytest.importorskip("pycose")
from pycose.keys import OKPKey  # noqa: E402
from pycose.keys.curves import Ed25519  # noqa: E402
from pycose.messages import CoseMessage, Sign1Message  # noqa: E402

HEARTBEAT = {0: "1.2.0", 1: 61_000, 2: 12, 3: 1, 4: wire.TQ_NTP, 5: 0}


def pycose_verifies(envelope: bytes, public: bytes) -> Sign1Message:
    msg = CoseMessage.decode(envelope)
    assert isinstance(msg, Sign1Message)
    msg.key = OKPKey(crv=Ed25519, x=public)
    assert msg.verify_signature()
    return msg


@settings(max_examples=60, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    device=st.binary(min_size=1, max_size=32),
    segment=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32),
    seq=st.integers(0, 2**63 - 1),
    prev=st.binary(min_size=32, max_size=32),
    time=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3), st.integers(0, 2**64 - 1)),
    kind=st.sampled_from(
        [wire.KIND_HEARTBEAT, wire.KIND_OPERATOR, wire.KIND_REGISTRATION, wire.KIND_SUMMARY]
    ),
)
def test_signer_envelopes_verify_with_pycose(seed, device, segment, seq, prev, time, kind):
    s = codec.Signer(seed, device, segment)
    data, tx_id = s.make(
        seq, prev, time, kind, HEARTBEAT if kind == wire.KIND_HEARTBEAT else {"n": seq}
    )
    tx = codec.decode(data)
    msg = pycose_verifies(tx.envelope, s.public)
    assert msg.payload == tx.payload_hash == hashlib.sha256(tx.payload).digest()
    phdr = {getattr(k, "identifier", k): getattr(v, "identifier", v) for k, v in msg.phdr.items()}
    assert phdr == {1: wire.ALG_EDDSA, 4: device, 258: wire.ALG_SHA256, 259: wire.CTY_CBOR}
    assert msg.uhdr == {}
    assert tx_id == hashlib.sha256(tx.envelope).digest()


def test_pycose_refuses_a_changed_envelope():
    s = codec.Signer(bytes(32), b"\x01" * 8, "feeder-7")
    tx = codec.decode(s.make(0, bytes(32), (1, 1, 1), wire.KIND_HEARTBEAT, HEARTBEAT)[0])
    forged = bytearray(tx.envelope)
    forged[-1] ^= 1
    msg = CoseMessage.decode(bytes(forged))
    msg.key = OKPKey(crv=Ed25519, x=s.public)
    assert msg.verify_signature() is False


def test_readings_window_verifies_with_pycose():
    from lightnode import readings
    from lightnode.simulator import signals

    body = readings.encode_body([signals.pmu_window(seconds=5, rate=50, seed=3).series()])
    s = codec.Signer(bytes(range(32)), bytes.fromhex("4c4e0001a5c3e701"), "feeder-7")
    tx = codec.decode(
        s.make(7, bytes(32), (1_700_000_000_000_000, 1, 1500), wire.KIND_READINGS, body)[0]
    )
    msg = pycose_verifies(tx.envelope, s.public)
    assert msg.payload == hashlib.sha256(tx.payload).digest()
