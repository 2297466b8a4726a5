"""Evidence bundles: a set of transactions with every proof, checkpoint, cosignature and registry entry needed to check them offline.

``export`` reads a ledger store and a registry and writes one file (a
deterministic CBOR array, docs/verification.md "Evidence bundles" has it
byte by byte). ``verify`` checks such a file against trust roots given out
of band (node keys that sign checkpoints, witness keys that cosign them,
optionally the registry's genesis admin key) and returns a ``Report``: what
the bundle is anchored to and, for anything that fails, which object and
which check. Nothing in a bundle is taken on its word: every byte of it is
either signed, hashed into a proof that ends at a trusted checkpoint, or a
structural byte whose change makes the bundle undecodable.

How the trust roots anchor the registry: every checkpoint names the
registry checkpoint (size, root) its node validated the block against, so
a final checkpoint signed by a trusted node and cosigned by trusted
witnesses commits the first ``size`` registry transactions. The verifier
recomputes that root from the bundle's registry transactions, and replays
them from the genesis (each signed by an admin whose authority goes back to
the genesis), so a device's key at a sequence number follows from the
trust roots. A registry chain checkpoint in the bundle anchors it the same
way; so does a genesis admin key given as a trust root.

    >>> from lightnode.evidence import Trust, verify
    >>> verify(b"\\x00", Trust({}, {})).failures
    ['bundle: byte 0: the bundle: a 5-array expected, got an integer']
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightnode import registry as regmod
from lightnode import wire
from lightnode.errors import LightnodeError, WireError
from lightnode.ledger import checkpoint as cp
from lightnode.ledger import merkle
from lightnode.ledger.errors import CheckpointError, ProofError
from lightnode.ledger.store import Block, Store

__all__ = [
    "FORMAT",
    "VERSION",
    "EvidenceError",
    "Exported",
    "Report",
    "Selection",
    "Trust",
    "decode",
    "export",
    "verify",
]

FORMAT = "lightnode-evidence"
VERSION = 1

# The bundle: [format, version, registry, checkpoints, transactions]
B_FORMAT, B_VERSION, B_REGISTRY, B_CHECKPOINTS, B_TRANSACTIONS = range(5)
# A checkpoint entry: [signed, cosignatures, consistency, general]
C_SIGNED, C_COSIGS, C_CONSISTENCY, C_GENERAL = range(4)
# A transaction entry: [transaction, checkpoint, leaf index, inclusion proof]
T_DATA, T_CHECKPOINT, T_INDEX, T_PROOF = range(4)

MAX_DEPTH = 6  # bundle, list, entry, general link, proof, hash
_UINT_MAX = (1 << 64) - 1


class EvidenceError(LightnodeError):
    """A bundle cannot be made, or cannot be decoded at all."""


# -- the CBOR subset of a bundle: unsigned integers, byte and text strings, arrays, null --------


def _head(mt: int, n: int) -> bytes:
    if n < 24:
        return bytes([mt << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([mt << 5 | ai]) + n.to_bytes(size, "big")
    raise ValueError("integer %d does not fit 64 bits" % n)


def _enc(x: Any, out: bytearray) -> None:
    if x is None:
        out.append(0xF6)
    elif type(x) is int:
        if x < 0:
            raise ValueError("a bundle holds no negative integers")
        out += _head(0, x)
    elif isinstance(x, bytes | bytearray):
        out += _head(2, len(x)) + bytes(x)
    elif isinstance(x, str):
        b = x.encode()
        out += _head(3, len(b)) + b
    elif isinstance(x, list | tuple):
        out += _head(4, len(x))
        for v in x:
            _enc(v, out)
    else:
        raise TypeError("%s is outside a bundle's CBOR subset" % type(x).__name__)


def encode(obj: Any) -> bytes:
    """``obj`` in the bundle's deterministic CBOR subset (RFC 8949 4.2.1 for those types)."""
    out = bytearray()
    _enc(obj, out)
    return bytes(out)


_TYPE_NAMES = {0: "an integer", 2: "a byte string", 3: "a text string", 4: "an array"}


class _Undecodable(Exception):
    def __init__(self, pos: int, what: str) -> None:
        self.pos, self.what = pos, what
        super().__init__("byte %d: %s" % (pos, what))


