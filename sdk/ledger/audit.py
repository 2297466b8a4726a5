"""Re-verify a whole store offline: every transaction, every tree, every checkpoint and cosignature, every flag.

Nothing the store says about itself is taken on trust: leaf hashes are
recomputed from the bytes, trees from the leaf hashes, checkpoints are
decoded from their signed bytes and compared with what the block rows
claim. ``keys`` maps key ids (device ids, node and witness kids) to Ed25519
public keys. With a ``registry`` (``lightnode.registry.Registry``) a
device's key is the one the registry gives for the transaction's sequence
number (``key_for(..., historic=True)``: a rotated key signs only the
numbers below its end), and the checkpoint keys of the registry's nodes
(kid = ``registry.key_id(public key)``) sign and cosign checkpoints within
their validity; a cosignature counts for finality only from another node
than the producer's. The store's registry chain must then hold the
registry's transactions, and each checkpoint's registry (size, root) must
be the root of the registry's first ``size`` transactions. The report
lists each failure by chain and place.

    >>> from lightnode.ledger.audit import audit
    >>> from lightnode.ledger.store import open_store
    >>> audit(open_store(":memory:"), {}).ok
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lightnode import wire
from lightnode.errors import WireError
from lightnode.ledger import checkpoint as cp
from lightnode.ledger import merkle
from lightnode.ledger.errors import CheckpointError
from lightnode.ledger.store import FLAG_CHECKPOINT_FORK, FLAG_FORK, Store

if TYPE_CHECKING:
    from lightnode.registry import Registry

__all__ = ["Report", "audit"]


@dataclass(frozen=True)
class _NodeKey:
    key: bytes
    node: str | None = None  # the registry's node name; None for a key from the flat keys
    valid_from: int | None = None
    valid_until: int | None = None
    revoked_at: int | None = None


class _Keys:
    """Where the audit gets keys: the flat map, and the registry when there is one."""

    def __init__(self, keys: Mapping[bytes, bytes], registry: Registry | None) -> None:
        self.flat = keys
        self.registry = registry
        self.nodes: dict[bytes, _NodeKey] = {k: _NodeKey(v) for k, v in keys.items()}
        if registry is not None:
            from lightnode.firmware.ln import wire as spec
            from lightnode.registry import key_id

            for nk in registry.node_keys(role=spec.ROLE_CHECKPOINT, include_revoked=True):
                self.nodes[key_id(nk.public_key)] = _NodeKey(
                    nk.public_key,
                    nk.node,
                    nk.valid_from,
                    nk.valid_until,
                    None if nk.revoked is None else nk.revoked[1],
                )

    def device(self, device: bytes, seq: int) -> tuple[bytes | None, str]:
        if self.registry is None:
            return self.flat.get(device), "no public key for device %s" % device.hex()
        if self.registry.device(device) is None:
            return None, "device %s is not in the registry" % device.hex()
        return (
            self.registry.key_for(device, seq, historic=True),
            "no key of device %s is valid for seq %d in the registry" % (device.hex(), seq),
        )

    def checkpoint(self, data: bytes) -> tuple[cp.Signed, _NodeKey]:
        """A signed checkpoint or cosignature checked against a node key valid at its time."""
        s = cp.decode(data)
        nk = self.nodes.get(s.kid)
        if nk is None:
            raise CheckpointError("unknown-key", "kid %s is not a trusted node key" % s.kid.hex())
        t = s.checkpoint.time
        if (nk.valid_from is not None and t < nk.valid_from) or (
            nk.valid_until is not None and t >= nk.valid_until
        ):
            raise CheckpointError(
                "key-not-valid", "kid %s (node %s) is not valid at %d" % (s.kid.hex(), nk.node, t)
            )
        if nk.revoked_at is not None and t >= nk.revoked_at:
            raise CheckpointError(
                "key-revoked",
                "kid %s (node %s) was revoked at %d" % (s.kid.hex(), nk.node, nk.revoked_at),
            )
        cp.verify_checkpoint(data, {s.kid: nk.key})
        return s, nk


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


def _tx_fault(data: bytes, keys: _Keys) -> tuple[wire.Transaction | None, str | None]:
    try:
        tx = wire.decode(data)
    except WireError as e:
        return None, "does not decode: %s" % e
    key, missing = keys.device(tx.device_id, tx.seq)
    if key is None:
        return tx, missing
    try:
        tx.verify(key)
    except WireError as e:
        return tx, "signature: %s" % e
    return tx, None


def audit(store: Store, keys: Mapping[bytes, bytes], registry: Registry | None = None) -> Report:
    """Check everything in ``store``; the report's ``failures`` name each thing that does not hold."""
    r = Report()
    k = _Keys(keys, registry)
    signed_checkpoints: set[bytes] = set()
    general_leaves: list[tuple[int, bytes]] = []
    for info in store.chains():
        name = info["chain"]
        _audit_chain(store, name, k, r, signed_checkpoints, general_leaves)
    for index, data in general_leaves:
        where = "general[%d]" % index
        try:
            s, _ = k.checkpoint(data)
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
    _audit_flags(store, k, r)
    if registry is not None:
        _audit_registry(store, registry, r)
    return r


def _audit_registry(store: Store, registry: Registry, r: Report) -> None:
    """The registry chain holds the registry's transactions; checkpoints name its true roots."""
    txs = list(registry.store.transactions(0))
    roots: dict[int, bytes] = {}
    tree = merkle.Tree()
    for raw in txs:
        roots[tree.size] = tree.root()
        tree.append(merkle.leaf_hash(raw))
    roots[tree.size] = tree.root()
    for e in store.entries(chain=cp.KIND_REGISTRY):
        if e.index >= len(txs) or e.data != txs[e.index]:
            r.fail("registry[%d]" % e.index, "is not registry transaction %d" % e.index)
    for info in store.chains():
        for b in store.blocks(info["chain"]):
            try:
                c = cp.decode(b.signed).checkpoint
            except CheckpointError:
                continue  # named with the block already
            if c.registry is None:
                continue
            size, root = c.registry
            if roots.get(size) != root:
                r.fail(
                    "%s block %d" % (b.chain, b.height),
                    "validated against registry (%d, %s), which is not the registry's root at size %d"
                    % (size, root.hex()[:16], size),
                )
            r.count("registry references")


def _audit_chain(
    store: Store,
    name: str,
    keys: _Keys,
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
            s, producer = keys.checkpoint(b.signed)
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
                w, wnode = keys.checkpoint(raw)
            except CheckpointError as e:
                r.fail(where, "cosignature of %s: %s" % (kid.hex(), e))
                continue
            if w.payload != s.payload or w.kid != kid:
                r.fail(where, "cosignature of %s is over another checkpoint" % kid.hex())
                continue
            if w.kid != s.kid and (wnode.node is None or wnode.node != producer.node):
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


def _audit_flags(store: Store, keys: _Keys, r: Report) -> None:
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
