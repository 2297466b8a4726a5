"""Chains: append entries, cut blocks with signed checkpoints, gather cosignatures, give time brackets.

A ``Ledger`` is one node's view of its store: one ``Chain`` per chain
(``seg:<segment>``, ``registry``, ``operator``, ``general``), each one
RFC 9162 tree. Entries wait in memory until their block is cut (by count
or by age); the cut writes the block, its entries, its flags and its signed
checkpoint in one store transaction, and commits the signed checkpoint as
a leaf of the general chain. An entry is not acknowledged before its block
is final, so an entry lost with the process in a crash is sent again by its
device; nothing half-written is ever on disk.

The leaf of a segment chain is the transaction's wire bytes exactly as
received (``[envelope, payload]``): an inclusion proof then proves those
bytes themselves, which a verifier holds; the transaction id, the payload
and the signature all follow from them.

    >>> from lightnode.ledger.chain import Ledger
    >>> from lightnode.ledger.store import open_store
    >>> ledger = Ledger(open_store(":memory:"), seed=bytes(32), kid=b"node-1")
    >>> ledger.add_entry("operator", b"an operator action")
    0
    >>> ledger.cut("operator").checkpoint.size
    1
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lightnode import wire
from lightnode.ledger import checkpoint as cp
from lightnode.ledger import merkle
from lightnode.ledger.errors import CheckpointError, LedgerError
from lightnode.ledger.store import (
    FLAG_CHECKPOINT_FORK,
    FLAG_CLOCK_BACK,
    FLAG_FORK,
    FLAG_GAP,
    FLAG_LATE,
    FLAG_NAMES,
    FLAG_PREV,
    FLAG_TIME_SKEW,
    Block,
    Entry,
    Flag,
    Store,
)

__all__ = ["Added", "Chain", "Ledger", "now_us"]

TIME_SKEW_US = 300_000_000  # device clock this far from the node's on arrival: flagged
BLOCK_ENTRIES = 1024
BLOCK_AGE_US = 5_000_000

ADDED = "added"
DUPLICATE = "duplicate"
FORK = "fork"


def now_us() -> int:
    return _time.time_ns() // 1000


@dataclass(frozen=True)
class Added:
    """What became of one transaction: ``added`` (at ``index``), ``duplicate`` or ``fork`` (kept as evidence)."""

    status: str
    chain: str
    index: int | None = None
    flags: int = 0


@dataclass
class _DeviceState:
    seq: int
    tx_id: bytes
    time: int


@dataclass
class Chain:
    """One chain's tree and the entries waiting for its next block."""

    name: str
    kind: str
    tree: merkle.Tree
    head: Block | None
    pending: list[Entry] = field(default_factory=list)
    pending_flags: list[Flag] = field(default_factory=list)
    first_pending_us: int | None = None
    by_seq: dict[tuple[bytes, int], bytes] = field(
        default_factory=dict
    )  # pending (device, seq) -> bytes
    devices: dict[bytes, _DeviceState] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.tree.size


