"""The full node's validation pipeline: a received message in, a ledger entry or a signed NACK out.

One ``Ingest`` per segment (one node process per segment). For each
message on ``ln/<segment>/<device>/tx``:

1. decode (``lightnode.wire.decode``: size, canonical CBOR, COSE shape,
   headers, payload hash, payload fields, kid = payload device);
2. topic: the topic's segment and device must be the payload's;
3. the device's key for that sequence number from the node's in-memory
   registry view (``Registry.key_for``; unknown, revoked and quarantined
   devices refused by name; the registry is caught up every second, so a
   revocation takes effect within that);
4. the Ed25519 signature;
5. order: a device's next sequence number goes to the ledger at once, with
   any buffered successors; a later one waits in the device's buffer
   (bounded) until the gap closes or the wait times out, and then goes in
   with the ledger's gap flag; an earlier one goes straight to the ledger
   (duplicate, fork, or a late entry flagged ``late``);
6. ``Ledger.add_transaction``: ``added``, ``duplicate`` (idempotent, no
   second entry), or ``fork`` (both copies kept as a fork flag; refused).

Only what is not authentic is refused (DESIGN.md, "Full node"); each
refusal gets a NACK signed with the node's ack key
(``lightnode.node.acks.make_nack``) on the device's ack topic, rate-limited
per source and in all, and is counted per (source, reason) in the store's
rejections table (one row per source, reason and hour). The source is the
topic's device when the registry knows it, else ``stranger``: a flood from
made-up device ids costs one counter, not a row each.

Rejection summaries are committed to the segment chain itself, as wire
transactions of kind ``summary`` made by the node with its checkpoint key
(device id = that key's kid, as for checkpoints, so an auditor's key map
checks them like any device's transaction): at most one per
``summary_every_us``, and only when something was refused. A summary's
body is ``{0: window start us, 1: window end us, 2: [[source, reason,
count], ...] (at most 64 rows, the largest; the rest folded into
["others", reason, n]), 3: NACKs sent, 4: NACKs suppressed}``. Everything
the flood leaves on disk is bounded: rows by (known source, reason, hour),
summaries by time.

Every committed transaction of a device is also handed to the segment's
time analysis (``lightnode.node.analysis.Analyzer``: angle drift of one
PMU against the others, timestamp steps, device clocks outside the
ledger's checkpoint bracket); what it flags goes to the store's flags
table with the block that commits the entry (or at once, if that block is
already stored). Operator actions (kind 3) on ``ln/<segment>/<operator
id>/tx`` are checked against the registry (``lightnode.node.operators``),
committed to the operator chain in a block of their own, and analysed
(an action outside the operator's hours is flagged).

Acknowledgement to the broker (PUBACK) is settled here too: a message's
token is released once what it carried is in a stored block (or, for a
refusal, once its count is flushed), so a node killed at any point loses
nothing the broker has forgotten: the broker sends it again, and the
ledger takes it once.

    ingest = Ingest(ledger, reg, "feeder-7", ack_seed, ack_kid, publish)
    ingest.receive_batch([(topic, payload, token), ...])
    ingest.tick()                   # timeouts, registry, cuts, summaries
    for token in ingest.settled(): ...
"""

from __future__ import annotations

import logging
import time as _time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lightnode import wire
from lightnode.errors import WireError
from lightnode.firmware.ln import ack as spec_ack
from lightnode.firmware.ln import wire as spec
from lightnode.ledger import checkpoint as cp
from lightnode.ledger.chain import ADDED, DUPLICATE, FORK, Ledger
from lightnode.ledger.store import Flag
from lightnode.node import acks, operators
from lightnode.node.analysis import Analyzer, PointRoles

__all__ = ["BUFFERED", "Ingest", "STRANGER", "Verdict"]

log = logging.getLogger("lightnode.node")

BUFFERED = "buffered"
STRANGER = "stranger"  # the source of refusals whose topic names no registered device
OTHERS = "others"
REORDER_MAX = 256  # buffered transactions per device
REORDER_TOTAL = 4096  # buffered in all: below the broker's in-flight window
REORDER_TIMEOUT_US = 2_000_000
NACK_BURST = 20.0  # per source
NACK_PER_S = 5.0  # per source, sustained
NACK_ALL_PER_S = 500.0  # all sources together: the node is no amplifier for a flood
SUMMARY_EVERY_US = 60_000_000
SUMMARY_ROWS = 64
CATCH_UP_EVERY_US = 1_000_000


