"""The node's side of the device-authentication filter: build, sign, check, and the board rule.

``build`` makes a segment's filter for one epoch from the registered,
unrevoked devices; ``sign`` makes the signed object the node publishes
retained on ``ln/<segment>/filter``; ``filter_hash`` is what the registry
chain commits. ``NodeCheck`` is the node's check of a transaction's
device: a verdict cache tied to the registry's state and the filter, then
the filter, then the exact look-up, so a false positive costs one look-up
and never admits anyone. ``fits`` says whether a board can take a filter.
docs/bloom.md has the layout and the rules.

    >>> from lightnode import filters
    >>> f = filters.build(devices, epoch=7, not_after=1767225600, segment="feeder-7")
    >>> data = filters.sign(f, node_seed, kid=b"node-1/filter")
    >>> check = filters.NodeCheck(reg, f)  # a lightnode.registry.Registry: its head is the stamp
    >>> check.check(device_id, public_key, seq)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import sys
from array import array
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from itertools import compress, repeat
from operator import add, itemgetter, mod, rshift
from typing import Any, Protocol, runtime_checkable

from lightnode import boards
from lightnode.bloom import filter as bf
from lightnode.bloom import signed
from lightnode.bloom.filter import BloomFilter, FilterError
from lightnode.firmware.ln import wire as spec
from lightnode.wire import encode
from nacl.signing import SigningKey

__all__ = [
    "BloomFilter",
    "FilterError",
    "NodeCheck",
    "RegistryView",
    "build",
    "filter_hash",
    "fits",
    "peak_bytes",
    "sign",
    "verify",
]

DEFAULT_P = 1e-4
# What a board needs at the peak of verify_filter, in copies of the signed
# filter, measured in the unix port by bisecting -X heapsize (docs/bloom.md,
# "The board rule"): 24,126 bytes needed 106 KB beyond the object as
# received (4.5 copies): the received object, the Sig_structure, the
# message Ed25519 hashes, the bit array, and fragmentation. Rounded up.
PEAK_COPIES = 6
# Of a board's application heap, the share a filter may take at its peak:
# the rest is the journal, the uplink and TLS, which run at the same time.
HEAP_SHARE = 0.5


def build(
    devices: Iterable[tuple[bytes, bytes]],
    epoch: int,
    not_after: int,
    p: float = DEFAULT_P,
    segment: str = "",
) -> BloomFilter:
    """The filter of ``devices`` (``(device_id, public_key)`` pairs) for ``epoch`` of ``segment``.

    Sized by ``bloom.filter.optimal`` for the number of distinct devices
    (at least one) and ``p``; the salt is ``epoch_salt(segment, epoch)``,
    so the same registry state gives the same bytes on any node.
    """
    members = sorted({(bytes(d), bytes(k)) for d, k in devices})
    bits, hashes = bf.optimal(max(len(members), 1), p)
    f = BloomFilter(bits, hashes, epoch, not_after, salt=bf.epoch_salt(segment, epoch))
    for device_id, public_key in members:
        f.add(device_id, public_key)
    return f


def sign(f: BloomFilter, seed: bytes, kid: bytes) -> bytes:
    """The signed filter: ``18([{1: -8, 3: cty, 4: kid}, {}, filter bytes, signature])``."""
    if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
        raise ValueError("seed: 32 bytes expected")
    protected = signed.protected_header(kid)
    payload = f.to_bytes()
    tbs = encode(["Signature1", protected, b"", payload])
    signature = SigningKey(bytes(seed)).sign(tbs).signature
    # tag 18 (one head byte, 0xd2) before the array
    return bytes((0xC0 | spec.COSE_SIGN1_TAG,)) + encode([protected, {}, payload, signature])


def verify(
    data: bytes, node_keys: Mapping[bytes, tuple[bytes, Iterable[str]]], held_epoch: int, now_s: int,
    max_bytes: int,
) -> BloomFilter:
    """What a board does with a signed filter (``bloom.signed.verify_filter``), here on CPython."""
    return signed.verify_filter(data, node_keys, held_epoch, now_s, max_bytes)


def filter_hash(data: bytes) -> bytes:
    """SHA-256 of the signed filter's bytes as published: what the registry chain commits."""
    return hashlib.sha256(bytes(data)).digest()


def peak_bytes(filter_bytes: int) -> int:
    """Heap a board needs at the peak of checking and taking a filter of ``filter_bytes``."""
    return PEAK_COPIES * (filter_bytes + 128)