class Ledger:
    """Chains over one store, cut and signed by one node's checkpoint key.

    ``registry`` gives the registry checkpoint (size, root) that the node
    validated against, for each checkpoint it signs (None until the
    registry is wired in); ``producers`` and ``witnesses`` map kids to
    public keys (the node's own key is a producer); a checkpoint is final
    with ``quorum`` witness cosignatures.
    """

    def __init__(
        self,
        store: Store,
        seed: bytes,
        kid: bytes,
        clock: Callable[[], int] = now_us,
        block_entries: int = BLOCK_ENTRIES,
        block_age_us: int = BLOCK_AGE_US,
        registry: Callable[[], tuple[int, bytes] | None] | None = None,
        producers: Mapping[bytes, bytes] | None = None,
        witnesses: Mapping[bytes, bytes] | None = None,
        quorum: int = 1,
    ) -> None:
        if block_entries < 1:
            raise ValueError("block_entries must be at least 1")
        self.store = store
        self._seed = bytes(seed)
        self.kid = bytes(kid)
        self.public_key = cp.public_key(self._seed)
        self.clock = clock
        self.block_entries = block_entries
        self.block_age_us = block_age_us
        self.registry = registry
        self.producers = dict(producers or {})
        self.producers.setdefault(self.kid, self.public_key)
        self.witnesses = dict(witnesses or {})
        self.quorum = quorum
        self._chains: dict[str, Chain] = {}

    # -- chains -----------------------------------------------------------------------

    def chain(self, name: str) -> Chain:
        """The chain, loaded from the store (its tree restarted from the last block's frontier)."""
        c = self._chains.get(name)
        if c is not None:
            return c
        kind = cp.chain_kind(name)
        self.store.ensure_chain(name, kind, self.clock())
        head = self.store.head(name)
        if head is None:
            tree = merkle.Tree(lambda s, e, n=name: self.store.leaf_hashes(n, s, e))
        else:
            f = head.frontier
            hashes = [f[i : i + merkle.HASH_SIZE] for i in range(0, len(f), merkle.HASH_SIZE)]
            tree = merkle.Tree(
                lambda s, e, n=name: self.store.leaf_hashes(n, s, e), head.size, hashes
            )
            if tree.root() != head.root:
                raise LedgerError(
                    "chain %s: the stored frontier does not give block %d's root"
                    % (name, head.height)
                )
        c = Chain(name, kind, tree, head)
        self._chains[name] = c
        return c

    def _append(self, c: Chain, entry: Entry) -> int:
        index = c.tree.append(entry.leaf_hash)
        if index != entry.index:
            raise AssertionError("tree and entry disagree on the index")
        c.pending.append(entry)
        if c.first_pending_us is None:
            c.first_pending_us = self.clock()
        return index

    def add_entry(self, chain: str, data: bytes) -> int:
        """Append one leaf (registry, operator, general chains); returns its index."""
        c = self.chain(chain)
        if c.kind == cp.KIND_SEGMENT:
            raise ValueError("a segment chain takes transactions: add_transaction")
        data = bytes(data)
        return self._append(
            c, Entry(chain, c.size, merkle.leaf_hash(data), data, received=self.clock())
        )

    def add_transaction(self, data: bytes, tx: wire.Transaction | None = None) -> Added:
        """Append an authentic transaction to its segment chain (the caller has checked its signature).

        A repeat of a transaction already held is a ``duplicate``; a
        different transaction under a (device, seq) already held is a
        ``fork``: both copies are kept as a flag, the second is not an entry.
        Gaps, a broken ``prev``, late arrivals and clock trouble are flags on
        the entry, never a reason to drop it.
        """
        data = bytes(data)
        tx = wire.decode(data) if tx is None else tx
        name = cp.SEGMENT_PREFIX + tx.segment
        c = self.chain(name)
        now = self.clock()
        held = c.by_seq.get((tx.device_id, tx.seq))
        if held is None:
            e = self.store.entry_by_seq(name, tx.device_id, tx.seq)
            held = None if e is None else e.data
        if held is not None:
            if held == data:
                return Added(DUPLICATE, name)
            self.store.add_flag(
                Flag(
                    FLAG_FORK,
                    name,
                    now,
                    "device %s seq %d: a second, different transaction"
                    % (tx.device_id.hex(), tx.seq),
                    None,
                    tx.device_id,
                    tx.seq,
                    held,
                    data,
                )
            )
            return Added(FORK, name)
        state = c.devices.get(tx.device_id)
        if state is None:
            last = self.store.last_of_device(name, tx.device_id)
            if last is not None and last.seq is not None and last.tx_id is not None:
                state = _DeviceState(last.seq, last.tx_id, last.device_time or 0)
        bits, details = 0, []
        if state is not None:
            if tx.seq > state.seq + 1:
                bits |= FLAG_GAP
                details.append("seq %d..%d missing" % (state.seq + 1, tx.seq - 1))
            elif tx.seq == state.seq + 1 and tx.prev != state.tx_id:
                bits |= FLAG_PREV
                details.append("prev is not seq %d's id" % state.seq)
            elif tx.seq < state.seq:
                bits |= FLAG_LATE
                details.append("after seq %d" % state.seq)
            if tx.seq > state.seq and tx.time.us < state.time:
                bits |= FLAG_CLOCK_BACK
                details.append(
                    "device time %d us before seq %d's" % (state.time - tx.time.us, state.seq)
                )
        if abs(tx.time.us - now) > TIME_SKEW_US:
            bits |= FLAG_TIME_SKEW
            details.append("device time %+d s from the node's" % ((tx.time.us - now) // 1_000_000))
        entry = Entry(
            name,
            c.size,
            merkle.leaf_hash(data),
            data,
            tx.device_id,
            tx.seq,
            tx.kind,
            tx.time.us,
            tx.id,
            bits,
            now,
        )
        index = self._append(c, entry)
        c.by_seq[(tx.device_id, tx.seq)] = data
        if state is None or tx.seq > state.seq:
            c.devices[tx.device_id] = _DeviceState(tx.seq, tx.id, tx.time.us)
        for bit, flag_name in FLAG_NAMES.items():
            if bits & bit:
                c.pending_flags.append(
                    Flag(flag_name, name, now, "; ".join(details), index, tx.device_id, tx.seq)
                )
        return Added(ADDED, name, index, bits)

    # -- blocks -----------------------------------------------------------------------

    def due(self, chain: str) -> bool:
        c = self.chain(chain)
        if not c.pending:
            return False
        if len(c.pending) >= self.block_entries:
            return True
        return (
            c.first_pending_us is not None
            and self.clock() - c.first_pending_us >= self.block_age_us
        )

    def cut_due(self) -> list[cp.Signed]:
        """Cut every chain whose block is due (sidechains first, then the general chain)."""
        out = []
        for name in sorted(self._chains, key=lambda n: n == cp.KIND_GENERAL):
            if self.due(name):
                s = self.cut(name)
                if s is not None:
                    out.append(s)
        return out

    def cut(self, chain: str) -> cp.Signed | None:
        """Cut a block of everything pending on ``chain``: sign its checkpoint and store it all at once."""
        c = self.chain(chain)
        if not c.pending:
            return None
        prev = c.head.header_hash if c.head else cp.GENESIS
        t = max(self.clock(), c.head.time if c.head else 0)  # checkpoint times never run backwards
        checkpoint = cp.Checkpoint(
            chain, c.size, c.tree.root(), prev, t, self.registry() if self.registry else None
        )
        signed = cp.sign(checkpoint, self._seed, self.kid)
        block = Block(
            chain,
            (c.head.height + 1) if c.head else 1,
            checkpoint.size,
            checkpoint.root,
            checkpoint.header_hash,
            prev,
            t,
            signed,
            b"".join(c.tree.frontier),
        )
        self.store.commit_block(block, c.pending, c.pending_flags)
        c.tree.mark_stored()
        c.head = block
        c.pending, c.pending_flags, c.by_seq, c.first_pending_us = [], [], {}, None
        if c.kind != cp.KIND_GENERAL:
            self.add_entry(cp.KIND_GENERAL, signed)
        return cp.decode(signed)

    # -- cosignatures, finality, brackets ---------------------------------------------

    def add_cosignature(self, signed: bytes) -> bool:
        """Keep a witness's cosignature of one of our blocks; returns whether the block is now final.

        A cosignature over a checkpoint that differs from ours at the same
        size is a checkpoint fork: both are kept as a flag and CheckpointError raised.
        """
        w = cp.decode(signed)
        name = w.checkpoint.chain
        block = self.store.block_at_size(name, w.checkpoint.size)
        if block is None:
            raise CheckpointError(
                "unknown-checkpoint", "%s has no block at size %d" % (name, w.checkpoint.size)
            )
        if w.header_hash != block.header_hash:
            self.store.add_flag(
                Flag(
                    FLAG_CHECKPOINT_FORK,
                    name,
                    self.clock(),
                    "two checkpoints at size %d (kid %s)" % (block.size, w.kid.hex()),
                    block.size,
                    None,
                    None,
                    block.signed,
                    signed,
                )
            )
            raise CheckpointError(
                "checkpoint-fork", "%s at size %d: another checkpoint" % (name, block.size)
            )
        _, good = cp.verify_final(block.signed, [signed], self.producers, self.witnesses, quorum=0)
        self.store.add_cosignature(name, block.height, w.kid, signed, self.clock())
        return self._refresh_final(block)

    def _refresh_final(self, block: Block) -> bool:
        cosigs = [s for _, s in self.store.cosignatures(block.chain, block.height)]
        try:
            cp.verify_final(block.signed, cosigs, self.producers, self.witnesses, self.quorum)
        except CheckpointError:
            return False
        self.store.set_final(block.chain, block.height, self.clock())
        return True

    def bracket(self, chain: str, index: int) -> tuple[int | None, int | None]:
        """The ledger time bracket of entry ``index`` (us): the last final checkpoint before it, the first covering it."""
        before, after = self.store.bracket(chain, index)
        return (before.time if before else None, after.time if after else None)
