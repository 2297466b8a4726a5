"""A witness: receive each whole block, recompute it, store it, and cosign only what is consistent.

For each block a producer publishes on ``ln/<segment>/block`` (in one or
more chunks, ``lightnode.node.quorum``) the witness checks, in order:

1. the checkpoint is signed by a trusted producer key (else refused and
   counted: bytes anyone could make prove nothing);
2. a block it already holds at that size: the same checkpoint is
   cosigned again (idempotent), a different one is a fork alarm;
3. the block starts where its last cosigned block ends and names it as
   ``prev`` (a block further on waits, bounded, for the ones before it);
   the consistency proof from its last cosigned checkpoint to the new
   one holds (RFC 9162 2.1.4); the checkpoint's time does not run back;
4. its own tree, its stored leaves plus the block's entries, gives the
   checkpoint's size and root.

Then it stores the block, cosigns it (``checkpoint.cosign``: a COSE_Sign1
of its own over the same payload) and publishes the cosignature on
``ln/<segment>/cosig``. A failure at 2-4 is a fork alarm: logged, kept as
a flag in its store with the evidence, and no cosignature. A cosignature
of another witness over a checkpoint that differs from the one it holds
at that size is a fork alarm too.

    w = Witness(open_store("witness-a.db"), "seg-1", seed, b"witness-a", producers, witnesses)
    w.attach(transport)          # subscribes to the block and cosig topics

``run(...)`` does that for ``lightnode node --witness`` and blocks until stopped.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lightnode import wire
from lightnode.errors import WireError
from lightnode.firmware.ln import wire as spec
from lightnode.ledger import checkpoint as cp
from lightnode.ledger import merkle
from lightnode.ledger.chain import now_us
from lightnode.ledger.errors import CheckpointError, LedgerError, ProofError
from lightnode.ledger.store import (
    FLAG_CHECKPOINT_FORK,
    FLAG_FORGED_BLOCK,
    FLAG_INCONSISTENT,
    Block,
    Entry,
    Flag,
    Store,
    open_store,
)
from lightnode.node.quorum import BlockError, BlockMessage, Transport, decode_block_message

__all__ = ["FLAG_FORGED_BLOCK", "FLAG_INCONSISTENT", "Witness", "run"]

log = logging.getLogger("lightnode.node.witness")


MAX_PENDING_BLOCKS = 64  # blocks held while chunks or earlier blocks are missing
MAX_PENDING_BYTES = 64 * 1024 * 1024

# What a block came to (``Witness.on_block_message`` returns it, tests read it).
COSIGNED = "cosigned"
RECOSIGNED = "recosigned"  # a block it already held: the same cosignature again
WAITING = "waiting"  # chunks or earlier blocks missing
REFUSED = "refused"  # not signed by a trusted producer, not for this segment, malformed
ALARM = "fork-alarm"


@dataclass
class _Assembly:
    signed: cp.Signed
    start: int
    consistency: tuple[bytes, ...]
    chunks: int
    parts: dict[int, BlockMessage] = field(default_factory=dict)
    nbytes: int = 0


class Witness:
    """One witness's checks over its own store; ``publish(topic, payload)`` sends its cosignatures."""

    def __init__(
        self,
        store: Store,
        segment: str,
        seed: bytes,
        kid: bytes,
        producers: Mapping[bytes, bytes],
        witnesses: Mapping[bytes, bytes] | None = None,
        publish: Callable[[str, bytes], None] | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.store = store
        self.segment = segment
        cp.chain_kind(cp.SEGMENT_PREFIX + segment)
        self._seed = bytes(seed)
        self.kid = bytes(kid)
        self.public_key = cp.public_key(self._seed)
        self.producers = dict(producers)
        self.witnesses = dict(witnesses or {})
        self.witnesses.setdefault(self.kid, self.public_key)
        self.publish = publish
        self.clock = clock
        self._pending: OrderedDict[bytes, _Assembly] = OrderedDict()  # by header hash
        self._trees: dict[str, merkle.Tree] = {}
        self.lock = threading.RLock()
        self.cosigned = 0
        self.alarms = 0
        self.refused = 0

    # -- wiring -----------------------------------------------------------------------

    def attach(self, transport: Transport) -> None:
        """Subscribe to the segment's block and cosignature topics; cosignatures go out on ``transport``."""
        if self.publish is None:
            self.publish = lambda topic, payload: transport.publish(topic, payload, qos=1)
        transport.subscribe(spec.TOPIC_BLOCK % self.segment, lambda t, m: self.on_block_message(m))
        transport.subscribe(spec.TOPIC_COSIG % self.segment, lambda t, m: self.on_cosig(m))

    # -- blocks in --------------------------------------------------------------------

    def on_block_message(self, data: bytes) -> str:
        """Take one block message (a chunk); what became of its block."""
        with self.lock:
            try:
                m = decode_block_message(data)
                s = cp.verify_checkpoint(m.checkpoint, self.producers)
            except (BlockError, CheckpointError) as e:
                return self._refuse("block", str(e))
            chain = s.checkpoint.chain
            if (
                chain != cp.SEGMENT_PREFIX + self.segment
                and cp.chain_kind(chain) == cp.KIND_SEGMENT
            ):
                return self._refuse(
                    "block", "chain %s on segment %s's topic" % (chain, self.segment)
                )
            held = self.store.block_at_size(chain, s.checkpoint.size)
            if held is not None:
                if held.header_hash == s.header_hash:
                    return self._cosign(held, again=True)
                return self._alarm(
                    FLAG_CHECKPOINT_FORK,
                    chain,
                    "two checkpoints at size %d" % s.checkpoint.size,
                    held.signed,
                    s.raw,
                    s.checkpoint.size,
                )
            a = self._pending.get(s.header_hash)
            if a is None:
                a = _Assembly(s, m.start, m.consistency, m.chunks)
                self._pending[s.header_hash] = a
            if (m.start, m.consistency, m.chunks) != (a.start, a.consistency, a.chunks):
                return self._refuse("block", "chunks of one block disagree")
            if m.chunk not in a.parts:
                a.parts[m.chunk] = m
                a.nbytes += len(data)
            self._bound_pending()
            if len(a.parts) < a.chunks:
                return WAITING
            return self._try_pending(s.header_hash)

    def _bound_pending(self) -> None:
        while len(self._pending) > MAX_PENDING_BLOCKS or (
            len(self._pending) > 1
            and sum(a.nbytes for a in self._pending.values()) > MAX_PENDING_BYTES
        ):
            h, a = self._pending.popitem(last=False)
            log.warning("dropped pending block at size %d (bound)", a.signed.checkpoint.size)

    def _try_pending(self, first: bytes) -> str:
        """Apply the whole block ``first`` and then any held block it unblocks."""
        result = self._apply(first)
        if result == COSIGNED:
            progress = True
            while progress:
                progress = False
                for h, a in list(self._pending.items()):
                    if len(a.parts) == a.chunks and self._next_in_line(a):
                        if self._apply(h) == COSIGNED:
                            progress = True
        return result

    def _next_in_line(self, a: _Assembly) -> bool:
        head = self.store.head(a.signed.checkpoint.chain)
        return a.start == (head.size if head else 0)

    def _apply(self, h: bytes) -> str:
        a = self._pending[h]
        s = a.signed
        c = s.checkpoint
        chain = c.chain
        head = self.store.head(chain)
        have = head.size if head else 0
        if a.start > have:
            return WAITING  # earlier blocks missing: the producer sends them again
        del self._pending[h]
        entries: list[bytes] = []
        for n in range(a.chunks):
            part = a.parts[n]
            if part.first != a.start + len(entries):
                return self._forged(s, "chunk %d starts at %d" % (n, part.first), entries)
            entries.extend(part.entries)
        last_signed = head.signed if head else None  # the last checkpoint it cosigned
        # 3. where it starts, what it follows, consistency with the last cosigned checkpoint
        if (
            a.start < have
            or (head is not None and c.prev != head.header_hash)
            or (head is None and c.prev != cp.GENESIS)
        ):
            return self._alarm(
                FLAG_INCONSISTENT,
                chain,
                "block at size %d does not follow the last cosigned (size %d)" % (c.size, have),
                last_signed,
                s.raw,
            )
        if head is not None:
            try:
                merkle.verify_consistency(head.size, c.size, a.consistency, head.root, c.root)
            except ProofError as e:
                return self._alarm(
                    FLAG_INCONSISTENT,
                    chain,
                    "size %d is not consistent with size %d: %s" % (c.size, head.size, e),
                    last_signed,
                    s.raw,
                )
            if c.time < head.time:
                return self._alarm(
                    FLAG_INCONSISTENT, chain, "checkpoint time runs back", last_signed, s.raw
                )
        # 4. recompute the tree from our leaves and the block's entries
        if a.start + len(entries) != c.size:
            return self._forged(
                s, "%d entries from %d for size %d" % (len(entries), a.start, c.size), entries
            )
        tree = self._tree(chain, head)
        rows = []
        try:
            for i, data in enumerate(entries):
                rows.append(self._entry(chain, a.start + i, data))
        except (WireError, ValueError) as e:
            return self._forged(s, "entry: %s" % e, entries)
        for row in rows:
            tree.append(row.leaf_hash)
        if tree.root() != c.root:
            self._trees.pop(chain, None)  # rebuilt from the stored frontier next time
            return self._forged(s, "the entries do not give the checkpoint's root", entries)
        block = Block(
            chain,
            (head.height + 1) if head else 1,
            c.size,
            c.root,
            s.header_hash,
            c.prev,
            c.time,
            s.raw,
            b"".join(tree.frontier),
        )
        try:
            self.store.commit_block(block, rows)
        except LedgerError as e:
            self._trees.pop(chain, None)
            return self._forged(s, "store refused the block: %s" % e, entries)
        tree.mark_stored()
        return self._cosign(block, again=False)

    def _entry(self, chain: str, index: int, data: bytes) -> Entry:
        if cp.chain_kind(chain) != cp.KIND_SEGMENT:
            return Entry(chain, index, merkle.leaf_hash(data), data, received=self.clock())
        tx = wire.decode(data)
        if cp.SEGMENT_PREFIX + tx.segment != chain:
            raise ValueError("a transaction of segment %s" % tx.segment)
        return Entry(
            chain,
            index,
            merkle.leaf_hash(data),
            data,
            tx.device_id,
            tx.seq,
            tx.kind,
            tx.time.us,
            tx.id,
            0,
            self.clock(),
        )

    def _tree(self, chain: str, head: Block | None) -> merkle.Tree:
        t = self._trees.get(chain)
        if t is not None and t.size == (head.size if head else 0):
            return t
        self.store.ensure_chain(chain, cp.chain_kind(chain), self.clock())
        if head is None:
            t = merkle.Tree(lambda s, e, n=chain: self.store.leaf_hashes(n, s, e))
        else:
            f = head.frontier
            hashes = [f[i : i + merkle.HASH_SIZE] for i in range(0, len(f), merkle.HASH_SIZE)]
            t = merkle.Tree(
                lambda s, e, n=chain: self.store.leaf_hashes(n, s, e), head.size, hashes
            )
        self._trees[chain] = t
        return t

    # -- cosigning --------------------------------------------------------------------

    def _own_cosignature(self, b: Block) -> bytes | None:
        for kid, signed in self.store.cosignatures(b.chain, b.height):
            if kid == self.kid:
                return signed
        return None

    def _cosign(self, b: Block, again: bool) -> str:
        signed = self._own_cosignature(b)
        if signed is None:
            signed = cp.cosign(b.signed, self._seed, self.kid)
            self.store.add_cosignature(b.chain, b.height, self.kid, signed, self.clock())
            self.cosigned += 1
        if self.publish is not None:
            self.publish(spec.TOPIC_COSIG % self.segment, signed)
        return RECOSIGNED if again else COSIGNED

    # -- other nodes' cosignatures ----------------------------------------------------

    def on_cosig(self, data: bytes) -> str | None:
        """Another node's cosignature: a fork alarm if it signs another checkpoint at a size we hold."""
        with self.lock:
            try:
                w = cp.decode(bytes(data))
            except CheckpointError as e:
                return self._refuse("cosig", str(e))
            if w.kid == self.kid:
                return None
            keys = {**self.producers, **self.witnesses}
            try:
                cp.verify_checkpoint(w.raw, keys)
            except CheckpointError as e:
                return self._refuse("cosig", str(e))
            held = self.store.block_at_size(w.checkpoint.chain, w.checkpoint.size)
            if held is None or held.header_hash == w.header_hash:
                return None
            return self._alarm(
                FLAG_CHECKPOINT_FORK,
                w.checkpoint.chain,
                "two checkpoints at size %d (cosigned by kid %s)" % (held.size, w.kid.hex()),
                held.signed,
                w.raw,
                held.size,
            )

    # -- refusals and alarms ----------------------------------------------------------

    def _refuse(self, source: str, detail: str) -> str:
        self.refused += 1
        log.warning("witness %s: %s refused: %s", self.kid.hex(), source, detail)
        self.store.count_rejection("witness:" + source, "refused", self.clock(), detail)
        return REFUSED

    def _forged(self, s: cp.Signed, detail: str, entries: list[bytes]) -> str:
        return self._alarm(
            FLAG_FORGED_BLOCK, s.checkpoint.chain, detail, s.raw, wire.encode(entries)
        )

    def _alarm(
        self,
        kind: str,
        chain: str,
        detail: str,
        evidence: bytes | None,
        evidence2: bytes,
        index: int | None = None,
    ) -> str:
        self.alarms += 1
        log.error("FORK ALARM (witness %s, %s): %s: %s", self.kid.hex(), chain, kind, detail)
        self.store.ensure_chain(chain, cp.chain_kind(chain), self.clock())
        # index: the size, on a checkpoint fork only (as the ledger keeps one); audit reads
        # an index on another kind of flag as an entry's
        self.store.add_flag(
            Flag(kind, chain, self.clock(), detail, index, None, None, evidence, evidence2)
        )
        return ALARM

    def fork_alarms(self) -> list[Flag]:
        with self.lock:
            return [
                f
                for f in self.store.flags()
                if f.kind in (FLAG_CHECKPOINT_FORK, FLAG_INCONSISTENT, FLAG_FORGED_BLOCK)
            ]


def run(
    transport: Transport,
    store_url: str,
    segment: str,
    seed: bytes,
    kid: bytes,
    producers: Mapping[bytes, bytes],
    witnesses: Mapping[bytes, bytes] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], int] = now_us,
) -> Witness:
    """``lightnode node --witness``: witness ``segment`` over ``transport`` until ``stop`` is set.

    ``producers`` and ``witnesses`` map kids to Ed25519 public keys of the
    checkpoint role. The transport must be running (or started after:
    subscriptions are kept); with ``stop`` None this returns at once, the
    witness attached.
    """
    w = Witness(open_store(store_url), segment, seed, kid, producers, witnesses, clock=clock)
    w.attach(transport)
    log.info("witness %s on segment %s, store %s", kid.hex(), segment, store_url)
    if stop is not None:
        stop.wait()
    return w
