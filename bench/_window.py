"""One PMU readings transaction, built to docs/wire-format.md, for the benchmarks.

A Pico W's default window (5 s) of the simulated 50 frames/s PMU, batched
into one readings body, wrapped in the deterministic payload map, and the
COSE Sig_structure that Ed25519 signs over it. Everything is fixed (seed,
device, segment, sequence, clock), so the bytes are the same on every run.

    import _window                      # from a script in bench/
    w = _window.window_transaction()
    w["payload"], w["to_be_signed"]     # bytes
    tx = _window.signed_transaction()   # adds the signed wire transaction
"""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
from lightnode import boards, readings
from lightnode.firmware.ln import wire
from lightnode.simulator import signals

WINDOW_S = boards.load("pico_w")["default_window_s"]
DEVICE_ID = bytes.fromhex("4c4e0001a5c3e701")  # 8 bytes, as provisioned
SEGMENT = "feeder-7"
SEQ = 1042
PREV = hashlib.sha256(b"transaction 1041").digest()
SEED = 7
# RFC 8032 section 7.1, TEST 1 secret key: a published, obviously-not-secret seed.
TEST_SIGNING_SEED = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)
CLOCK_UNCERTAINTY_US = 1500  # NTP over Wi-Fi


def _cbor(obj: Any) -> bytes:
    # Every map here has small unsigned integer keys, for which cbor2's
    # canonical order (shorter first, then bytewise) is RFC 8949's bytewise order.
    return cbor2.dumps(obj, canonical=True)


def protected_header(kid: bytes = DEVICE_ID) -> bytes:
    """The envelope's protected header, as the bytes of its bstr."""
    return _cbor(
        {
            wire.H_ALG: wire.ALG_EDDSA,
            wire.H_KID: kid,
            wire.H_PAYLOAD_HASH_ALG: wire.ALG_SHA256,
            wire.H_PREIMAGE_CTY: wire.CTY_CBOR,
        }
    )


def window_transaction(seconds: float = WINDOW_S) -> dict[str, Any]:
    """The payload of one readings transaction and the Sig_structure Ed25519 signs.

    Keys: payload, to_be_signed, frames, protected, payload_hash, kid, window
    (the simulator's PmuWindow), body (the CBOR-ready readings body).
    """
    window = signals.pmu_window(seconds=seconds, rate=50, seed=SEED)
    body = readings.encode_body([window.series()])
    closed_at = window.times[-1] + window.period  # the window closes after its last frame
    payload = _cbor(
        {
            wire.P_VERSION: wire.FORMAT_VERSION,
            wire.P_DEVICE: DEVICE_ID,
            wire.P_SEGMENT: SEGMENT,
            wire.P_SEQ: SEQ,
            wire.P_PREV: PREV,
            wire.P_TIME: [closed_at, wire.TQ_NTP, CLOCK_UNCERTAINTY_US],
            wire.P_KIND: wire.KIND_READINGS,
            wire.P_BODY: body,
        }
    )
    protected = protected_header(DEVICE_ID)
    payload_hash = hashlib.sha256(payload).digest()
    to_be_signed = _cbor(["Signature1", protected, b"", payload_hash])
    return {
        "payload": payload,
        "to_be_signed": to_be_signed,
        "frames": window.frames,
        "protected": protected,
        "payload_hash": payload_hash,
        "kid": DEVICE_ID,
        "window": window,
        "body": body,
    }


def signed_transaction(
    seconds: float = WINDOW_S, seed: bytes = TEST_SIGNING_SEED
) -> dict[str, Any]:
    """``window_transaction`` plus its signature and the whole wire transaction.

    Adds: signature (64 bytes), public_key (32), envelope (the COSE_Sign1
    bytes, from tag to signature), wire ([envelope, payload], as sent),
    txid (SHA-256 of the envelope).
    """
    from nacl.signing import SigningKey

    w = window_transaction(seconds)
    key = SigningKey(seed)
    signature = key.sign(w["to_be_signed"]).signature
    sign1 = cbor2.CBORTag(wire.COSE_SIGN1_TAG, [w["protected"], {}, w["payload_hash"], signature])
    envelope = _cbor(sign1)
    # The transaction array holds the envelope's own bytes, then the payload bstr.
    wire_bytes = _cbor([sign1, w["payload"]])
    assert wire_bytes[1 : 1 + len(envelope)] == envelope  # our own construction, not remote data
    if len(wire_bytes) > wire.MAX_TX_BYTES:
        raise ValueError(f"transaction of {len(wire_bytes)} bytes is over the hard limit")
    w.update(
        signature=signature,
        public_key=bytes(key.verify_key),
        envelope=envelope,
        wire=wire_bytes,
        txid=hashlib.sha256(envelope).digest(),
    )
    return w


if __name__ == "__main__":
    w = signed_transaction()
    print(
        f"frames {w['frames']}, payload {len(w['payload'])} bytes,"
        f" to_be_signed {len(w['to_be_signed'])} bytes, transaction {len(w['wire'])} bytes"
    )