def fits(board: str | Mapping[str, Any], filter_bytes: int) -> tuple[bool, str]:
    """``(ok, message)``: may ``board`` (a name or ``boards.load`` facts) take a filter this big?

    The rule: ``peak_bytes(filter_bytes)`` within ``HEAP_SHARE`` of the
    board's application heap. A board that fails goes without a filter
    (the filter is optional there); the message says so and why.
    """
    facts = boards.load(board) if isinstance(board, str) else board
    name = facts.get("name", "?")
    budget = int(facts["heap_kb"]) * 1024
    need = peak_bytes(filter_bytes)
    allowed = int(budget * HEAP_SHARE)
    if need <= allowed:
        return True, "%s takes the filter: %d bytes, %.0f KB at the peak of %d KB allowed" % (
            name, filter_bytes, need / 1024, allowed / 1024)
    most = allowed // PEAK_COPIES - 128
    return False, (
        "%s builds without the filter: a %d-byte filter needs %.0f KB at its peak, over half "
        "(%d KB) of the board's %d KB heap; it takes at most %d bytes "
        "(about %d devices at p=%g). The board relies on the node's checks."
        % (name, filter_bytes, need / 1024, allowed // 1024, budget // 1024, most,
           devices_for(most, DEFAULT_P), DEFAULT_P))


def devices_for(filter_bytes: int, p: float) -> int:
    """How many devices a filter of ``filter_bytes`` holds at rate ``p`` (optimal sizing)."""
    bits = max(0, filter_bytes - bf.HEADER_BYTES) * 8
    return int(bits * math.log(2) ** 2 / -math.log(p))


Lookup = Callable[[bytes], bytes | None] | Mapping[bytes, bytes]

# Sequence numbers are below 2^64: ``LATEST`` stands for "no sequence number
# given" and only an open key period (the device's current key) covers it.
LATEST = 1 << 64
_OPEN = LATEST + 1
# Refused (device id, key) pairs kept at most, per registry state and filter:
# a flood of distinct strangers fills it and it starts again, so memory
# stays bounded whatever arrives.
REFUSED_MAX = 4096


@runtime_checkable
class RegistryView(Protocol):
    """What ``NodeCheck`` reads of a registry (``lightnode.registry.Registry`` has it)."""

    def device(self, device_id: bytes) -> Any: ...

    @property
    def head(self) -> bytes: ...


