"""One PMU readings transaction, built to docs/wire-format.md, for the benchmarks.

A Pico W's default window (5 s) of the simulated 50 frames/s PMU, batched
into one readings body (``lightnode.readings``), wrapped in the deterministic
payload map, and the COSE Sig_structure that Ed25519 signs over it, all
encoded by ``lightnode.wire``. Everything is fixed (seed,
device, segment, sequence, clock), so the bytes are the same on every run.

    import _window                      # from a script in bench/
    w = _window.window_transaction()
    w["payload"], w["to_be_signed"]     # bytes
    tx = _window.signed_transaction()   # adds the signed wire transaction
"""

from __future__ import annotations

import hashlib
from typing import Any

from lightnode import boards, readings
from lightnode import wire as codec
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


def window_transaction(seconds: float = WINDOW_S) -> dict[str, Any]:
    """The payload of one readings transaction and the Sig_structure Ed25519 signs.

    Keys: payload, to_be_signed, frames, protected, payload_hash, kid, window
    (the simulator's PmuWindow), body (the CBOR-ready readings body).
    """
    window = signals.pmu_window(seconds=seconds, rate=50, seed=SEED)
    body = readings.encode_body([window.series()])
    closed_at = window.times[-1] + window.period  # the window closes after its last frame
    payload = codec.encode_payload(
        DEVICE_ID,
        SEGMENT,
        SEQ,
        PREV,
        [closed_at, wire.TQ_NTP, CLOCK_UNCERTAINTY_US],
        wire.KIND_READINGS,
        body,
    )
    protected = codec.protected_header(DEVICE_ID)
    payload_hash = hashlib.sha256(payload).digest()
    to_be_signed = codec.sig_structure(protected, payload_hash)
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
    envelope = codec.envelope(w["protected"], w["payload_hash"], signature)
    wire_bytes = codec.join(envelope, w["payload"])
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
