"""The producer's side of the quorum: publish each whole block, gather cosignatures, ack when final.

After each cut the node calls ``Producer.on_block(signed_checkpoint)``;
the producer publishes the block (its signed checkpoint, the consistency
proof from the block before, and its entries' bytes, in chunks of at most
``chunk_bytes``) on ``ln/<segment>/block``. Witnesses answer on
``ln/<segment>/cosig``; the node routes those to ``on_cosig``. When a
block turns final (the producer and one witness), every device in it gets
one cumulative ack on ``ln/<segment>/<device>/ack``, for the highest
sequence number below which the ledger holds every number or the device
said it skipped it (an ``EV_SEQ_SKIP`` event); nothing when that has not
moved. A redelivered transaction already in a final block is acked again
(``reack``), by the same rule. A witness that missed blocks (stopped, restarted) is sent
them again, oldest first, with a backoff while it stays silent.

    p = Producer(ledger, transport, "seg-1", ack_seed, ack_kid)
    transport.subscribe(wire.TOPIC_COSIG % "seg-1", lambda t, m: p.on_cosig(m))
    for signed in ledger.cut_due():
        p.on_block(signed)

The block message (docs/acks.md) is a deterministic CBOR map::

    {0: 1, 1: signed checkpoint, 2: first index of the block, 3: [consistency proof],
     4: chunk number, 5: chunks, 6: first index of this chunk, 7: [entry bytes, ...]}
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lightnode import wire
from lightnode.errors import WireError
from lightnode.firmware.ln import wire as spec
from lightnode.ledger import checkpoint as cp
from lightnode.ledger.chain import Ledger
from lightnode.ledger.errors import CheckpointError, LedgerError
from lightnode.ledger.store import FLAG_LATE, Block, Entry
from lightnode.node import acks

__all__ = ["BlockMessage", "Producer", "block_messages", "decode_block_message"]

log = logging.getLogger("lightnode.node.quorum")

BLOCK_VERSION = 1
B_VERSION, B_CHECKPOINT, B_START, B_CONSISTENCY, B_CHUNK, B_CHUNKS, B_FIRST, B_ENTRIES = range(8)
BLOCK_KEYS = tuple(range(8))
CHUNK_BYTES = 256 * 1024  # under the node transport's packet limit, with room for the rest
MAX_CHUNKS = 4096
# A block message: one chunk of entries plus the checkpoint, the consistency proof and the
# header fields; far below the transport's packet limit. Not the transaction limit: a block
# after an outage carries many transactions.
MAX_BLOCK_MESSAGE = CHUNK_BYTES + 64 * 1024
CATCHUP_BLOCKS = 4  # blocks sent again to a lagging witness per cut
CATCHUP_BACKOFF_MAX = 16  # cuts between tries, at most, while it stays silent
BREAKS_PER_LOOK = 256  # entries after holes examined per look at a device's watermark
BREAKS_PAGE = 64
ASIDE_HOLE_MAX = 64  # a hole wider than this is never taken for set-aside records
ASIDE_LOOK = 256  # a device's events after a hole read to find EV_SET_ASIDE, at most


class Transport(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...

    def subscribe(
        self, topic: str, handler: Callable[[str, bytes], None], qos: int = 1
    ) -> None: ...


# -- the block message ----------------------------------------------------------------


@dataclass(frozen=True)
class BlockMessage:
    checkpoint: bytes
    start: int
    consistency: tuple[bytes, ...]
    chunk: int
    chunks: int
    first: int
    entries: tuple[bytes, ...]


def block_messages(
    signed: bytes,
    start: int,
    consistency: list[bytes],
    entries: list[bytes],
    chunk_bytes: int = CHUNK_BYTES,
) -> list[bytes]:
    """A block as one or more messages, each under ``chunk_bytes`` (an entry is never split)."""
    groups: list[tuple[int, list[bytes]]] = []
    group: list[bytes] = []
    first, size = start, 0
    for i, e in enumerate(entries):
        if group and size + len(e) + 8 > chunk_bytes:
            groups.append((first, group))
            first, group, size = start + i, [], 0
        group.append(bytes(e))
        size += len(e) + 8
    groups.append((first, group))
    if len(groups) > MAX_CHUNKS:
        raise ValueError("a block of %d chunks" % len(groups))
    return [
        wire.encode(
            {
                B_VERSION: BLOCK_VERSION,
                B_CHECKPOINT: bytes(signed),
                B_START: start,
                B_CONSISTENCY: list(consistency),
                B_CHUNK: n,
                B_CHUNKS: len(groups),
                B_FIRST: f,
                B_ENTRIES: g,
            }
        )
        for n, (f, g) in enumerate(groups)
    ]


class BlockError(ValueError):
    """A block message that is not one."""


def decode_block_message(data: bytes) -> BlockMessage:
    """One block message, shape checked (the checkpoint's signature is the witness's job)."""
    try:
        m = wire._load(bytes(data), wire.TAGS_NONE, MAX_BLOCK_MESSAGE)
    except WireError as e:
        raise BlockError("block message: %s" % e) from None
    if type(m) is not dict or sorted(m) != list(BLOCK_KEYS) or m[B_VERSION] != BLOCK_VERSION:
        raise BlockError("block message: a map of keys 0-7, version 1, expected")
    ints = (m[B_START], m[B_CHUNK], m[B_CHUNKS], m[B_FIRST])
    if (
        not all(type(x) is int and x >= 0 for x in ints)
        or not m[B_CHUNK] < m[B_CHUNKS] <= MAX_CHUNKS
    ):
        raise BlockError("block message: start, chunk, chunks, first")
    cons, ents = m[B_CONSISTENCY], m[B_ENTRIES]
    if type(m[B_CHECKPOINT]) is not bytes or type(cons) is not list or type(ents) is not list:
        raise BlockError("block message: checkpoint, consistency or entries")
    if not all(type(h) is bytes and len(h) == spec.HASH_BYTES for h in cons) or len(cons) > 64:
        raise BlockError("block message: consistency proof")
    if not all(type(e) is bytes for e in ents):
        raise BlockError("block message: entries are byte strings")
    return BlockMessage(
        m[B_CHECKPOINT], m[B_START], tuple(cons), m[B_CHUNK], m[B_CHUNKS], m[B_FIRST], tuple(ents)
    )


# -- the producer ---------------------------------------------------------------------


@dataclass
class _Lag:
    height: int = 0  # the last height it cosigned
    wait: int = 0  # cuts until the next try
    backoff: int = 1


class Producer:
    """Publishes a ledger's blocks, keeps witnesses' cosignatures, and acks final blocks.

    ``ledger`` is the node's ``Ledger`` (its ``witnesses`` and ``quorum``
    say what is final); ``ack_seed``/``ack_kid`` the node's ack key. All
    calls take ``lock`` (the node's, if it touches the ledger from other
    threads; else one of our own).
    """

    def __init__(
        self,
        ledger: Ledger,
        transport: Transport,
        segment: str,
        ack_seed: bytes,
        ack_kid: bytes,
        chunk_bytes: int = CHUNK_BYTES,
        lock: Any = None,
    ) -> None:
        self.ledger = ledger
        self.store = ledger.store
        self.transport = transport
        self.segment = segment
        self.chain = cp.SEGMENT_PREFIX + segment
        cp.chain_kind(self.chain)
        self._ack_seed = bytes(ack_seed)
        self.ack_kid = bytes(ack_kid)
        self.chunk_bytes = chunk_bytes
        self.lock = lock if lock is not None else threading.RLock()
        self._acks: dict[bytes, tuple[int, bytes]] = {}  # device -> (seq, ack bytes): re-acks
        # device -> (through, end): every seq <= through is an entry of index < end, or one
        # the device said it skipped; made again from the store after a restart
        self._marks: dict[bytes, tuple[int, int]] = {}
        # device -> seqs its own committed EV_SET_ASIDE events name (NACKed, kept, never sent
        # again): covered like skipped ones; filled from final blocks, else from the store
        self._aside: dict[bytes, set[int]] = {}
        # (chain, witness kid) -> how far it cosigned: per chain, since the general chain's
        # blocks (one a cut) cosigned after a broker restart say nothing of a segment block lost
        self._lag: dict[tuple[str, bytes], _Lag] = {}
        self._sizes: dict[str, dict[int, int]] = {}
        self.sent_blocks = 0
        self.acks_sent = 0
        self.refused = 0
        self.forks = 0

    # -- blocks out -------------------------------------------------------------------

    def on_block(self, signed_checkpoint: bytes | cp.Signed, block: Any = None) -> None:
        """Publish the block just cut (its checkpoint is in the store), after what a lagging witness misses."""
        raw = (
            signed_checkpoint.raw if isinstance(signed_checkpoint, cp.Signed) else signed_checkpoint
        )
        s = cp.decode(bytes(raw))
        with self.lock:
            b = self.store.block_at_size(s.checkpoint.chain, s.checkpoint.size)
            if b is None or b.signed != s.raw:
                raise LedgerError("on_block: the checkpoint is not a stored block")
            self._sizes.setdefault(b.chain, {})[b.height] = b.size
            self._catch_up(b)
            self._publish_block(b)

    def _publish_block(self, b: Block) -> None:
        start, entries = self._entries(b)
        tree = self.ledger.chain(b.chain).tree
        proof = tree.consistency_proof(start, b.size) if start else []
        topic = spec.TOPIC_BLOCK % self.segment
        for msg in block_messages(
            b.signed, start, proof, [e.data for e in entries], self.chunk_bytes
        ):
            self.transport.publish(topic, msg, qos=1)
        self.sent_blocks += 1

    def _entries(self, b: Block) -> tuple[int, list[Entry]]:
        before = self._block_at_height(b.chain, b.height - 1)
        start = before.size if before else 0
        return start, list(self.store.entries(chain=b.chain, start=start, end=b.size))

    def _block_at_height(self, chain: str, height: int) -> Block | None:
        """A block by height: sizes are kept once read (they never change), the block read fresh."""
        if height < 1:
            return None
        sizes = self._sizes.setdefault(chain, {})
        if height not in sizes:  # once after a start, then one block per cut
            for blk in self.store.blocks(chain):
                sizes[blk.height] = blk.size
        size = sizes.get(height)
        return None if size is None else self.store.block_at_size(chain, size)

    def _catch_up(self, new: Block) -> None:
        """Send again the oldest blocks a witness has not cosigned, with a backoff while it is silent."""
        for kid in sorted(self.ledger.witnesses):
            lag = self._lag.get((new.chain, kid))
            if lag is None:
                lag = _Lag(self._last_cosigned(new.chain, kid, new.height))
                self._lag[(new.chain, kid)] = lag
            if lag.height >= new.height - 1:
                lag.wait, lag.backoff = 0, 1
                continue
            if lag.wait > 0:
                lag.wait -= 1
                continue
            blocks = [b for b in self.store.blocks(new.chain) if lag.height < b.height < new.height]
            for b in blocks[:CATCHUP_BLOCKS]:
                self._publish_block(b)
            lag.wait = lag.backoff
            lag.backoff = min(lag.backoff * 2, CATCHUP_BACKOFF_MAX)

    def _last_cosigned(self, chain: str, kid: bytes, height: int) -> int:
        """The last height below ``height`` that ``kid`` cosigned (looked at once per witness, 256 back)."""
        for h in range(height - 1, max(height - 257, 0), -1):
            if any(k == kid for k, _ in self.store.cosignatures(chain, h)):
                return h
        return max(height - 257, 0)

    # -- cosignatures in --------------------------------------------------------------

    def on_cosig(self, payload: bytes) -> bool:
        """Keep one witness's cosignature; True when it made its block final (the acks are then sent)."""
        try:
            w = cp.decode(bytes(payload))
        except CheckpointError as e:
            self.refused += 1
            log.warning("cosignature refused: %s", e)
            return False
        with self.lock:
            b = self.store.block_at_size(w.checkpoint.chain, w.checkpoint.size)
            was_final = b is not None and b.final
            try:
                final = self.ledger.add_cosignature(bytes(payload))
            except CheckpointError as e:
                if e.reason == "checkpoint-fork":
                    self.forks += 1
                    log.error("FORK ALARM: %s (kid %s)", e, w.kid.hex())
                else:
                    self.refused += 1
                    log.warning("cosignature refused: %s", e)
                return False
            assert b is not None
            lag = self._lag.get((b.chain, w.kid))
            if lag is not None and b.height > lag.height:
                lag.height, lag.wait, lag.backoff = b.height, 0, 1
            if final and not was_final:
                self._send_acks(self.store.block_at_size(b.chain, b.size) or b)
                return True
            return False

    # -- acks -------------------------------------------------------------------------

    def _send_acks(self, b: Block) -> None:
        if cp.chain_kind(b.chain) != cp.KIND_SEGMENT:
            return
        _, entries = self._entries(b)
        mine: dict[bytes, list[Entry]] = {}
        for e in entries:
            if e.device is not None and e.seq is not None:
                mine.setdefault(e.device, []).append(e)
                v = _set_aside(e)
                if v is not None:
                    self._aside.setdefault(e.device, set()).add(v)
        for dev, es in mine.items():
            through, _ = self._through(dev, b.size, es)
            self._ack_through(b, dev, through, es)

    def _ack_through(
        self, b: Block, dev: bytes, through: int, near: Sequence[Entry] = ()
    ) -> bytes | None:
        """Ack the device's entry at ``through`` with final block ``b``, unless it is acked already."""
        held = self._acks.get(dev)
        if through < 0 or (held is not None and held[0] >= through):
            return None
        e = next((x for x in near if x.seq == through), None)
        if e is None:  # in an earlier block: its proof against b's size holds all the same
            e = self.store.entry_by_seq(b.chain, dev, through)
        if e is None or e.index >= b.size:
            return None
        return self._ack(b, e, cache=True)

    # -- what an ack may cover --------------------------------------------------------
    #
    # A device frees every record up to the acked seq, so an ack must never pass a number
    # the ledger lacks (a record lost on the way is still only on the device) unless the
    # device said it never used it: a reboot skips reserved numbers, and the first record
    # after it is an EV_SEQ_SKIP event at s with value k, for s-k .. s-1. A record the node
    # refused (NACKed) is never committed: the device's own EV_SET_ASIDE event naming it
    # covers it. A NACK alone never does (a forger could make the node refuse a real record).

    def _through(self, dev: bytes, end: int, mine: Sequence[Entry] = ()) -> tuple[int, int]:
        """(through, end): the device's watermark over entries of index < ``end`` (at least)."""
        held = self._marks.get(dev)
        if held is not None and held[1] >= end:
            return held
        t = -1 if held is None else held[0]
        if held is not None and mine:
            # the usual case: this block's entries go on from the watermark, none late
            walk, late = True, False
            for e in sorted(mine, key=lambda x: x.seq or 0):
                late = late or bool(e.flags & FLAG_LATE)
                if not walk or e.seq is None or e.seq <= t:
                    continue
                if (
                    e.seq == t + 1
                    or _skipped_below(e, t + 1)
                    or self._covered(dev, t + 1, e.seq - 1, end)
                ):
                    t = e.seq
                else:
                    walk = False
            if walk and not late:
                self._marks[dev] = (t, end)
                return t, end
        t = self._look(dev, t, end)
        self._marks[dev] = (t, end)
        return t, end

    def _look(self, dev: bytes, t: int, end: int) -> int:
        """The watermark from ``t`` on, from the store: only entries after a hole are looked at.

        An entry without the gap or late flag was committed right after its
        seq - 1, so a hole lies below a flagged entry or below the device's
        first (bounded work: ``BREAKS_PER_LOOK``; the rest at the next look).
        """
        store, chain = self.store, self.chain
        if t < 0:
            low = store.seq_edge(chain, dev, end, lowest=True)
            if low is None or (
                low > 0
                and not self._skipped_below(dev, low, 0)
                and not self._covered(dev, 0, low - 1, end)
            ):
                return -1
            t = low
        looked = 0
        while looked < BREAKS_PER_LOOK:
            rows = store.seq_breaks(chain, dev, t, end, BREAKS_PAGE)
            for s, kind in rows:
                looked += 1
                p = store.seq_edge(chain, dev, end, below=s)
                p = -1 if p is None else p
                if p < s - 1 and not (
                    (kind == spec.KIND_EVENT and self._skipped_below(dev, s, p + 1))
                    or self._covered(dev, p + 1, s - 1, end)
                ):
                    return p  # p+1 .. s-1: neither in the ledger nor said skipped or set aside
                t = s
            if len(rows) < BREAKS_PAGE:
                top = store.seq_edge(chain, dev, end)
                return t if top is None else max(t, top)
        return t

    def _covered(self, dev: bytes, lo: int, hi: int, end: int) -> bool:
        """Whether the device's committed EV_SET_ASIDE events (index < ``end``) name every seq lo..hi.

        A hole a NACK leaves is a number or a few; a wider one is not looked for. Seqs not
        known from final blocks (after a restart) are looked up among the device's events
        after its entry below the hole, a bounded look.
        """
        if hi < lo or hi - lo >= ASIDE_HOLE_MAX:
            return False
        aside = self._aside.setdefault(dev, set())
        want = range(lo, hi + 1)
        if all(x in aside for x in want):
            return True
        below = self.store.entry_by_seq(self.chain, dev, lo - 1) if lo else None
        start = below.index + 1 if below is not None else 0
        for e in self.store.entries(
            chain=self.chain, device=dev, kind=spec.KIND_EVENT, start=start, end=end,
            limit=ASIDE_LOOK,
        ):  # fmt: skip
            v = _set_aside(e)
            if v is not None:
                aside.add(v)
        return all(x in aside for x in want)

    def _skipped_below(self, dev: bytes, seq: int, low: int) -> bool:
        e = self.store.entry_by_seq(self.chain, dev, seq)
        return e is not None and _skipped_below(e, low)

    def _ack(self, b: Block, e: Entry, cache: bool) -> bytes:
        assert e.device is not None and e.seq is not None and e.tx_id is not None
        cosigs = [s for _, s in self.store.cosignatures(b.chain, b.height)]
        path = self.ledger.chain(b.chain).tree.inclusion_proof(e.index, b.size)
        data = acks.make_ack(
            self._ack_seed,
            self.ack_kid,
            e.device,
            e.seq,
            e.tx_id,
            b.signed,
            cosigs,
            e.index,
            b.size,
            path,
        )
        if cache:
            held = self._acks.get(e.device)
            if held is None or held[0] <= e.seq:
                self._acks[e.device] = (e.seq, data)
        self.transport.publish(spec.TOPIC_ACK % (self.segment, e.device.hex()), data, qos=1)
        self.acks_sent += 1
        return data

    def reack(self, device_id: bytes, seq: int) -> bool:
        """Ack again a redelivered transaction already in a final block; False if its block is not final yet.

        Only an ack that covers ``seq`` (the device holds it, so it holds the
        acked record too): the device's newest ack again, same bytes, if it
        does; else a new ack as far as the watermark.
        """
        with self.lock:
            e = self.store.entry_by_seq(self.chain, device_id, seq)
            if e is None or e.height is None:
                return False
            b = self._block_at_height(self.chain, e.height)
            if b is None or not b.final:
                return False
            held = self._acks.get(device_id)
            through, end = self._through(device_id, b.size)
            if seq > through:
                # no ack may cover it yet; one below it may name a record the device has freed
                # since (it resends what lies past a hole after every new session), which it
                # would count as a bad ack
                return False
            if held is not None and held[0] >= seq:
                self.transport.publish(
                    spec.TOPIC_ACK % (self.segment, device_id.hex()), held[1], qos=1
                )
                self.acks_sent += 1
                return True
            if end > b.size:  # the watermark was made with a later final block
                b = self.store.block_at_size(self.chain, end) or b
            return self._ack_through(b, device_id, through) is not None


def _skipped_below(e: Entry, low: int) -> bool:
    """True if ``e`` is an EV_SEQ_SKIP event saying every number from ``low`` to its own was skipped."""
    if e.kind != spec.KIND_EVENT or e.seq is None:
        return False
    try:
        body = wire.decode(e.data).body
    except WireError:
        return False
    if type(body) is not dict or body.get(spec.E_TYPE) != spec.EV_SEQ_SKIP:
        return False
    k = body.get(spec.E_VALUE)
    return type(k) is int and 0 < k <= e.seq and e.seq - k <= low


def _set_aside(e: Entry) -> int | None:
    """The seq an EV_SET_ASIDE event of the device names (below its own), else None."""
    if e.kind != spec.KIND_EVENT or e.seq is None:
        return None
    try:
        body = wire.decode(e.data).body
    except WireError:
        return None
    if type(body) is not dict or body.get(spec.E_TYPE) != spec.EV_SET_ASIDE:
        return None
    v = body.get(spec.E_VALUE)
    return v if type(v) is int and 0 <= v < e.seq else None
