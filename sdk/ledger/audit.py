"""Re-verify a whole store offline: every transaction, every tree, every checkpoint and cosignature, every flag.

Nothing the store says about itself is taken on trust: leaf hashes are
recomputed from the bytes, trees from the leaf hashes, checkpoints are
decoded from their signed bytes and compared with what the block rows
claim. ``keys`` maps key ids (device ids, node and witness kids) to Ed25519
public keys. The report lists each failure by chain and place.

    >>> from lightnode.ledger.audit import audit
    >>> from lightnode.ledger.store import open_store
    >>> audit(open_store(":memory:"), {}).ok
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightnode import wire
from lightnode.errors import WireError
from lightnode.ledger import checkpoint as cp
from lightnode.ledger import merkle
from lightnode.ledger.errors import CheckpointError
from lightnode.ledger.store import FLAG_CHECKPOINT_FORK, FLAG_FORK, Store

__all__ = ["Report", "audit"]


@dataclass
class Report:
    chains: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, where: str, what: str) -> None:
        self.failures.append("%s: %s" % (where, what))

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chains": self.chains,
            "checked": self.checked,
            "failures": self.failures,
        }


def _tx_fault(
    data: bytes, keys: Mapping[bytes, bytes]
) -> tuple[wire.Transaction | None, str | None]:
    try:
        tx = wire.decode(data)
    except WireError as e:
        return None, "does not decode: %s" % e
    key = keys.get(tx.device_id)
    if key is None:
        return tx, "no public key for device %s" % tx.device_id.hex()
    try:
        tx.verify(key)
    except WireError as e:
        return tx, "signature: %s" % e
    return tx, None


def audit(store: Store, keys: Mapping[bytes, bytes]) -> Report:
    """Check everything in ``store``; the report's ``failures`` name each thing that does not hold."""
    r = Report()
    signed_checkpoints: set[bytes] = set()
    general_leaves: list[tuple[int, bytes]] = []
    for info in store.chains():
        name = info["chain"]
        _audit_chain(store, name, keys, r, signed_checkpoints, general_leaves)
    for index, data in general_leaves:
        where = "general[%d]" % index
        try:
            s = cp.verify_checkpoint(data, keys)
        except CheckpointError as e:
            r.fail(where, "leaf is not a valid signed checkpoint: %s" % e)
            continue
        if data not in signed_checkpoints:
            r.fail(
                where,
                "checkpoint of %s at size %d is not a stored block"
                % (s.checkpoint.chain, s.checkpoint.size),
            )
        r.count("general leaves")
    _audit_flags(store, keys, r)
    return r