def _dec(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if pos >= len(data):
        raise _Undecodable(pos, "truncated")
    start = pos
    ib = data[pos]
    mt, ai = ib >> 5, ib & 31
    pos += 1
    if ib == 0xF6:
        return None, pos
    if mt in (1, 5, 6, 7):
        raise _Undecodable(start, "item type 0x%02x is outside a bundle's subset" % ib)
    if ai < 24:
        n = ai
    elif ai <= 27:
        size = 1 << (ai - 24)
        if pos + size > len(data):
            raise _Undecodable(start, "truncated")
        n = int.from_bytes(data[pos : pos + size], "big")
        pos += size
        if n < (24 if size == 1 else 1 << (4 * size)):
            raise _Undecodable(start, "non-canonical: a longer head than the value needs")
    elif ai == 31:
        raise _Undecodable(start, "indefinite length")
    else:
        raise _Undecodable(start, "reserved additional information %d" % ai)
    if mt == 0:
        return n, pos
    if mt in (2, 3):
        if n > len(data) - pos:
            raise _Undecodable(start, "a string of %d bytes with %d left" % (n, len(data) - pos))
        b = data[pos : pos + n]
        pos += n
        if mt == 2:
            return bytes(b), pos
        try:
            return b.decode("utf-8"), pos
        except UnicodeDecodeError:
            raise _Undecodable(start, "text is not UTF-8") from None
    # mt == 4
    if depth >= MAX_DEPTH:
        raise _Undecodable(start, "nested deeper than %d" % MAX_DEPTH)
    if n > len(data) - pos:
        raise _Undecodable(
            start, "an array of %d entries with %d bytes left" % (n, len(data) - pos)
        )
    items = []
    for _ in range(n):
        v, pos = _dec(data, pos, depth + 1)
        items.append(v)
    return _Arr(items, start), pos


class _Arr(list[Any]):
    """A decoded array that remembers where it started (for messages)."""

    def __init__(self, items: list[Any], at: int) -> None:
        super().__init__(items)
        self.at = at


# -- structure ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointEntry:
    signed: bytes
    cosignatures: tuple[bytes, ...]
    consistency: tuple[bytes, ...] | None  # from the previous checkpoint of the chain in the bundle
    general: tuple[int, int, tuple[bytes, ...]] | None  # (general checkpoint, leaf index, proof)


@dataclass(frozen=True)
class TxEntry:
    data: bytes
    checkpoint: int
    index: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class Bundle:
    registry: tuple[bytes, ...]
    checkpoints: tuple[CheckpointEntry, ...]
    transactions: tuple[TxEntry, ...]

    def encode(self) -> bytes:
        return encode(
            [
                FORMAT,
                VERSION,
                list(self.registry),
                [
                    [
                        c.signed,
                        list(c.cosignatures),
                        None if c.consistency is None else list(c.consistency),
                        None
                        if c.general is None
                        else [c.general[0], c.general[1], list(c.general[2])],
                    ]
                    for c in self.checkpoints
                ],
                [[t.data, t.checkpoint, t.index, list(t.proof)] for t in self.transactions],
            ]
        )


def _what(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, list):
        return "a %d-array" % len(x)
    return _TYPE_NAMES[{int: 0, bytes: 2, str: 3}[type(x)]]


def _at(x: Any, default: int) -> int:
    return x.at if isinstance(x, _Arr) else default


def _array(x: Any, n: int | None, where: str, at: int) -> _Arr:
    if not isinstance(x, _Arr) or (n is not None and len(x) != n):
        want = "an array" if n is None else "a %d-array" % n
        raise _Undecodable(_at(x, at), "%s: %s expected, got %s" % (where, want, _what(x)))
    return x


def _bytes_list(x: Any, where: str, at: int) -> tuple[bytes, ...]:
    a = _array(x, None, where, at)
    for i, v in enumerate(a):
        if type(v) is not bytes:
            raise _Undecodable(
                a.at, "%s[%d]: a byte string expected, got %s" % (where, i, _what(v))
            )
    return tuple(a)


def _uint(x: Any, where: str, at: int) -> int:
    if type(x) is not int:
        raise _Undecodable(at, "%s: an integer expected, got %s" % (where, _what(x)))
    return x


def decode(data: bytes) -> Bundle:
    """The bundle in ``data``, structure checked (nothing verified); EvidenceError("bundle: byte N: ...")."""
    try:
        return _decode(bytes(data))
    except _Undecodable as e:
        raise EvidenceError("bundle: %s" % e) from None


def _decode(data: bytes) -> Bundle:
    if not data:
        raise _Undecodable(0, "empty")
    top, end = _dec(data, 0, 0)
    top = _array(top, 5, "the bundle", 0)
    if end != len(data):
        raise _Undecodable(end, "%d bytes after the bundle" % (len(data) - end))
    if top[B_FORMAT] != FORMAT:
        raise _Undecodable(1, "not a %s bundle (format %r)" % (FORMAT, top[B_FORMAT]))
    if top[B_VERSION] != VERSION:
        raise _Undecodable(
            1, "bundle version %r, this verifier knows %d" % (top[B_VERSION], VERSION)
        )
    registry = _bytes_list(top[B_REGISTRY], "registry", top.at)
    cps = []
    for i, c in enumerate(_array(top[B_CHECKPOINTS], None, "checkpoints", top.at)):
        where = "checkpoints[%d]" % i
        c = _array(c, 4, where, top.at)
        if type(c[C_SIGNED]) is not bytes:
            raise _Undecodable(c.at, "%s: a signed checkpoint (bytes) expected" % where)
        cos = _bytes_list(c[C_COSIGS], where + " cosignatures", c.at)
        cons = None
        if c[C_CONSISTENCY] is not None:
            cons = _bytes_list(c[C_CONSISTENCY], where + " consistency", c.at)
        gen = None
        if c[C_GENERAL] is not None:
            g = _array(c[C_GENERAL], 3, where + " general", c.at)
            gen = (
                _uint(g[0], where + " general checkpoint", g.at),
                _uint(g[1], where + " general leaf", g.at),
                _bytes_list(g[2], where + " general proof", g.at),
            )
        cps.append(CheckpointEntry(c[C_SIGNED], cos, cons, gen))
    txs = []
    for i, t in enumerate(_array(top[B_TRANSACTIONS], None, "transactions", top.at)):
        where = "transactions[%d]" % i
        t = _array(t, 4, where, top.at)
        if type(t[T_DATA]) is not bytes:
            raise _Undecodable(t.at, "%s: transaction bytes expected" % where)
        txs.append(
            TxEntry(
                t[T_DATA],
                _uint(t[T_CHECKPOINT], where + " checkpoint", t.at),
                _uint(t[T_INDEX], where + " leaf index", t.at),
                _bytes_list(t[T_PROOF], where + " proof", t.at),
            )
        )
    return Bundle(registry, tuple(cps), tuple(txs))


# -- trust roots ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trust:
    """Trust roots given out of band: who signs checkpoints, who cosigns them, and the quorum.

    ``nodes`` and ``witnesses`` map kids to Ed25519 public keys;
    ``registry`` holds genesis admin public keys that anchor a registry on
    their own (optional). As JSON (``from_json``)::

        {"nodes": {"<kid hex>": "<key hex>"}, "witnesses": {...},
         "registry": ["<key hex>"], "quorum": 1}
    """

    nodes: Mapping[bytes, bytes]
    witnesses: Mapping[bytes, bytes]
    registry: frozenset[bytes] = frozenset()
    quorum: int = 1

    @classmethod
    def from_json(cls, obj: Any) -> Trust:
        if not isinstance(obj, dict):
            raise ValueError("trust: a JSON object expected")
        extra = set(obj) - {"nodes", "witnesses", "registry", "quorum"}
        if extra:
            raise ValueError("trust: unknown keys %s" % ", ".join(sorted(extra)))

        def keymap(name: str) -> dict[bytes, bytes]:
            m = obj.get(name, {})
            if not isinstance(m, dict):
                raise ValueError("trust %s: an object of kid hex -> key hex expected" % name)
            out = {}
            for k, v in m.items():
                kid, key = bytes.fromhex(k), bytes.fromhex(v)
                if not 1 <= len(kid) <= 32 or len(key) != 32:
                    raise ValueError(
                        "trust %s: kid %s: 1-32 byte kid, 32-byte key expected" % (name, k)
                    )
                out[kid] = key
            return out

        reg = obj.get("registry", [])
        if not isinstance(reg, list) or not all(isinstance(k, str) for k in reg):
            raise ValueError("trust registry: a list of public keys (hex) expected")
        regkeys = frozenset(bytes.fromhex(k) for k in reg)
        if any(len(k) != 32 for k in regkeys):
            raise ValueError("trust registry: 32-byte keys expected")
        quorum = obj.get("quorum", 1)
        if type(quorum) is not int or quorum < 1:
            raise ValueError("trust quorum: an integer of at least 1 expected")
        return cls(keymap("nodes"), keymap("witnesses"), regkeys, quorum)

    @classmethod
    def load(cls, path: str | Path) -> Trust:
        return cls.from_json(json.loads(Path(path).read_text()))

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": {k.hex(): v.hex() for k, v in sorted(self.nodes.items())},
            "witnesses": {k.hex(): v.hex() for k, v in sorted(self.witnesses.items())},
            "registry": sorted(k.hex() for k in self.registry),
            "quorum": self.quorum,
        }