class NodeCheck:
    """The node's check of a transaction's device: a verdict cache, the filter, the exact look-up.

    ``exact_lookup`` is the node's view of the registry: a ``Registry``
    (``lightnode.registry``: revocation, quarantine and key periods by
    sequence number are honoured, and its ``head`` is the state stamp), or a
    mapping or callable ``device_id -> key | None`` giving the key of a
    registered, unrevoked device (valid for every sequence number). Only a
    device the look-up confirms with the same key passes; the filter only
    spares the look-up for strangers.

    Verdicts are cached per (device id, key) for one registry state and one
    filter. ``state`` is a callable returning a stamp that changes with
    every change of the registry (for a ``Registry``, its head, unless
    given); it is read on every ``check`` and once per ``check_many``, and
    when it differs from the stamp the cache was made under the cache is
    emptied first, so a revocation, quarantine or rotation takes effect on
    the very next check. A mapping or callable without ``state`` is never
    cached: nothing tells when it changed. Setting ``filter`` (a new epoch)
    or ``invalidate()`` empties the cache. Confirmed pairs are kept with the
    sequence numbers their key covers (one entry per registered key at
    most); refused pairs at most ``refused_max`` (the set starts again when
    full; 0 keeps none), so a flood of distinct strangers cannot grow it.

    ``counts`` counts the uncached path only: refused by the filter, looked
    up, and refused by the look-up after passing the filter (false
    positives and stale filters). Not shared between threads.
    """

    def __init__(
        self,
        exact_lookup: Lookup | RegistryView,
        f: BloomFilter,
        state: Callable[[], object] | None = None,
        refused_max: int = REFUSED_MAX,
    ) -> None:
        self._registry: RegistryView | None = None
        self.lookup: Callable[[bytes], bytes | None] | None = None
        if isinstance(exact_lookup, RegistryView):
            self._registry = exact_lookup
            if state is None:
                state = partial(getattr, exact_lookup, "head")
        elif isinstance(exact_lookup, Mapping):
            self.lookup = exact_lookup.get
        elif callable(exact_lookup):
            self.lookup = exact_lookup
        else:
            raise TypeError("exact_lookup: a registry, a callable or a mapping expected")
        if refused_max < 0:
            raise ValueError("refused_max: 0 or more expected")
        self._state = state
        self.refused_max = refused_max
        # keyed by device id ‖ key (the key is always 32 bytes, so the id is the rest)
        self._passed: dict[bytes, tuple[int, int]] = {}
        self._refused: set[bytes] = set()
        self._stamp: object = _NO_STAMP
        self.counts = {"filtered": 0, "looked_up": 0, "refused": 0}
        self.filter = f

    @property
    def filter(self) -> BloomFilter:
        return self._filter

    @filter.setter
    def filter(self, f: BloomFilter) -> None:
        """A new filter (a new epoch): its probes, and an empty cache."""
        self._filter = f
        self._prefix = hashlib.sha256(f.salt)
        self._bytemap = _bytemap(f)
        self.invalidate()

    def invalidate(self) -> None:
        """Forget every verdict."""
        self._restamp(_NO_STAMP)

    def _restamp(self, stamp: object) -> None:
        self._passed = {}
        self._refused = set()
        self._stamp = stamp

    @property
    def cached(self) -> tuple[int, int]:
        """How many (device id, key) verdicts are cached: ``(passed, refused)``."""
        return len(self._passed), len(self._refused)

    def _period(self, device_id: bytes, public_key: bytes) -> tuple[int, int] | None:
        """The sequence numbers ``[lo, hi)`` the registry takes ``public_key`` for, or None."""
        self.counts["looked_up"] += 1
        if self._registry is not None:
            dev = self._registry.device(device_id)
            if dev is not None and dev.revoked is None and dev.quarantined is None:
                for k in dev.keys:
                    if hmac.compare_digest(bytes(k.public_key), bytes(public_key)):
                        return k.from_seq, _OPEN if k.below is None else k.below
        else:
            assert self.lookup is not None
            known = self.lookup(device_id)
            if known is not None and hmac.compare_digest(bytes(known), bytes(public_key)):
                return 0, _OPEN
        self.counts["refused"] += 1
        return None

    def _exact(self, device_id: bytes, public_key: bytes, seq: int, cache: bool) -> bool:
        period = self._period(device_id, public_key)
        if cache:
            self._keep(device_id + public_key, period)
        return period is not None and period[0] <= seq < period[1]

    def _keep(self, pair: bytes, period: tuple[int, int] | None) -> None:
        if period is not None:
            self._passed[pair] = period
        elif self.refused_max:
            if len(self._refused) >= self.refused_max:
                self._refused = set()
            self._refused.add(pair)

    def check(self, device_id: bytes, public_key: bytes, seq: int | None = None) -> bool:
        """True only for a registered, unrevoked device with this key, valid for ``seq``.

        ``seq`` is the transaction's sequence number (None: the device's
        current key only). A cached verdict first; else the filter's
        ``might_contain`` written out for the node (the salt's SHA-256
        state kept, one byte per bit, the two 30-bit words taken from one
        64-bit integer: the same indices, tests hold them equal), then the
        exact look-up.
        """
        n = len(device_id)
        if not 1 <= n <= bf.MAX_DEVICE_ID or len(public_key) != bf.KEY_BYTES:
            self.counts["filtered"] += 1
            return False  # no registered device has such an id or key
        state = self._state
        cache = state is not None
        if state is not None:
            stamp = state()
            if stamp != self._stamp:
                self._restamp(stamp)
            pair = device_id + public_key
            try:
                period = self._passed.get(pair)
            except TypeError:  # a bytearray id: as bytes
                return self.check(bytes(device_id), bytes(public_key), seq)
            if period is not None:
                return period[0] <= (LATEST if seq is None else seq) < period[1]
            if pair in self._refused:
                return False
        h = self._prefix.copy()
        h.update(bytes((n,)) + device_id + public_key)
        w = int.from_bytes(h.digest()[:8], "big")
        m = self._filter.bits
        i = (w >> 34) % m
        step = 1 + ((w & 0xFFFFFFFF) >> 2) % (m - 1)
        bm = self._bytemap
        for _ in range(self._filter.hashes):
            if not bm[i]:
                self.counts["filtered"] += 1
                if cache:
                    self._keep(pair, None)
                return False
            i += step
            if i >= m:
                i -= m
        return self._exact(device_id, public_key, LATEST if seq is None else seq, cache)

    def check_many(
        self, pairs: list[tuple[bytes, bytes]], seqs: list[int] | None = None
    ) -> list[bool]:
        """``check`` of many at once (one batch of transactions): the same answers, less per check.

        ``seqs``: the transactions' sequence numbers, one per pair (None:
        current keys only). The registry's stamp is read once per batch.
        """
        if seqs is not None and len(seqs) != len(pairs):
            raise ValueError("seqs: one per pair expected")
        at = [LATEST] * len(pairs) if seqs is None else seqs
        out = [False] * len(pairs)
        cache = self._state is not None
        if self._state is not None:
            stamp = self._state()
            if stamp != self._stamp:
                self._restamp(stamp)
        passed, refused = self._passed, self._refused
        todo: list[tuple[int, bytes, bytes]] = []
        for j, (d, k) in enumerate(pairs):
            if not 1 <= len(d) <= bf.MAX_DEVICE_ID or len(k) != bf.KEY_BYTES:
                raise ValueError("device id of 1-32 bytes and a 32-byte key expected")
            if cache:
                pair = bytes(d) + bytes(k)
                period = passed.get(pair)
                if period is not None:
                    out[j] = period[0] <= at[j] < period[1]
                    continue
                if pair in refused:
                    continue
            todo.append((j, bytes(d), bytes(k)))
        salt = self._filter.salt
        digests = [hashlib.sha256(salt + bytes((len(d),)) + d + k).digest() for _, d, k in todo]
        hits = set(maybe_members(digests, self._filter, self._bytemap))
        self.counts["filtered"] += len(todo) - len(hits)
        for x, (j, d, k) in enumerate(todo):
            if x in hits:
                out[j] = self._exact(d, k, at[j], cache)
            elif cache:
                self._keep(d + k, None)
        return out