def now_us() -> int:
    return _time.time_ns() // 1000


@dataclass
class Verdict:
    """What became of one message: ``added``, ``duplicate``, ``buffered``, or a refusal reason."""

    status: str
    device: bytes | None = None
    seq: int | None = None
    detail: str = ""


@dataclass
class _Waiting:
    data: bytes
    tx: wire.Transaction
    tokens: list[Any]
    since: int


@dataclass
class _Bucket:
    level: float
    at: int


@dataclass
class Stats:
    received: int = 0
    added: int = 0
    duplicate: int = 0
    buffered: int = 0
    released_late: int = 0  # buffered transactions committed after a timeout (gap flag)
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    forks: int = 0
    nacks_sent: int = 0
    nacks_suppressed: int = 0
    blocks: int = 0
    summaries: int = 0
    cpu: dict[str, float] = field(
        default_factory=lambda: {"decode": 0.0, "verify": 0.0, "ledger": 0.0, "cut": 0.0}
    )


REGISTRY_CHAIN = "registry"


def sync_registry(ledger: Ledger, reg: Any) -> int:
    """Append the registry transactions the ledger's registry chain lacks; how many were added."""
    chain = ledger.chain(REGISTRY_CHAIN)
    added = 0
    for data in reg.store.transactions(since=chain.size):
        ledger.add_entry(REGISTRY_CHAIN, data)
        added += 1
    return added


def registry_checkpoint(ledger: Ledger) -> tuple[int, bytes]:
    """(size, root) of the registry as the node holds it: the ledger's registry chain."""
    chain = ledger.chain(REGISTRY_CHAIN)
    return chain.size, chain.tree.root()