# -- the report -----------------------------------------------------------------------------------


@dataclass
class Report:
    """What ``verify`` found: the anchors, each checkpoint and transaction, and every failure by object."""

    anchors: list[str] = field(default_factory=list)
    registry: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, what: str, why: str) -> None:
        self.failures.append("%s: %s" % (what, why))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "anchors": self.anchors,
            "registry": self.registry,
            "checkpoints": self.checkpoints,
            "transactions": self.transactions,
            "failures": self.failures,
            "warnings": self.warnings,
        }


def _short(b: bytes) -> str:
    h = b.hex()
    return h if len(h) <= 16 else h[:8] + "…" + h[-4:]


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    t = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(microseconds=us)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


@dataclass
class _Cp:
    """One checkpoint of the bundle as the verifier sees it."""

    n: int
    entry: CheckpointEntry
    label: str
    signed: cp.Signed | None = None
    good: bool = False  # decoded, producer trusted and signature good, quorum of trusted witnesses
    witnesses: list[bytes] = field(default_factory=list)

    @property
    def c(self) -> cp.Checkpoint:
        assert self.signed is not None
        return self.signed.checkpoint


# -- verification ---------------------------------------------------------------------------------


def verify(data: bytes, trust: Trust) -> Report:
    """Check a bundle offline against ``trust``; the report's ``failures`` name every object that fails."""
    r = Report()
    try:
        b = decode(data)
    except EvidenceError as e:
        r.failures.append(str(e))
        return r
    cps = _verify_checkpoints(b, trust, r)
    _verify_consistency(cps, r)
    _verify_general(cps, r)
    reg, added = _verify_registry(b, cps, trust, r)
    _verify_transactions(b, cps, reg, added, r)
    _anchors(cps, r)
    return r


