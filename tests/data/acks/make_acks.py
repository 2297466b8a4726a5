"""Writes acks.json: a real block ack and NACK made by the SDK, and acks each refused for one reason.

tests/device/test_ack.py checks them inside MicroPython; tests/test_acks.py
checks this file is what the SDK makes today. Run from the repository:

    .venv/bin/python tests/data/acks/make_acks.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from lightnode import keys, registry, wire
from lightnode.ledger import checkpoint as cp
from lightnode.ledger.chain import Ledger
from lightnode.ledger.store import open_store
from lightnode.node import acks

HERE = Path(__file__).resolve().parent
SEGMENT = "feeder-3"
T0 = 1_700_000_000_000_000
SEEDS = {"producer": b"\x61" * 32, "witness": b"\x62" * 32, "ack": b"\x63" * 32}
ROLES = {"producer": "checkpoint", "witness": "checkpoint", "ack": "ack"}
DEVICE_SEED = b"\x64" * 32
DEVICE_ID = b"LN\x00\x00\x00\x00\x00\x03"
HEARTBEAT = {0: "1.0", 1: 50_000, 2: 3, 3: 1, 4: 1, 5: 0}


def kid(name: str) -> bytes:
    return registry.key_id(keys.public_key(SEEDS[name]))


def build() -> dict:
    signer = wire.Signer(DEVICE_SEED, DEVICE_ID, SEGMENT)
    other = wire.Signer(b"\x65" * 32, b"LN\x00\x00\x00\x00\x00\x04", SEGMENT)
    t = [T0]

    def clock() -> int:
        t[0] += 1000
        return t[0]

    ledger = Ledger(open_store(":memory:"), SEEDS["producer"], kid("producer"), clock=clock)
    records = []
    prev, oprev = bytes(32), bytes(32)
    for seq in range(5):
        data, tx_id = signer.make(seq, prev, (T0 + seq, 1, 500), 4, HEARTBEAT)
        records.append((data, tx_id))
        prev = tx_id
        ledger.add_transaction(data)
        odata, oprev = other.make(seq, oprev, (T0 + seq, 1, 500), 4, HEARTBEAT)
        ledger.add_transaction(odata)
    s = ledger.cut(cp.SEGMENT_PREFIX + SEGMENT)
    assert s is not None
    cosig = cp.cosign(s.raw, SEEDS["witness"], kid("witness"))
    tree = ledger.chain(cp.SEGMENT_PREFIX + SEGMENT).tree
    seq = 4
    index = 2 * seq  # the two devices' transactions alternate
    path = tree.inclusion_proof(index, s.checkpoint.size)

    def ack(
        key: str = "ack",
        checkpoint: bytes = s.raw,
        cosigs: list[bytes] = [cosig],  # noqa: B006
        proof: list[bytes] = path,  # noqa: B006
        tx_id: bytes = records[seq][1],
    ) -> str:
        return acks.make_ack(
            SEEDS[key],
            kid(key),
            DEVICE_ID,
            seq,
            tx_id,
            checkpoint,
            cosigs,
            index,
            s.checkpoint.size,
            proof,
        ).hex()

    bad_path = list(path)
    bad_path[0] = hashlib.sha256(bad_path[0]).digest()
    stranger = cp.cosign(s.raw, b"\x66" * 32, b"stranger")
    refused = {
        "unknown-key": ack(key="producer"),  # an ack signed by a checkpoint key
        "not-final": ack(cosigs=[cp.cosign(s.raw, SEEDS["producer"], kid("producer")), stranger]),
        "bad-proof": ack(proof=bad_path),
        "tx-mismatch": ack(tx_id=hashlib.sha256(b"another").digest()),
    }
    return {
        "segment": SEGMENT,
        "device": DEVICE_ID.hex(),
        "nodes": [{"role": ROLES[n], "key": keys.public_key(SEEDS[n]).hex()} for n in SEEDS],
        "seq": seq,
        "records": [[d.hex(), i.hex()] for d, i in records],
        "ack": ack(),
        "refused": refused,
        "nack": acks.make_nack(
            SEEDS["ack"], kid("ack"), DEVICE_ID, 5, records[0][1], "revoked-device", T0
        ).hex(),
    }


def text() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    out = HERE / "acks.json"
    out.write_text(text())
    print("wrote", out, file=sys.stderr)