def _audit_chain(
    store: Store,
    name: str,
    keys: Mapping[bytes, bytes],
    r: Report,
    signed_checkpoints: set[bytes],
    general_leaves: list[tuple[int, bytes]],
) -> None:
    kind = cp.chain_kind(name)
    blocks = store.blocks(name)
    tree = merkle.Tree()
    by_size = {b.size: b for b in blocks}
    stats = {"entries": 0, "blocks": len(blocks), "final": sum(b.final for b in blocks)}
    r.chains[name] = stats
    prev_hash, prev_time, height = cp.GENESIS, 0, 0
    seen: set[tuple[bytes, int]] = set()

    def check_block(b: Any) -> None:
        nonlocal prev_hash, prev_time, height
        where = "%s block %d" % (name, b.height)
        height += 1
        if b.height != height:
            r.fail(where, "height out of order (expected %d)" % height)
        try:
            s = cp.verify_checkpoint(b.signed, keys)
        except CheckpointError as e:
            r.fail(where, "checkpoint: %s" % e)
            return
        c = s.checkpoint
        signed_checkpoints.add(b.signed)
        claims = (c.chain, c.size, c.root, c.prev, c.time, s.header_hash)
        if claims != (name, b.size, b.root, b.prev, b.time, b.header_hash):
            r.fail(where, "the block row differs from its signed checkpoint")
        if c.prev != prev_hash:
            r.fail(where, "prev is not the previous checkpoint's header hash")
        if c.time < prev_time:
            r.fail(where, "checkpoint time runs backwards")
        if tree.size != c.size:
            r.fail(
                where,
                "the chain has %d entries up to here, the checkpoint says %d" % (tree.size, c.size),
            )
        elif tree.root() != c.root:
            r.fail(where, "the tree of the stored entries has another root than the checkpoint")
        elif b"".join(tree.frontier) != b.frontier:
            r.fail(where, "stored frontier differs from the tree's")
        prev_hash, prev_time = s.header_hash, c.time
        r.count("checkpoints")
        # cosignatures
        witnesses = set()
        for kid, raw in store.cosignatures(name, b.height):
            try:
                w = cp.verify_checkpoint(raw, keys)
            except CheckpointError as e:
                r.fail(where, "cosignature of %s: %s" % (kid.hex(), e))
                continue
            if w.payload != s.payload or w.kid != kid:
                r.fail(where, "cosignature of %s is over another checkpoint" % kid.hex())
                continue
            if w.kid != s.kid:
                witnesses.add(w.kid)
            r.count("cosignatures")
        if b.final and not witnesses:
            r.fail(where, "marked final without a witness cosignature")

    for e in store.entries(chain=name):
        where = "%s[%d]" % (name, e.index)
        if e.index != tree.size:
            r.fail(where, "entries are not contiguous (expected index %d)" % tree.size)
            return
        if merkle.leaf_hash(e.data) != e.leaf_hash:
            r.fail(where, "stored leaf hash is not the hash of the stored bytes")
        tree.append(merkle.leaf_hash(e.data))
        stats["entries"] += 1
        if kind == cp.KIND_SEGMENT:
            tx, fault = _tx_fault(e.data, keys)
            if fault:
                r.fail(where, "transaction %s" % fault)
            if tx is not None:
                if (tx.device_id, tx.seq, tx.kind, tx.time.us, tx.id) != (
                    e.device,
                    e.seq,
                    e.kind,
                    e.device_time,
                    e.tx_id,
                ):
                    r.fail(where, "the entry's columns differ from its transaction")
                if cp.SEGMENT_PREFIX + tx.segment != name:
                    r.fail(where, "transaction of segment %s on %s" % (tx.segment, name))
                if (tx.device_id, tx.seq) in seen:
                    r.fail(
                        where,
                        "a second entry under device %s seq %d" % (tx.device_id.hex(), tx.seq),
                    )
                seen.add((tx.device_id, tx.seq))
            r.count("transactions")
        elif kind == cp.KIND_GENERAL:
            general_leaves.append((e.index, e.data))
        b = by_size.get(tree.size)
        if b is not None:
            check_block(b)
    for b in blocks:
        if b.size > tree.size or b.size == 0:
            r.fail(
                "%s block %d" % (name, b.height),
                "covers %d entries, the store has %d" % (b.size, tree.size),
            )
    head = blocks[-1].size if blocks else 0
    if tree.size > head:
        r.fail(name, "%d entries after the last block" % (tree.size - head))


def _audit_flags(store: Store, keys: Mapping[bytes, bytes], r: Report) -> None:
    for f in store.flags():
        where = "flag %s #%s" % (f.kind, f.id)
        r.count("flags")
        if f.kind == FLAG_FORK:
            if f.evidence is None or f.evidence2 is None or f.evidence == f.evidence2:
                r.fail(where, "a fork needs two different copies")
                continue
            a, fa = _tx_fault(f.evidence, keys)
            b, fb = _tx_fault(f.evidence2, keys)
            if fa or fb:
                r.fail(where, "evidence: %s" % (fa or fb))
                continue
            assert a is not None and b is not None
            if (a.device_id, a.seq) != (b.device_id, b.seq) or (a.device_id, a.seq) != (
                f.device,
                f.seq,
            ):
                r.fail(where, "the two copies are not under one (device, seq)")
            held = store.entry_by_seq(f.chain, a.device_id, a.seq)
            if held is not None and held.data not in (f.evidence, f.evidence2):
                r.fail(where, "neither copy is the committed entry")
        elif f.kind == FLAG_CHECKPOINT_FORK:
            try:
                x = cp.decode(f.evidence or b"")
                y = cp.decode(f.evidence2 or b"")
            except CheckpointError as e:
                r.fail(where, "evidence: %s" % e)
                continue
            if (x.checkpoint.chain, x.checkpoint.size) != (
                y.checkpoint.chain,
                y.checkpoint.size,
            ) or x.payload == y.payload:
                r.fail(where, "not two different checkpoints at one size")
        elif f.index is not None:
            if store.entry(f.chain, f.index) is None:
                r.fail(where, "flags entry %s[%d], which is not stored" % (f.chain, f.index))