_NO_STAMP = object()


def _bytemap(f: BloomFilter) -> bytes:
    """One byte (0 or 1) per bit of ``f``: for batch probes by C-level indexing."""
    table = [bytes((b >> s) & 1 for s in range(8)) for b in range(256)]
    return b"".join(table[b] for b in f.array)[: f.bits]


def maybe_members(digests: list[bytes], f: BloomFilter, bytemap: bytes | None = None) -> list[int]:
    """Positions in ``digests`` (member keys K) whose every bit is set: ``f.has_key`` over a batch.

    The same indices as ``bloom.filter.indices``, probed round by round
    over the keys still standing, each round at C speed (``itemgetter``
    and ``compress``); most strangers fall in the first two rounds.
    """
    if not digests:
        return []
    bm = _bytemap(f) if bytemap is None else bytemap
    m = f.bits
    n = len(digests)
    words = array("I")
    if words.itemsize != 4:  # pragma: no cover
        raise RuntimeError("array('I') is not 32-bit here")
    words.frombytes(b"".join(digests))
    if sys.byteorder == "little":
        words.byteswap()
    # round 0 over every key: h1 = (word 0 >> 2) mod m
    idx: Any = list(map(mod, map(rshift, words[0::8], repeat(2, n)), repeat(m, n)))
    alive = list(compress(range(n), _probe(bm, idx)))
    if f.hashes == 1 or not alive:
        return alive
    # h2 = 1 + (word 1 >> 2) mod (m - 1), only for the keys still standing
    idx = _pick(idx, alive)
    step = _pick(words[1::8], alive)
    step = list(map(add, map(mod, map(rshift, step, repeat(2)), repeat(m - 1)), repeat(1)))
    for r in range(1, f.hashes):
        idx = [i + s - m if i + s >= m else i + s for i, s in zip(idx, step, strict=True)]
        probe = _probe(bm, idx)
        alive = list(compress(alive, probe))
        if not alive or r == f.hashes - 1:
            break
        idx = list(compress(idx, probe))
        step = list(compress(step, probe))
    return alive


def _probe(bm: bytes, idx: Any) -> tuple[int, ...]:
    return itemgetter(*idx)(bm) if len(idx) > 1 else (bm[idx[0]],)


def _pick(seq: Any, at: list[int]) -> Any:
    return itemgetter(*at)(seq) if len(at) > 1 else (seq[at[0]],)