class Ingest:
    """Validation, ordering, refusal and acknowledgement for one segment's transactions."""

    def __init__(
        self,
        ledger: Ledger,
        registry: Any,
        segment: str,
        ack_seed: bytes,
        ack_kid: bytes,
        publish: Callable[[str, bytes], None] | None = None,
        *,
        clock: Callable[[], int] = now_us,
        summary_seed: bytes | None = None,
        reorder_max: int = REORDER_MAX,
        reorder_total: int = REORDER_TOTAL,
        reorder_timeout_us: int = REORDER_TIMEOUT_US,
        nack_burst: float = NACK_BURST,
        nack_per_s: float = NACK_PER_S,
        nack_all_per_s: float = NACK_ALL_PER_S,
        summary_every_us: int = SUMMARY_EVERY_US,
        catch_up_every_us: int = CATCH_UP_EVERY_US,
        producer: Any = None,
        analyzer: Analyzer | None | bool = True,
    ) -> None:
        self.ledger = ledger
        self.registry = registry
        self.segment = segment
        self.chain_name = cp.SEGMENT_PREFIX + segment
        self.ack_seed, self.ack_kid = bytes(ack_seed), bytes(ack_kid)
        self.publish = publish
        self.clock = clock
        self.reorder_max, self.reorder_total = reorder_max, reorder_total
        self.reorder_timeout_us = reorder_timeout_us
        self.nack_burst, self.nack_per_s, self.nack_all_per_s = (
            nack_burst,
            nack_per_s,
            nack_all_per_s,
        )
        self.summary_every_us = summary_every_us
        self.catch_up_every_us = catch_up_every_us
        self.producer = producer
        self.stats = Stats()
        self._prefix = "ln/%s/" % segment
        # the summary signer: the node's checkpoint key, as the device id its kid
        self._summary_signer = wire.Signer(summary_seed or ledger._seed, ledger.kid, segment)
        self._next: dict[bytes, int] = {}
        self._waiting: dict[bytes, dict[int, _Waiting]] = {}
        self._n_waiting = 0
        self._held: deque[tuple[int, Any]] = deque()  # (chain size needed, token)
        self._held_counts: list[Any] = []
        self._ready: list[Any] = []
        self._counts: dict[tuple[str, str], list[Any]] = {}  # (source, reason) -> [n, detail]
        self._window: dict[tuple[str, str], int] = defaultdict(int)  # since the last summary
        self._window_start = clock()
        self._nacks_window = [0, 0]
        self._buckets: dict[str, _Bucket] = {}
        self._all = _Bucket(nack_all_per_s, clock())
        self._last_catch_up = clock()
        # The registry's transactions are the ledger's registry chain, and every
        # checkpoint names the registry (size, root) this node validated against.
        sync_registry(ledger, registry)
        if ledger.registry is None:
            ledger.registry = lambda: registry_checkpoint(ledger)
        self.chain = ledger.chain(self.chain_name)
        # True: the default analysis; None or False: none; or an Analyzer of the caller's
        if analyzer is True:
            analyzer = Analyzer(segment, pmu_points=PointRoles(registry))
        self.analyzer: Analyzer | None = analyzer or None
        self._seen_cut = (-1, -1)
        self._operator_ids: set[bytes] | None = None

    # -- the pipeline ---------------------------------------------------------------------

    def receive(self, topic: str, data: bytes, token: Any = None) -> Verdict:
        return self.receive_batch([(topic, data, token)])[0]

    def receive_batch(self, messages: Iterable[tuple[str, bytes, Any]]) -> list[Verdict]:
        """Run each message through the pipeline, in arrival order; cut any block now due."""
        out: list[Verdict] = []
        tc = _time.thread_time
        cpu = self.stats.cpu
        for topic, data, token in messages:
            self.stats.received += 1
            t0 = tc()
            source_hex = self._topic_device(topic)
            try:
                if source_hex is None:
                    raise _Refusal(
                        spec_ack.NR_TOPIC, "topic %r is not %s<device>/tx" % (topic, self._prefix)
                    )
                tx = wire.decode(data)
                t1 = tc()
                cpu["decode"] += t1 - t0
                if tx.device_id.hex() != source_hex or tx.segment != self.segment:
                    raise _Refusal(
                        spec_ack.NR_TOPIC,
                        "topic %s, payload %s on %s" % (topic, tx.device_id.hex(), tx.segment),
                        tx,
                    )
                if (
                    tx.kind == spec.KIND_OPERATOR
                    and self.registry.device(tx.device_id) is None
                    and self.registry.operator_by_id(tx.device_id) is not None
                ):  # a stranger's kind 3 is refused below as any stranger's, at one counter's cost
                    cpu["verify"] += tc() - t1
                    out.append(self._operator(tx, data, token))
                    continue
                key = self._key(tx)
                tx.verify(key)
                t0 = tc()
                cpu["verify"] += t0 - t1
            except _Refusal as r:
                out.append(self._refuse(topic, source_hex, r.reason, r.detail, r.tx, data, token))
                continue
            except WireError as e:
                cpu["decode"] += tc() - t0
                out.append(self._refuse(topic, source_hex, e.reason, e.detail, None, data, token))
                continue
            out.append(self._order(tx, data, token))
            cpu["ledger"] += tc() - t0
        self._cut_due()
        return out

    def _topic_device(self, topic: str) -> str | None:
        if not topic.startswith(self._prefix) or not topic.endswith("/tx"):
            return None
        dev = topic[len(self._prefix) : -3]
        if not 2 <= len(dev) <= 2 * spec.MAX_DEVICE_ID or "/" in dev:
            return None
        return dev

    def _key(self, tx: wire.Transaction) -> bytes:
        dev = self.registry.device(tx.device_id)
        if dev is None:
            raise _Refusal(spec_ack.NR_UNKNOWN_DEVICE, tx.device_id.hex(), tx)
        if dev.revoked is not None:
            raise _Refusal(spec_ack.NR_REVOKED_DEVICE, tx.device_id.hex(), tx)
        if dev.quarantined is not None:
            raise _Refusal(spec_ack.NR_QUARANTINED_DEVICE, tx.device_id.hex(), tx)
        if dev.segment != self.segment:
            raise _Refusal(spec_ack.NR_TOPIC, "device of segment %s" % dev.segment, tx)
        key = self.registry.key_for(tx.device_id, tx.seq)
        if key is None:  # no key of the device covers this sequence number: nobody could sign it
            raise _Refusal(spec.R_SIGNATURE, "no key for seq %d" % tx.seq, tx)
        return key

    def _expected(self, device: bytes) -> int:
        n = self._next.get(device)
        if n is None:
            st = self.chain.devices.get(device)
            if st is not None:
                n = st.seq + 1
            else:
                last = self.ledger.store.last_of_device(self.chain_name, device)
                n = 0 if last is None or last.seq is None else last.seq + 1
            self._next[device] = n
        return n

    def _order(self, tx: wire.Transaction, data: bytes, token: Any) -> Verdict:
        dev, seq = tx.device_id, tx.seq
        expected = self._expected(dev)
        if seq > expected:
            waiting = self._waiting.setdefault(dev, {})
            w = waiting.get(seq)
            if w is not None and w.data == data:
                w.tokens.append(token)  # a repeat of one waiting: acknowledged with it
                return Verdict(DUPLICATE, dev, seq)
            if w is None:
                waiting[seq] = _Waiting(data, tx, [token], self.clock())
                self._n_waiting += 1
                self.stats.buffered += 1
                if len(waiting) > self.reorder_max or self._n_waiting > self.reorder_total:
                    self._release(
                        dev, min(waiting)
                    )  # the gap will not close in time: go on without it
                return Verdict(BUFFERED, dev, seq)
            # a second, different transaction under a waiting number: the first keeps its place
            # and this one goes to the ledger right after it, where it is a fork
            w.tokens.append(_Contender(data, tx, token))
            return Verdict(BUFFERED, dev, seq)
        v = self._add(tx, data, token)
        if seq == expected and v.status == ADDED:
            self._next[dev] = seq + 1
            self._drain(dev)
        return v

    def _add(self, tx: wire.Transaction, data: bytes, token: Any) -> Verdict:
        a = self.ledger.add_transaction(data, tx)
        if a.status == FORK:
            self.stats.forks += 1
            log.warning(
                "FORK device %s seq %d: a second, different transaction", tx.device_id.hex(), tx.seq
            )
            return self._refuse(
                None, tx.device_id.hex(), spec_ack.NR_FORK, "seq %d" % tx.seq, tx, data, token
            )
        if a.status == ADDED:
            self.stats.added += 1
            if self.analyzer is not None and a.index is not None and tx.kind != spec.KIND_SUMMARY:
                now = self.clock()
                try:
                    self._keep_flags(self.analyzer.observe(tx, a.index, now, now))
                except Exception:  # the analysis must never stop ingest
                    log.exception("analysis")
        else:
            self.stats.duplicate += 1
            if self.producer is not None:  # idempotent, and re-acked once its block is final
                try:
                    self.producer.reack(tx.device_id, tx.seq)
                except Exception:  # the producer's trouble must not stop ingest
                    log.exception("producer.reack")
        self._held.append((self.chain.size, token))
        return Verdict(a.status, tx.device_id, tx.seq)

    def _drain(self, dev: bytes) -> None:
        waiting = self._waiting.get(dev)
        while waiting:
            n = self._next[dev]
            w = waiting.pop(n, None)
            if w is None:
                break
            self._n_waiting -= 1
            self._commit_waiting(w)
            self._next[dev] = n + 1
        if not waiting:
            self._waiting.pop(dev, None)

    def _commit_waiting(self, w: _Waiting) -> None:
        self._add(w.tx, w.data, w.tokens[0])
        for t in w.tokens[1:]:
            if isinstance(t, _Contender):
                self._add(t.tx, t.data, t.token)
            else:
                self._held.append((self.chain.size, t))

    def _release(self, dev: bytes, upto: int) -> None:
        """Commit the device's waiting transactions up to ``upto`` (the gaps before them stay gaps), then drain."""
        waiting = self._waiting.get(dev, {})
        for seq in sorted(s for s in waiting if s <= upto):
            w = waiting.pop(seq)
            self._n_waiting -= 1
            self.stats.released_late += 1
            self._commit_waiting(w)
            self._next[dev] = seq + 1
        self._drain(dev)

    # -- operator actions and the analysis's flags -----------------------------------------

    def _operator(self, tx: wire.Transaction, data: bytes, token: Any) -> Verdict:
        """An operator action: checked by the registry, committed in a block of its own, analysed."""
        from lightnode.registry import RegistryError

        seen = self._operator_seen()
        if tx.id in seen:
            self.stats.duplicate += 1
            self._ready.append(token)
            return Verdict(DUPLICATE, tx.device_id, tx.seq)
        try:
            op, _action, index = operators.commit(self.registry, self.ledger, data)
        except RegistryError as e:
            reason = _OPERATOR_REASONS.get(e.reason, spec.R_PAYLOAD)
            src = tx.device_id.hex()
            return self._refuse(None, src, reason, "%s: %s" % (e.reason, e.detail), tx, data, token)
        seen.add(tx.id)
        self.stats.added += 1
        now = self.clock()
        signed = self.ledger.cut(operators.OPERATOR_CHAIN)  # evidence at once, not in a block age
        head = self.ledger.chain(operators.OPERATOR_CHAIN).head
        if signed is not None and self.producer is not None:  # the witnesses cosign it too
            self.stats.blocks += 1
            try:
                self.producer.on_block(signed.raw, head)
            except Exception:  # the producer's trouble must not stop ingest
                log.exception("producer.on_block")
        if self.analyzer is not None:
            try:
                flags = self.analyzer.operator_action(op.name, tx, index, now, now)
                if head is not None:
                    flags += self.analyzer.on_checkpoint(head.chain, head.size, head.time, now)
                self._keep_flags(flags)
            except Exception:  # the analysis must never stop ingest
                log.exception("analysis")
        self._ready.append(token)
        return Verdict(ADDED, tx.device_id, tx.seq)

    def _operator_seen(self) -> set[bytes]:
        """Ids of the operator actions already committed (a repeat from the broker is one action)."""
        if self._operator_ids is None:
            ids = set()
            for e in self.ledger.store.entries(chain=operators.OPERATOR_CHAIN):
                try:
                    ids.add(wire.decode(e.data).id)
                except WireError:
                    pass
            self._operator_ids = ids
        return self._operator_ids

    def _keep_flags(self, flags: list[Flag]) -> None:
        """The analysis's flags: with the chain's next block when one is pending, else stored now."""
        for f in flags:
            c = self.ledger.chain(f.chain)
            if c.pending:
                c.pending_flags.append(f)
            else:
                self.ledger.store.add_flag(f)

    def _analyse_cuts(self) -> None:
        """Tell the analysis of the segment's newest checkpoint and the last cosigned one."""
        a = self.analyzer
        if a is None:
            return
        head = self.chain.head
        if head is None or (head.height, head.time) == self._seen_cut:
            return
        self._seen_cut = (head.height, head.time)
        try:
            before, _ = self.ledger.store.bracket(self.chain_name, head.size)
            a.set_lower_reference(before.time if before is not None else head.time)
            self._keep_flags(a.on_checkpoint(self.chain_name, head.size, head.time, self.clock()))
        except Exception:  # the analysis must never stop ingest
            log.exception("analysis")

    # -- refusals -------------------------------------------------------------------------

    def _refuse(
        self,
        topic: str | None,
        source_hex: str | None,
        reason: str,
        detail: str,
        tx: wire.Transaction | None,
        data: bytes,
        token: Any,
    ) -> Verdict:
        self.stats.refused[reason] += 1
        known = False
        if source_hex is not None:
            try:
                known = self.registry.device(bytes.fromhex(source_hex)) is not None
            except ValueError:
                known = False
        source = source_hex if known and source_hex is not None else STRANGER
        c = self._counts.get((source, reason))
        if c is None:
            self._counts[(source, reason)] = [1, detail]
        else:
            c[0] += 1
            c[1] = detail
        self._window[(source, reason)] += 1
        self._nack(source, source_hex, reason, tx)
        self._held_counts.append(token)
        return Verdict(reason, tx.device_id if tx else None, tx.seq if tx else None, detail)

    def _take(self, b: _Bucket, rate: float, burst: float, now: int) -> bool:
        b.level = min(burst, b.level + (now - b.at) * rate / 1e6)
        b.at = now
        if b.level >= 1.0:
            b.level -= 1.0
            return True
        return False

    def _nack(
        self, source: str, source_hex: str | None, reason: str, tx: wire.Transaction | None
    ) -> None:
        if self.publish is None or source_hex is None:
            return
        try:
            device = tx.device_id if tx is not None else bytes.fromhex(source_hex)
        except ValueError:
            return  # no device to answer
        now = self.clock()
        b = self._buckets.get(source)
        if b is None:
            if len(self._buckets) > 10_000:
                self._buckets.clear()
            b = self._buckets[source] = _Bucket(self.nack_burst, now)
        if not self._take(b, self.nack_per_s, self.nack_burst, now) or not self._take(
            self._all, self.nack_all_per_s, self.nack_all_per_s, now
        ):
            self.stats.nacks_suppressed += 1
            self._nacks_window[1] += 1
            return
        nack = acks.make_nack(
            self.ack_seed,
            self.ack_kid,
            device,
            tx.seq if tx is not None else None,
            tx.id if tx is not None else None,
            reason,
            now,
        )
        self.publish(spec.TOPIC_ACK % (self.segment, source_hex), nack)
        self.stats.nacks_sent += 1
        self._nacks_window[0] += 1

    def flush_counts(self) -> None:
        """Write the rejection counts to the store; the refusals' tokens are then settled."""
        if self._counts:
            now = self.clock()
            store = self.ledger.store
            for (source, reason), (n, detail) in self._counts.items():
                store.count_rejection(source, reason, now, detail, n)
            self._counts = {}
        self._ready.extend(self._held_counts)
        self._held_counts = []

    def _summary(self, now: int) -> None:
        if not self._window or now - self._window_start < self.summary_every_us:
            return
        rows = sorted(self._window.items(), key=lambda kv: -kv[1])
        body_rows: list[list[Any]] = [[s, r, n] for (s, r), n in rows[:SUMMARY_ROWS]]
        others: dict[str, int] = defaultdict(int)
        for (_, r), n in rows[SUMMARY_ROWS:]:
            others[r] += n
        body_rows += [[OTHERS, r, n] for r, n in sorted(others.items())]
        body = {
            0: self._window_start,
            1: now,
            2: body_rows,
            3: self._nacks_window[0],
            4: self._nacks_window[1],
        }
        kid = self.ledger.kid
        st = self.chain.devices.get(kid)
        if st is None:
            last = self.ledger.store.last_of_device(self.chain_name, kid)
            seq, prev = (0, bytes(32)) if last is None else (last.seq + 1, last.tx_id)
        else:
            seq, prev = st.seq + 1, st.tx_id
        data, _ = self._summary_signer.make(
            seq, prev, (now, spec.TQ_NTP, 0), spec.KIND_SUMMARY, body
        )
        self.ledger.add_transaction(data)
        self.stats.summaries += 1
        self._window = defaultdict(int)
        self._window_start = now
        self._nacks_window = [0, 0]

    # -- time -----------------------------------------------------------------------------

    def tick(self) -> None:
        """Release buffered transactions whose wait is over, catch up the registry, commit summaries, cut due blocks."""
        now = self.clock()
        for dev in list(self._waiting):
            waiting = self._waiting[dev]
            late = [s for s, w in waiting.items() if now - w.since >= self.reorder_timeout_us]
            if late:
                self._release(dev, max(late))
        if now - self._last_catch_up >= self.catch_up_every_us:
            self._last_catch_up = now
            self.registry.catch_up()
            sync_registry(self.ledger, self.registry)
        self._summary(now)
        if self.analyzer is not None:
            try:
                self._keep_flags(self.analyzer.tick(now))
            except Exception:  # the analysis must never stop ingest
                log.exception("analysis")
        self._cut_due()

    def _cut_due(self) -> None:
        self.flush_counts()
        t0 = _time.thread_time()
        signed = self.ledger.cut_due()
        self.stats.cpu["cut"] += _time.thread_time() - t0
        for s in signed:
            self.stats.blocks += 1
            if self.producer is not None:
                head = self.ledger.chain(s.checkpoint.chain).head
                try:
                    self.producer.on_block(s.raw, head)
                except Exception:  # the producer's trouble must not stop ingest
                    log.exception("producer.on_block")
        self._analyse_cuts()
        stored = self.chain.head.size if self.chain.head is not None else 0
        held = self._held
        while held and held[0][0] <= stored:
            self._ready.append(held.popleft()[1])

    def flush(self) -> None:
        """Everything waiting into the ledger and every chain cut now (a clean stop)."""
        for dev in list(self._waiting):
            waiting = self._waiting[dev]
            if waiting:
                self._release(dev, max(waiting))
        self.flush_counts()
        for name in (self.chain_name, cp.KIND_GENERAL):
            if self.ledger.cut(name) is not None:
                self.stats.blocks += 1
        self._cut_due()

    def settled(self) -> list[Any]:
        """Tokens of messages now safe to acknowledge to the broker."""
        out, self._ready = self._ready, []
        return out

    @property
    def waiting(self) -> int:
        return self._n_waiting


@dataclass
class _Contender:
    """A second, different transaction under a waiting sequence number: a fork once the first is in."""

    data: bytes
    tx: wire.Transaction
    token: Any


# registry refusals of an operator action, as the NACK reasons a device (console) reads
_OPERATOR_REASONS = {
    "unknown-operator": spec_ack.NR_UNKNOWN_DEVICE,
    "revoked-operator": spec_ack.NR_REVOKED_DEVICE,
    "bad-signature": spec.R_SIGNATURE,
    "key-not-valid": spec.R_SIGNATURE,
}


class _Refusal(Exception):
    def __init__(self, reason: str, detail: str, tx: wire.Transaction | None = None) -> None:
        self.reason, self.detail, self.tx = reason, detail, tx