def _verify_checkpoints(b: Bundle, trust: Trust, r: Report) -> list[_Cp]:
    out: list[_Cp] = []
    last: tuple[str, int] | None = None
    for n, e in enumerate(b.checkpoints):
        x = _Cp(n, e, "checkpoint entry %d" % n)
        out.append(x)
        try:
            x.signed = cp.decode(e.signed)
        except CheckpointError as err:
            r.fail(x.label, "does not decode: %s" % err)
            continue
        c = x.signed.checkpoint
        x.label = "checkpoint %s@%d" % (c.chain, c.size)
        key = (c.chain, c.size)
        if last is not None and key <= last:
            r.fail(x.label, "out of order: checkpoints go by chain, then size, each once")
        last = key
        ok = True
        producer = trust.nodes.get(x.signed.kid)
        if producer is None:
            r.fail(
                x.label, "signed by kid %s, which is not a trusted node key" % _short(x.signed.kid)
            )
            ok = False
        else:
            try:
                cp.verify_checkpoint(e.signed, {x.signed.kid: producer})
            except CheckpointError as err:
                r.fail(
                    x.label, "producer signature (kid %s): %s" % (_short(x.signed.kid), _why(err))
                )
                ok = False
        prev_kid = b""
        for i, raw in enumerate(e.cosignatures):
            where = "%s cosignature %d" % (x.label, i)
            try:
                w = cp.decode(raw)
            except CheckpointError as err:
                r.fail(where, "does not decode: %s" % err)
                ok = False
                continue
            where += " (kid %s)" % _short(w.kid)
            if w.kid <= prev_kid:
                r.fail(where, "out of order: cosignatures go by kid, each kid once")
                ok = False
            prev_kid = w.kid
            if w.payload != x.signed.payload:
                r.fail(where, "signs another checkpoint than the producer's")
                ok = False
                continue
            wkey = trust.witnesses.get(w.kid)
            if wkey is None:
                r.fail(where, "not a trusted witness key")
                ok = False
                continue
            try:
                cp.verify_checkpoint(raw, {w.kid: wkey})
            except CheckpointError as err:
                r.fail(where, _why(err))
                ok = False
                continue
            if w.kid != x.signed.kid:
                x.witnesses.append(w.kid)
        if len(x.witnesses) < trust.quorum:
            r.fail(
                x.label,
                "not final: %d cosignature(s) by trusted witnesses, the quorum is %d"
                % (len(x.witnesses), trust.quorum),
            )
            ok = False
        x.good = ok
        r.checkpoints.append(
            {
                "checkpoint": x.label[len("checkpoint ") :],
                "header_hash": x.signed.header_hash.hex(),
                "root": c.root.hex(),
                "time": c.time,
                "producer": x.signed.kid.hex(),
                "witnesses": [k.hex() for k in x.witnesses],
                "registry": None if c.registry is None else [c.registry[0], c.registry[1].hex()],
                "verified": ok,
            }
        )
    return out


