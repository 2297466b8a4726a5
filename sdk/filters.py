"""The node's side of the device-authentication filter: build, sign, check, and the board rule.

``build`` makes a segment's filter for one epoch from the registered,
unrevoked devices; ``sign`` makes the signed object the node publishes
retained on ``ln/<segment>/filter``; ``filter_hash`` is what the registry
chain commits. ``NodeCheck`` is the node's flood pre-check: the filter
first, then the exact look-up, so a false positive costs one look-up and
never admits anyone. ``fits`` says whether a board can take a filter.
docs/bloom.md has the layout and the rules.

    >>> from lightnode import filters
    >>> f = filters.build(devices, epoch=7, not_after=1767225600, segment="feeder-7")
    >>> data = filters.sign(f, node_seed, kid=b"node-1/filter")
    >>> check = filters.NodeCheck(registry_keys.get, f)
    >>> check.check(device_id, public_key)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import sys
from array import array
from collections.abc import Callable, Iterable, Mapping
from itertools import compress, repeat
from operator import add, itemgetter, mod, rshift
from typing import Any

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


class NodeCheck:
    """The node's check of a transaction's device: the filter, then the exact look-up.

    ``exact_lookup`` gives the public key of a registered, unrevoked device,
    or None: a callable ``device_id -> key | None`` (a registry's
    ``key_for``) or a mapping. Only a device the look-up confirms with the
    same key passes; the filter only spares the look-up for strangers.
    ``counts`` keeps how many were refused by the filter, looked up, and
    refused by the look-up after passing the filter (false positives and
    stale filters).
    """

    def __init__(self, exact_lookup: Lookup, f: BloomFilter) -> None:
        if isinstance(exact_lookup, Mapping):
            exact_lookup = exact_lookup.get
        if not callable(exact_lookup):
            raise TypeError("exact_lookup: a callable or a mapping expected")
        self.lookup = exact_lookup
        self.filter = f
        self._prefix = hashlib.sha256(f.salt)
        self._bytemap = _bytemap(f)
        self.counts = {"filtered": 0, "looked_up": 0, "refused": 0}

    def _exact(self, device_id: bytes, public_key: bytes) -> bool:
        self.counts["looked_up"] += 1
        known = self.lookup(device_id)
        if known is not None and hmac.compare_digest(bytes(known), bytes(public_key)):
            return True
        self.counts["refused"] += 1
        return False

    def check(self, device_id: bytes, public_key: bytes) -> bool:
        """True only for a registered, unrevoked device with this key.

        The filter's ``might_contain`` written out for the node: the salt's
        SHA-256 state kept, one byte per bit, the two 30-bit words taken
        from one 64-bit integer. The same indices (tests hold them equal).
        """
        n = len(device_id)
        if not 1 <= n <= bf.MAX_DEVICE_ID or len(public_key) != bf.KEY_BYTES:
            self.counts["filtered"] += 1
            return False  # no registered device has such an id or key
        h = self._prefix.copy()
        h.update(bytes((n,)) + device_id + public_key)
        w = int.from_bytes(h.digest()[:8], "big")
        m = self.filter.bits
        i = (w >> 34) % m
        step = 1 + ((w & 0xFFFFFFFF) >> 2) % (m - 1)
        bm = self._bytemap
        for _ in range(self.filter.hashes):
            if not bm[i]:
                self.counts["filtered"] += 1
                return False
            i += step
            if i >= m:
                i -= m
        return self._exact(device_id, public_key)

    def check_many(self, pairs: list[tuple[bytes, bytes]]) -> list[bool]:
        """``check`` of many at once (one batch of transactions): the same answers, less per check."""
        for d, k in pairs:
            if not 1 <= len(d) <= bf.MAX_DEVICE_ID or len(k) != bf.KEY_BYTES:
                raise ValueError("device id of 1-32 bytes and a 32-byte key expected")
        salt = self.filter.salt
        digests = [hashlib.sha256(salt + bytes((len(d),)) + d + k).digest() for d, k in pairs]
        hits = maybe_members(digests, self.filter, self._bytemap)
        out = [False] * len(pairs)
        self.counts["filtered"] += len(pairs) - len(hits)
        for j in hits:
            out[j] = self._exact(*pairs[j])
        return out


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