def _why(err: CheckpointError) -> str:
    return "does not verify (Ed25519)" if err.reason == "bad-signature" else str(err)


def _by_chain(cps: Iterable[_Cp]) -> dict[str, list[_Cp]]:
    chains: dict[str, list[_Cp]] = {}
    for x in cps:
        if x.signed is not None:
            chains.setdefault(x.c.chain, []).append(x)
    for v in chains.values():
        v.sort(key=lambda x: x.c.size)
    return chains


def _verify_consistency(cps: list[_Cp], r: Report) -> None:
    for xs in _by_chain(cps).values():
        prev: _Cp | None = None
        for x in xs:
            proof = x.entry.consistency
            if prev is None:
                if proof is not None:
                    r.fail(
                        x.label,
                        "a consistency proof, but no earlier checkpoint of its chain in the bundle",
                    )
            elif proof is None:
                r.fail(x.label, "no consistency proof from %s" % prev.label)
            else:
                try:
                    merkle.verify_consistency(
                        prev.c.size, x.c.size, list(proof), prev.c.root, x.c.root
                    )
                except ProofError as err:
                    r.fail(x.label, "consistency proof from %s: %s" % (prev.label, err))
                if x.c.time < prev.c.time:
                    r.fail(x.label, "time earlier than %s's" % prev.label)
            prev = x


def _verify_general(cps: list[_Cp], r: Report) -> None:
    for x in cps:
        g = x.entry.general
        if x.signed is None or g is None:
            continue
        gi, leaf, proof = g
        if x.c.chain == cp.KIND_GENERAL:
            r.fail(x.label, "a general checkpoint cannot be committed on the general chain")
            continue
        if gi >= len(cps) or cps[gi].signed is None or cps[gi].c.chain != cp.KIND_GENERAL:
            r.fail(x.label, "its general-chain link names entry %d, not a general checkpoint" % gi)
            continue
        gx = cps[gi]
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(x.entry.signed), leaf, gx.c.size, list(proof), gx.c.root
            )
        except ProofError as err:
            r.fail(
                x.label,
                "inclusion proof (general leaf %d) does not lead to %s root: %s"
                % (leaf, gx.label, err),
            )


def _verify_registry(
    b: Bundle, cps: list[_Cp], trust: Trust, r: Report
) -> tuple[regmod.Registry | None, dict[bytes, int]]:
    n = len(b.registry)
    store = regmod.MemoryStore()
    reg = regmod.Registry(store)
    replayed = 0
    for k, raw in enumerate(b.registry):
        store.append(raw)
        try:
            reg.catch_up()
        except regmod.RegistryError as err:
            detail = (
                err.detail.split(": ", 1)[1]
                if err.detail.startswith("registry transaction")
                else err.detail
            )
            r.fail("registry transaction %d" % k, "%s: %s" % (err.reason, detail))
            break
        replayed += 1
    # roots of the registry's prefixes, for the sizes the checkpoints name
    want = sorted(
        {x.c.registry[0] for x in cps if x.signed is not None and x.c.registry is not None}
        | {x.c.size for x in cps if x.signed is not None and x.c.chain == cp.KIND_REGISTRY}
    )
    roots: dict[int, bytes] = {}
    tree = merkle.Tree()
    for size in want:
        if size > n:
            break
        while tree.size < size:
            tree.append(merkle.leaf_hash(b.registry[tree.size]))
        roots[size] = tree.root()
    anchored_by: list[str] = []
    for x in cps:
        if x.signed is None:
            continue
        claims: list[tuple[int, bytes, str]] = []
        if x.c.registry is not None:
            claims.append((x.c.registry[0], x.c.registry[1], "validated against registry"))
        if x.c.chain == cp.KIND_REGISTRY:
            claims.append((x.c.size, x.c.root, "registry chain at"))
        for size, root, what in claims:
            if size > n:
                r.fail(
                    x.label,
                    "%s size %d; the bundle holds %d registry transactions" % (what, size, n),
                )
            elif roots[size] != root:
                r.fail(
                    x.label,
                    "%s (%d, %s), which is not the root of the bundle's first %d registry transactions"
                    % (what, size, _short(root), size),
                )
            elif x.good and size:
                anchored_by.append("%s commits registry transactions 0..%d" % (x.label, size - 1))
    genesis = reg.genesis
    if genesis is not None and trust.registry:
        gkey = genesis.body.get("key")
        if gkey in trust.registry:
            anchored_by.append("the genesis admin key %s is a trust root" % _short(bytes(gkey)))
        else:
            r.fail(
                "registry transaction 0",
                "the genesis admin key is not among the trusted registry roots",
            )
    if n and not anchored_by:
        r.fail(
            "registry",
            "not anchored: no trusted final checkpoint commits it and its genesis admin key is not a trust root",
        )
    added: dict[bytes, int] = {}
    for ch in reg.history():
        if ch.action == regmod.A_DEVICE_ADD:
            added[bytes.fromhex(ch.subject)] = ch.seq
    r.registry = {
        "transactions": n,
        "replayed": replayed,
        "head": reg.head.hex(),
        "genesis_admin": None if genesis is None else genesis.body.get("name"),
        "genesis_key": None if genesis is None else bytes(genesis.body.get("key", b"")).hex(),
        "anchored_by": anchored_by,
    }
    return (reg if replayed == n else None), added


def _verify_transactions(
    b: Bundle, cps: list[_Cp], reg: regmod.Registry | None, added: dict[bytes, int], r: Report
) -> None:
    chains = _by_chain(cps)
    seen: set[tuple[bytes, int]] = set()
    last: tuple[str, int] | None = None
    for k, t in enumerate(b.transactions):
        label = "transaction %d (leaf %d)" % (k, t.index)
        row: dict[str, Any] = {"n": k, "index": t.index, "verified": False}
        r.transactions.append(row)
        fails_before = len(r.failures)
        try:
            tx = wire.decode(t.data)
        except WireError as err:
            r.fail(label, "does not decode: %s" % err)
            continue
        label = "transaction %d (device %s, seq %d)" % (k, _short(tx.device_id), tx.seq)
        row.update(
            device=tx.device_id.hex(),
            seq=tx.seq,
            id=tx.id.hex(),
            kind=tx.kind_name,
            device_time=tx.time.us,
            chain=cp.SEGMENT_PREFIX + tx.segment,
        )
        if t.checkpoint >= len(cps) or cps[t.checkpoint].signed is None:
            r.fail(label, "names checkpoint entry %d, which is not a checkpoint" % t.checkpoint)
            continue
        x = cps[t.checkpoint]
        chain = cp.SEGMENT_PREFIX + tx.segment
        if x.c.chain != chain:
            r.fail(label, "a transaction of %s, proved against %s" % (chain, x.label))
            continue
        if last is not None and (chain, t.index) <= last:
            r.fail(label, "out of order: transactions go by chain, then leaf index, each once")
        last = (chain, t.index)
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(t.data), t.index, x.c.size, list(t.proof), x.c.root
            )
        except ProofError as err:
            r.fail(label, "inclusion proof does not lead to %s root: %s" % (x.label, err))
        if (tx.device_id, tx.seq) in seen:
            r.fail(label, "a second transaction under this device and seq")
        seen.add((tx.device_id, tx.seq))
        _check_device_key(label, tx, x, reg, added, r)
        # the ledger time bracket, from the bundle's checkpoints of the chain
        before = after = None
        for y in chains.get(chain, []):
            if y.c.size <= t.index:
                before = y
            elif after is None:
                after = y
        if after is None:  # the index is past every checkpoint: the proof has failed already
            continue
        tight = (
            (after.c.prev == before.signed.header_hash)
            if before and before.signed
            else (after.c.prev == cp.GENESIS)
        )
        row.update(
            checkpoint=x.label[len("checkpoint ") :],
            bracket=[before.c.time if before else None, after.c.time],
            bracket_iso=[_iso(before.c.time) if before else None, _iso(after.c.time)],
            bracket_adjacent=tight,
        )
        if not (after.good and (before is None or before.good)):
            r.warnings.append("%s: its time bracket rests on a checkpoint that failed" % label)
        row["verified"] = len(r.failures) == fails_before and x.good


def _check_device_key(
    label: str,
    tx: wire.Transaction,
    x: _Cp,
    reg: regmod.Registry | None,
    added: dict[bytes, int],
    r: Report,
) -> None:
    if reg is None:
        r.fail(label, "device key unknown: the bundle's registry does not replay")
        return
    dev = reg.device(tx.device_id)
    if dev is None:
        r.fail(label, "device not in the registry (%d transactions)" % len(reg))
        return
    if x.c.registry is not None and added.get(tx.device_id, 0) >= x.c.registry[0]:
        r.fail(
            label,
            "device added in registry transaction %d, after the registry (size %d) %s was validated against"
            % (added[tx.device_id], x.c.registry[0], x.label),
        )
    period = next((p for p in dev.keys if p.covers(tx.seq)), None)
    if period is None:
        r.fail(label, "no key of the device covers seq %d" % tx.seq)
        return
    try:
        tx.verify(period.public_key)
    except WireError as err:
        for p in dev.keys:
            if p is period:
                continue
            try:
                tx.verify(p.public_key)
            except WireError:
                continue
            r.fail(
                label,
                "signed with the device key for seq %d..%s, not with the key valid for seq %d (%s)"
                % (
                    p.from_seq,
                    "" if p.below is None else p.below - 1,
                    tx.seq,
                    _short(period.public_key),
                ),
            )
            return
        r.fail(label, "signature: %s" % err)
        return
    if dev.quarantined is not None and tx.time.us >= dev.quarantined[0]:
        r.warnings.append(
            "%s: the device is quarantined, compromised from %s; this transaction is later"
            % (label, _iso(dev.quarantined[0]))
        )
    if dev.revoked is not None:
        r.warnings.append("%s: the device was revoked (%s)" % (label, dev.revoked[0]))
    if dev.segment != tx.segment:
        r.warnings.append("%s: the device is registered on segment %s" % (label, dev.segment))


def _anchors(cps: list[_Cp], r: Report) -> None:
    linked = {
        x.entry.general[0] for x in cps if x.entry.general is not None and x.signed is not None
    }
    for x in cps:
        if x.signed is None or not x.good:
            continue
        top = x.c.chain == cp.KIND_GENERAL or x.entry.general is None
        if x.entry.general is None and x.c.chain != cp.KIND_GENERAL:
            r.warnings.append("%s: not committed on the general chain in this bundle" % x.label)
        if not top or (x.c.chain == cp.KIND_GENERAL and x.n not in linked):
            continue
        r.anchors.append(
            "%s (header %s, %s) signed by node %s, cosigned by %s"
            % (
                x.label,
                _short(x.signed.header_hash),
                _iso(x.c.time),
                x.signed.kid.hex(),
                ", ".join(k.hex() for k in x.witnesses),
            )
        )


# -- export ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which transactions go into a bundle: device, device time ``since <= t < until`` (us), kind, chain."""

    device: bytes | None = None
    since: int | None = None
    until: int | None = None
    kind: int | None = None
    chain: str | None = None


@dataclass(frozen=True)
class Exported:
    data: bytes
    transactions: int
    checkpoints: int
    registry: int
    left_out: tuple[str, ...]  # transactions not yet in a final block, by chain[index]


def _tree(store: Store, chain: str) -> merkle.Tree:
    head = store.head(chain)
    if head is None:
        return merkle.Tree()
    f = head.frontier
    hashes = [f[i : i + merkle.HASH_SIZE] for i in range(0, len(f), merkle.HASH_SIZE)]
    return merkle.Tree(lambda s, e: store.leaf_hashes(chain, s, e), head.size, hashes)


def export(
    store: Store,
    registry: regmod.Registry,
    selection: Selection = Selection(),
    out: str | Path | None = None,
) -> Exported:
    """A bundle of the selected transactions with everything needed to check them; written to ``out`` if given.

    A transaction not yet in a final block cannot be proven final and is
    left out (``Exported.left_out`` names each).
    """
    s = selection
    picked: list[tuple[Any, Block]] = []
    left_out: list[str] = []
    need: dict[tuple[str, int], Block] = {}
    for e in store.entries(s.chain, s.device, s.since, s.until, s.kind):
        if e.device is None:
            continue
        before, after = store.bracket(e.chain, e.index)
        if after is None:
            left_out.append("%s[%d]" % (e.chain, e.index))
            continue
        picked.append((e, after))
        need[(after.chain, after.size)] = after
        if before is not None:
            need[(before.chain, before.size)] = before
    devices = {e.device for e, _ in picked}
    # the registry: from the genesis up to what the checkpoints name and the devices' changes
    reg_txs = [t.raw for t in registry.transactions()]
    upto = 0
    for t in registry.transactions():
        body_id = t.body.get("id")
        if (isinstance(body_id, bytes) and body_id in devices) or t.action.startswith("node-"):
            upto = max(upto, t.seq + 1)
    reg_head = store.head(cp.KIND_REGISTRY)
    if reg_head is not None:
        for blk in store.blocks(cp.KIND_REGISTRY):
            if blk.final and blk.size >= upto:
                need[(blk.chain, blk.size)] = blk
                upto = max(upto, blk.size)
                break
    for blk in list(need.values()):
        c = cp.decode(blk.signed).checkpoint
        if c.registry is not None:
            upto = max(upto, c.registry[0])
    # the general chain: the first final general block committing each sidechain checkpoint
    general_index: dict[bytes, int] = {}
    if store.head(cp.KIND_GENERAL) is not None:
        for g in store.entries(chain=cp.KIND_GENERAL):
            general_index.setdefault(merkle.leaf_hash(g.data), g.index)
    links: dict[tuple[str, int], tuple[Block, int]] = {}
    for key, blk in list(need.items()):
        gi = general_index.get(merkle.leaf_hash(blk.signed))
        if gi is None:
            continue
        gblk = store.bracket(cp.KIND_GENERAL, gi)[1]
        if gblk is None:
            continue
        need[(gblk.chain, gblk.size)] = gblk
        links[key] = (gblk, gi)
    for blk in need.values():
        c = cp.decode(blk.signed).checkpoint
        if c.registry is not None:
            upto = max(upto, c.registry[0])
    if upto > len(reg_txs):
        raise EvidenceError(
            "the ledger names registry size %d; the registry holds %d transactions"
            % (upto, len(reg_txs))
        )
    order = sorted(need)
    pos = {key: i for i, key in enumerate(order)}
    trees: dict[str, merkle.Tree] = {}

    def tree(chain: str) -> merkle.Tree:
        if chain not in trees:
            trees[chain] = _tree(store, chain)
        return trees[chain]

    entries: list[CheckpointEntry] = []
    for i, key in enumerate(order):
        blk = need[key]
        cos = sorted(
            (raw for _, raw in store.cosignatures(blk.chain, blk.height)),
            key=lambda b: cp.decode(b).kid,
        )
        consistency = None
        if i and order[i - 1][0] == blk.chain:
            consistency = tuple(tree(blk.chain).consistency_proof(order[i - 1][1], blk.size))
        general = None
        if key in links:
            gblk, gi = links[key]
            proof = tree(cp.KIND_GENERAL).inclusion_proof(gi, gblk.size)
            general = (pos[(gblk.chain, gblk.size)], gi, tuple(proof))
        entries.append(CheckpointEntry(blk.signed, tuple(cos), consistency, general))
    txs = [
        TxEntry(
            e.data,
            pos[(blk.chain, blk.size)],
            e.index,
            tuple(tree(e.chain).inclusion_proof(e.index, blk.size)),
        )
        for e, blk in sorted(picked, key=lambda p: (p[0].chain, p[0].index))
    ]
    bundle = Bundle(tuple(reg_txs[:upto]), tuple(entries), tuple(txs))
    data = bundle.encode()
    if out is not None:
        Path(out).write_bytes(data)
    return Exported(data, len(txs), len(entries), upto, tuple(left_out))
