"""The registry: devices, operators and the full node's keys, as the fold of signed registry transactions.

Every change is a registry transaction: a tagged COSE_Sign1 signed by an
active ``admin`` operator (the first admin's own addition, the genesis, is
self-signed), chained to the one before it by SHA-256. The registry's
state is never stored, only the transactions; opening a registry replays
them all and refuses one whose chain, signatures or authorities do not
hold. docs/registry.md is the format.

    >>> from lightnode import keys, registry
    >>> reg = registry.open_registry(":memory:")
    >>> seed = keys.generate_seed()
    >>> reg.init_admin("alice", keys.public_key(seed), seed)
    >>> admin = reg.as_operator("alice", seed)
    >>> dev = reg.add_device(b"\\x01" * 8, keys.public_key(keys.generate_seed()), "feeder-7",
    ...                      "pico_w", "0.1.0", "ab" * 32, admin)
    >>> reg.key_for(dev.device_id, 0) == dev.public_key
    True

Operator actions (login, emergency shutdown, control) are wire
transactions of kind ``KIND_OPERATOR`` signed with the operator's key;
``Registry.check_operator_action`` accepts them or refuses them with a
``RegistryError`` and records the refusal with its evidence bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sqlite3
import threading
import time as _time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cbor2
from lightnode import wire as codec
from lightnode.errors import LightnodeError, WireError
from lightnode.firmware.ln import wire as spec
from nacl.signing import SigningKey

__all__ = [
    "ACTIONS",
    "ROLES",
    "Change",
    "Device",
    "KeyPeriod",
    "MemoryStore",
    "NodeKey",
    "Operator",
    "OperatorAction",
    "Registry",
    "RegistryError",
    "RegistrySigner",
    "RegistryStore",
    "Rejection",
    "SQLiteStore",
    "decode_registry_tx",
    "open_registry",
    "operator_action",
    "operator_id",
]

REGISTRY_VERSION = 1

# Registry transaction payload keys (docs/registry.md).
K_VERSION = 0
K_SEQ = 1
K_PREV = 2
K_TIME = 3
K_ACTION = 4
K_BODY = 5
_PAYLOAD_KEYS = {K_VERSION, K_SEQ, K_PREV, K_TIME, K_ACTION, K_BODY}

# Registry actions.
A_OPERATOR_ADD = "operator-add"
A_OPERATOR_REVOKE = "operator-revoke"
A_OPERATOR_ROTATE = "operator-rotate"
A_DEVICE_ADD = "device-add"
A_DEVICE_REVOKE = "device-revoke"
A_DEVICE_ROTATE = "device-rotate"
A_DEVICE_QUARANTINE = "device-quarantine"
A_NODE_ADD = "node-add"
A_NODE_REVOKE = "node-revoke"
A_NODE_ROTATE = "node-rotate"
A_FILTER_PUBLISH = "filter-publish"  # a segment's signed device filter: its hash, epoch and not-after

# Operator roles, and the operator actions each may take. Only an admin
# changes the registry.
ROLE_ADMIN = "admin"
ROLE_OPERATOR = "operator"
ROLE_AUDITOR = "auditor"
ACT_LOGIN = "login"
ACT_SHUTDOWN = "emergency-shutdown"
ACT_CONTROL = "control"
ACTIONS = (ACT_LOGIN, ACT_SHUTDOWN, ACT_CONTROL)
ROLES: dict[str, frozenset[str]] = {
    ROLE_ADMIN: frozenset(ACTIONS),
    ROLE_OPERATOR: frozenset(ACTIONS),
    ROLE_AUDITOR: frozenset((ACT_LOGIN,)),
}

# Operator action body keys (kind 3).
OA_ACTION = 0
OA_TARGET = 1
OA_ARGS = 2

# A node's registry-role key may sign only these registry changes (the
# full node quarantines a cloned device on its own evidence).
_NODE_MAY = frozenset((A_DEVICE_QUARANTINE, A_FILTER_PUBLISH))

OPERATOR_ID_BYTES = 8
KID_BYTES = spec.KID_BYTES
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
_NODE_NAME = _NAME
_TEXT_LIMIT = 256
_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
ZERO_HASH = bytes(spec.HASH_BYTES)

# Why something was refused (RegistryError.reason, and the rejection log).
R_MALFORMED = "malformed"  # not a registry transaction of our format
R_CHAIN = "broken-chain"  # sequence number, previous hash or time out of order
R_SIGNATURE = "bad-signature"
R_UNKNOWN_SIGNER = "unknown-signer"  # no active key with that kid
R_NOT_ADMIN = "not-admin"
R_CONFLICT = "conflict"  # the change contradicts the registry (exists, unknown, revoked)
R_UNKNOWN_OPERATOR = "unknown-operator"
R_REVOKED_OPERATOR = "revoked-operator"
R_KEY_VALIDITY = "key-not-valid"  # no key of the operator's is valid at that sequence number
R_ROLE = "not-permitted"  # action outside the operator's role
R_ACTION = "bad-action"  # not an operator action of our format


class RegistryError(LightnodeError):
    """A registry or a registry change was refused; ``reason`` says why (one of the ``R_*`` here)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__("%s: %s" % (reason, detail) if detail else reason)


def operator_id(name: str) -> bytes:
    """The device id an operator's actions carry: the first 8 bytes of SHA-256 of the name (UTF-8)."""
    return hashlib.sha256(name.encode()).digest()[:OPERATOR_ID_BYTES]


def key_id(public_key: bytes) -> bytes:
    """A key's kid in a registry transaction: the first 8 bytes of SHA-256 of the public key."""
    return hashlib.sha256(bytes(public_key)).digest()[:KID_BYTES]


def now_us() -> int:
    return _time.time_ns() // 1000


# -- what the registry holds ---------------------------------------------------------------


@dataclass(frozen=True)
class KeyPeriod:
    """One key and the sequence numbers it signs: ``from_seq <= seq < below`` (``below`` None: open)."""

    public_key: bytes
    from_seq: int
    below: int | None
    added_at: int  # registry time, us

    def covers(self, seq: int) -> bool:
        return self.from_seq <= seq and (self.below is None or seq < self.below)


@dataclass(frozen=True)
class Device:
    device_id: bytes
    public_key: bytes  # the current key
    segment: str
    board: str
    firmware: str
    pointmap_digest: str
    registered_by: str
    registered_at: int  # registry time, us
    revoked: tuple[str, int] | None = None  # (reason, registry time us)
    quarantined: tuple[int, tuple[bytes, ...]] | None = None  # (compromised at us, evidence tx ids)
    keys: tuple[KeyPeriod, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id.hex(),
            "public_key": self.public_key.hex(),
            "segment": self.segment,
            "board": self.board,
            "firmware": self.firmware,
            "pointmap_digest": self.pointmap_digest,
            "registered_by": self.registered_by,
            "registered_at": self.registered_at,
            "revoked": None
            if self.revoked is None
            else {"reason": self.revoked[0], "at": self.revoked[1]},
            "quarantined": None
            if self.quarantined is None
            else {
                "compromised_at": self.quarantined[0],
                "evidence": [e.hex() for e in self.quarantined[1]],
            },
            "keys": [_period_json(k) for k in self.keys],
        }


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    public_key: bytes  # the current key
    added_by: str
    added_at: int
    revoked: tuple[str, int] | None = None
    keys: tuple[KeyPeriod, ...] = ()  # by the operator's own action sequence numbers

    @property
    def id(self) -> bytes:
        return operator_id(self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id.hex(),
            "role": self.role,
            "public_key": self.public_key.hex(),
            "added_by": self.added_by,
            "added_at": self.added_at,
            "revoked": None
            if self.revoked is None
            else {"reason": self.revoked[0], "at": self.revoked[1]},
            "keys": [_period_json(k) for k in self.keys],
        }


@dataclass(frozen=True)
class FilterRecord:
    """The filter a node published for a segment: epoch, not-after (s), SHA-256 of the signed filter."""

    segment: str
    epoch: int
    not_after: int
    hash: bytes
    published_by: str
    published_at: int


@dataclass(frozen=True)
class NodeKey:
    """One key of a full node, for one role; it signs objects timed ``valid_from <= t < valid_until`` (None: open)."""

    node: str
    role: str
    public_key: bytes
    added_by: str
    added_at: int
    valid_until: int | None = None  # us; set when the key is rotated out
    revoked: tuple[str, int] | None = None
    valid_from: int | None = None  # us; a key rotated in takes over where the old one ends

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "role": self.role,
            "public_key": self.public_key.hex(),
            "added_by": self.added_by,
            "added_at": self.added_at,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "revoked": None
            if self.revoked is None
            else {"reason": self.revoked[0], "at": self.revoked[1]},
        }


def _period_json(k: KeyPeriod) -> dict[str, Any]:
    return {
        "public_key": k.public_key.hex(),
        "from_seq": k.from_seq,
        "below": k.below,
        "added_at": k.added_at,
    }


@dataclass(frozen=True)
class Rejection:
    """A refused thing kept as evidence: what was refused, why, and its bytes."""

    index: int
    at: int  # us
    source: str  # "operator", "registry", ...
    reason: str
    detail: str
    evidence: bytes


@dataclass(frozen=True)
class RegistryTx:
    """A registry transaction decoded and checked for form (not yet for signature or authority)."""

    raw: bytes
    id: bytes  # SHA-256 of raw
    protected: bytes
    kid: bytes
    payload: bytes
    signature: bytes
    seq: int
    prev: bytes
    time: int
    action: str
    body: dict[str, Any]
    sign1: codec.Sign1 = field(repr=False)


@dataclass(frozen=True)
class Change:
    """One registry transaction as history: who changed what, when."""

    seq: int
    time: int  # registry time, us
    action: str
    signer: str  # the operator's name, or "node <name>"
    subject: str  # the device id (hex), operator or node the change is about
    id: bytes  # SHA-256 of the transaction

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "action": self.action,
            "signer": self.signer,
            "subject": self.subject,
            "id": self.id.hex(),
        }


def _subject(body: dict[str, Any]) -> str:
    for k in ("id", "name", "node"):
        v = body.get(k)
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, str):
            return v
    return ""


@dataclass(frozen=True)
class OperatorAction:
    """An operator action that passed: what, on what, by which transaction."""

    action: str
    target: str | bytes
    args: dict[Any, Any]
    segment: str
    seq: int
    time: int  # us, the operator's clock
    id: bytes  # the wire transaction id
    tx: codec.Transaction = field(repr=False)


# -- stores ----------------------------------------------------------------------------------


class RegistryStore(Protocol):
    """Where registry transactions are kept, in order; the ledger's registry sidechain will be one."""

    def append(self, tx_bytes: bytes, expect_index: int | None = None) -> int:
        """Append; the new transaction's index. ``expect_index``: refuse (RegistryError) unless it is that."""
        ...

    def transactions(self, since: int = 0) -> Iterator[bytes]: ...

    def record_rejection(
        self, source: str, reason: str, detail: str, evidence: bytes, at: int
    ) -> int: ...

    def rejections(self) -> list[Rejection]: ...

    def close(self) -> None: ...


class MemoryStore:
    """A store in memory (tests, and ``open_registry(":memory:")``)."""

    def __init__(self) -> None:
        self._txs: list[bytes] = []
        self._rejections: list[Rejection] = []
        self._lock = threading.Lock()

    def append(self, tx_bytes: bytes, expect_index: int | None = None) -> int:
        with self._lock:
            n = len(self._txs)
            if expect_index is not None and expect_index != n:
                raise RegistryError(R_CHAIN, f"index {n} is next, not {expect_index}")
            self._txs.append(bytes(tx_bytes))
            return n

    def transactions(self, since: int = 0) -> Iterator[bytes]:
        return iter(list(self._txs[since:]))

    def record_rejection(
        self, source: str, reason: str, detail: str, evidence: bytes, at: int
    ) -> int:
        with self._lock:
            r = Rejection(len(self._rejections), at, source, reason, detail, bytes(evidence))
            self._rejections.append(r)
            return r.index

    def rejections(self) -> list[Rejection]:
        return list(self._rejections)

    def close(self) -> None:
        pass


class SQLiteStore:
    """Registry transactions in one SQLite file (WAL), appended in one write transaction each."""

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS registry_tx (idx INTEGER PRIMARY KEY, tx BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS rejection (
            idx INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, source TEXT NOT NULL,
            reason TEXT NOT NULL, detail TEXT NOT NULL, evidence BLOB NOT NULL);
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(self.SCHEMA)

    def append(self, tx_bytes: bytes, expect_index: int | None = None) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (n,) = self._db.execute("SELECT COUNT(*) FROM registry_tx").fetchone()
                if expect_index is not None and expect_index != n:
                    raise RegistryError(R_CHAIN, f"index {n} is next, not {expect_index}")
                self._db.execute(
                    "INSERT INTO registry_tx (idx, tx) VALUES (?, ?)", (n, bytes(tx_bytes))
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return int(n)

    def transactions(self, since: int = 0) -> Iterator[bytes]:
        with self._lock:
            rows = self._db.execute(
                "SELECT tx FROM registry_tx WHERE idx >= ? ORDER BY idx", (since,)
            ).fetchall()
        return (bytes(r[0]) for r in rows)

    def record_rejection(
        self, source: str, reason: str, detail: str, evidence: bytes, at: int
    ) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO rejection (at, source, reason, detail, evidence) VALUES (?, ?, ?, ?, ?)",
                (at, source, reason, detail, bytes(evidence)),
            )
            return int(cur.lastrowid or 0) - 1

    def rejections(self) -> list[Rejection]:
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, at, source, reason, detail, evidence FROM rejection ORDER BY idx"
            ).fetchall()
        return [Rejection(i - 1, at, s, r, d, bytes(e)) for i, at, s, r, d, e in rows]

    def close(self) -> None:
        self._db.close()


# -- registry transactions -------------------------------------------------------------------


def _protected(kid: bytes) -> bytes:
    return codec.encode(
        {spec.H_ALG: spec.ALG_EDDSA, spec.H_CTY: spec.CTY_REGISTRY, spec.H_KID: kid}
    )


def make_registry_tx(
    seed: bytes, seq: int, prev: bytes, time_us: int, action: str, body: dict[str, Any]
) -> bytes:
    """One signed registry transaction (docs/registry.md)."""
    key = SigningKey(bytes(seed))
    protected = _protected(key_id(bytes(key.verify_key)))
    payload = codec.encode(
        {
            K_VERSION: REGISTRY_VERSION,
            K_SEQ: seq,
            K_PREV: prev,
            K_TIME: time_us,
            K_ACTION: action,
            K_BODY: body,
        }
    )
    sig = key.sign(codec.sig_structure(protected, payload)).signature
    # Tag 18 in one byte (0xd2): the encoder knows no tags, the envelope is the only one.
    return b"\xd2" + codec.encode([protected, {}, payload, sig])


def decode_registry_tx(data: bytes) -> RegistryTx:
    """A registry transaction checked for form; RegistryError(malformed) if it is not one."""
    try:
        s1 = codec.decode_cose_sign1(bytes(data))
    except WireError as e:
        raise RegistryError(R_MALFORMED, str(e)) from None
    h = s1.header
    if (
        set(h) != {spec.H_ALG, spec.H_CTY, spec.H_KID}
        or h[spec.H_ALG] != spec.ALG_EDDSA
        or type(h[spec.H_ALG]) is not int
        or h[spec.H_CTY] != spec.CTY_REGISTRY
        or type(h[spec.H_KID]) is not bytes
        or len(h[spec.H_KID]) != KID_BYTES
    ):
        raise RegistryError(R_MALFORMED, "protected header not {1: -8, 3: registry, 4: kid}")
    if s1.unprotected:
        raise RegistryError(R_MALFORMED, "unprotected header not empty")
    if s1.payload is None:
        raise RegistryError(R_MALFORMED, "detached payload")
    if len(s1.signature) != spec.ED25519_SIG_BYTES:
        raise RegistryError(R_MALFORMED, "signature not 64 bytes")
    try:
        codec.scan(s1.payload)
        p = cbor2.loads(s1.payload)
    except (WireError, ValueError, cbor2.CBORDecodeError) as e:
        raise RegistryError(R_MALFORMED, f"payload: {e}") from None
    try:
        canonical = codec.encode(p) == s1.payload
    except (TypeError, ValueError):
        canonical = False
    if not canonical:
        raise RegistryError(R_MALFORMED, "payload not deterministic CBOR")
    if type(p) is not dict or set(p) != _PAYLOAD_KEYS:
        raise RegistryError(R_MALFORMED, "payload keys not 0..5")
    if p[K_VERSION] != REGISTRY_VERSION:
        raise RegistryError(R_MALFORMED, f"version {p[K_VERSION]!r}")
    if not _uint(p[K_SEQ]) or not _uint(p[K_TIME]):
        raise RegistryError(R_MALFORMED, "seq or time not a uint")
    if type(p[K_PREV]) is not bytes or len(p[K_PREV]) != spec.HASH_BYTES:
        raise RegistryError(R_MALFORMED, "prev not 32 bytes")
    if type(p[K_ACTION]) is not str or type(p[K_BODY]) is not dict:
        raise RegistryError(R_MALFORMED, "action not text or body not a map")
    if not all(type(k) is str for k in p[K_BODY]):
        raise RegistryError(R_MALFORMED, "body keys not text")
    raw = bytes(data)
    return RegistryTx(
        raw=raw,
        id=hashlib.sha256(raw).digest(),
        protected=s1.protected,
        kid=h[spec.H_KID],
        payload=s1.payload,
        signature=s1.signature,
        seq=p[K_SEQ],
        prev=p[K_PREV],
        time=p[K_TIME],
        action=p[K_ACTION],
        body=p[K_BODY],
        sign1=s1,
    )


def _uint(x: object) -> bool:
    return type(x) is int and 0 <= x < 1 << 63


# -- signers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrySigner:
    """Who signs a registry change: an operator (``kind="operator"``) or a node's registry key."""

    kind: str  # "operator" or "node"
    name: str
    seed: bytes = field(repr=False)

    @property
    def public_key(self) -> bytes:
        return bytes(SigningKey(self.seed).verify_key)


SignerLike = RegistrySigner | tuple[str, bytes]


def _as_signer(signer: SignerLike) -> RegistrySigner:
    if isinstance(signer, RegistrySigner):
        return signer
    if isinstance(signer, tuple) and len(signer) == 2:
        name, seed = signer
        return RegistrySigner("operator", name, _seed(seed))
    raise TypeError("signer: a RegistrySigner or (operator name, seed) expected")


def _seed(seed: Any) -> bytes:
    if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
        raise ValueError("seed: 32 bytes expected")
    return bytes(seed)


# -- checks of a caller's arguments ---------------------------------------------------------


def _check_name(name: Any, what: str = "operator name") -> str:
    if type(name) is not str or not _NAME.match(name):
        raise ValueError(f"{what} {name!r}: 1-64 characters of a-z 0-9 . _ -, starting a-z or 0-9")
    return name


def _check_key(key: Any, what: str = "public key") -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != spec.ED25519_KEY_BYTES:
        raise ValueError(f"{what}: {spec.ED25519_KEY_BYTES} bytes expected")
    return bytes(key)


def _check_device_id(device_id: Any) -> bytes:
    if (
        not isinstance(device_id, bytes | bytearray)
        or not 1 <= len(device_id) <= spec.MAX_DEVICE_ID
    ):
        raise ValueError(f"device id: 1-{spec.MAX_DEVICE_ID} bytes expected")
    return bytes(device_id)


def _check_segment(segment: Any) -> str:
    if (
        type(segment) is not str
        or not 1 <= len(segment) <= spec.MAX_SEGMENT
        or not set(segment) <= _SEGMENT_CHARS
    ):
        raise ValueError(f"segment {segment!r}: 1-{spec.MAX_SEGMENT} characters of a-z 0-9 -")
    return segment


def _check_text(text: Any, what: str) -> str:
    if type(text) is not str or not 1 <= len(text) <= _TEXT_LIMIT:
        raise ValueError(f"{what}: 1-{_TEXT_LIMIT} characters of text expected")
    return text


def _check_uint(n: Any, what: str) -> int:
    if not _uint(n):
        raise ValueError(f"{what}: an integer 0 <= n < 2^63 expected")
    return int(n)


# -- the registry ---------------------------------------------------------------------------


class Registry:
    """The registry's state, folded from its store's transactions; every change a new transaction."""

    def __init__(self, store: RegistryStore, clock: Callable[[], int] = now_us) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.RLock()
        self._devices: dict[bytes, Device] = {}
        self._operators: dict[str, Operator] = {}
        self._node_keys: list[NodeKey] = []
        self._filters: dict[str, FilterRecord] = {}  # segment -> the newest published filter
        self._kids: dict[bytes, tuple[str, str]] = {}  # kid -> ("operator"|"node", name)
        self._device_keys: dict[bytes, bytes] = {}  # public key -> device id
        self._all_keys: set[bytes] = set()  # every key ever registered: none is used twice
        self._count = 0
        self._head = ZERO_HASH
        self._time = 0
        self._genesis: RegistryTx | None = None
        self._history: list[Change] = []
        self.catch_up()

    # -- replay ----------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Fold in transactions another process appended; how many. RegistryError if one does not hold."""
        with self._lock:
            n = 0
            for raw in self.store.transactions(self._count):
                try:
                    self._check(decode_registry_tx(raw))()
                except RegistryError as e:
                    raise RegistryError(
                        e.reason, f"registry transaction {self._count}: {e.detail}"
                    ) from None
                n += 1
            return n

    def _check(self, tx: RegistryTx) -> Callable[[], None]:
        """Every check of ``tx`` against the state, nothing changed; the returned call applies it."""
        if tx.seq != self._count:
            raise RegistryError(R_CHAIN, f"sequence number {tx.seq}, expected {self._count}")
        if tx.prev != self._head:
            raise RegistryError(R_CHAIN, "previous hash differs from the transaction before")
        if tx.time < self._time:
            raise RegistryError(R_CHAIN, "time earlier than the transaction before")
        kind = "operator"
        if tx.seq == 0:
            signer_name, apply = self._check_genesis(tx)
        else:
            who = self._kids.get(tx.kid)
            if who is None:
                raise RegistryError(R_UNKNOWN_SIGNER, f"no active key with kid {tx.kid.hex()}")
            kind, signer_name = who
            if kind == "operator":
                op = self._operators[signer_name]
                key = op.public_key
                if op.role != ROLE_ADMIN:
                    raise RegistryError(R_NOT_ADMIN, f"operator {signer_name} is {op.role}")
            else:
                nk = self._node_key_by_kid(tx.kid)
                key = nk.public_key
                if tx.action not in _NODE_MAY:
                    raise RegistryError(R_NOT_ADMIN, f"a node key may not sign {tx.action}")
            self._verify(tx, key)
            handler = self._handlers().get(tx.action)
            if handler is None:
                raise RegistryError(R_MALFORMED, f"unknown action {tx.action!r}")
            try:
                apply = handler(tx, signer_name)
            except (KeyError, TypeError, ValueError) as e:
                raise RegistryError(R_MALFORMED, f"{tx.action} body: {e}") from None

        change = Change(
            tx.seq,
            tx.time,
            tx.action,
            signer_name if kind == "operator" else "node " + signer_name,
            _subject(tx.body),
            tx.id,
        )

        def commit() -> None:
            apply()
            self._history.append(change)
            self._count += 1
            self._head = tx.id
            self._time = tx.time
            if tx.seq == 0:
                self._genesis = tx

        return commit

    @staticmethod
    def _verify(tx: RegistryTx, key: bytes) -> None:
        try:
            tx.sign1.verify(key)
        except WireError:
            raise RegistryError(
                R_SIGNATURE, f"{tx.action} not signed by kid {tx.kid.hex()}"
            ) from None

    def _check_genesis(self, tx: RegistryTx) -> tuple[str, Callable[[], None]]:
        if tx.action != A_OPERATOR_ADD:
            raise RegistryError(R_MALFORMED, "the first transaction must add the first admin")
        try:
            name = _check_name(tx.body["name"])
            key = _check_key(tx.body["key"])
            role = tx.body["role"]
        except (KeyError, ValueError) as e:
            raise RegistryError(R_MALFORMED, f"genesis body: {e}") from None
        if set(tx.body) != {"name", "role", "key"} or role != ROLE_ADMIN:
            raise RegistryError(R_MALFORMED, "genesis must add an admin: name, role, key")
        if key_id(key) != tx.kid:
            raise RegistryError(R_UNKNOWN_SIGNER, "genesis not signed by the key it adds")
        self._verify(tx, key)

        def apply() -> None:
            self._put_operator(
                Operator(name, role, key, name, tx.time, None, (KeyPeriod(key, 0, None, tx.time),))
            )

        return name, apply

    def _node_key_by_kid(self, kid: bytes) -> NodeKey:
        for nk in self._node_keys:
            if nk.revoked is None and nk.valid_until is None and key_id(nk.public_key) == kid:
                return nk
        raise RegistryError(R_UNKNOWN_SIGNER, f"no active node key with kid {kid.hex()}")

    def _handlers(self) -> dict[str, Callable[[RegistryTx, str], Callable[[], None]]]:
        return {
            A_OPERATOR_ADD: self._h_operator_add,
            A_OPERATOR_REVOKE: self._h_operator_revoke,
            A_OPERATOR_ROTATE: self._h_operator_rotate,
            A_DEVICE_ADD: self._h_device_add,
            A_DEVICE_REVOKE: self._h_device_revoke,
            A_DEVICE_ROTATE: self._h_device_rotate,
            A_DEVICE_QUARANTINE: self._h_device_quarantine,
            A_NODE_ADD: self._h_node_add,
            A_NODE_REVOKE: self._h_node_revoke,
            A_NODE_ROTATE: self._h_node_rotate,
            A_FILTER_PUBLISH: self._h_filter_publish,
        }

    # -- handlers: each checks everything, then returns the change ---------------------------

    @staticmethod
    def _keys(body: dict[str, Any], *names: str) -> None:
        if set(body) != set(names):
            raise ValueError(f"keys {sorted(body)}, expected {sorted(names)}")

    def _key_free(self, key: bytes) -> None:
        if key in self._all_keys or key_id(key) in self._kids:
            raise RegistryError(R_CONFLICT, "that public key is already registered")

    def _put_operator(self, op: Operator) -> None:
        old = self._operators.get(op.name)
        if old is not None:
            self._kids.pop(key_id(old.public_key), None)
        self._operators[op.name] = op
        self._all_keys.add(op.public_key)
        if op.revoked is None:
            self._kids[key_id(op.public_key)] = ("operator", op.name)

    def _h_operator_add(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "name", "role", "key")
        name, role, key = _check_name(b["name"]), b["role"], _check_key(b["key"])
        if role not in ROLES:
            raise ValueError(f"role {role!r}")
        if name in self._operators:
            raise RegistryError(R_CONFLICT, f"operator {name} exists")
        if any(operator_id(o) == operator_id(name) for o in self._operators):
            raise RegistryError(R_CONFLICT, f"operator id of {name} is taken")
        self._key_free(key)
        op = Operator(name, role, key, by, tx.time, None, (KeyPeriod(key, 0, None, tx.time),))
        return lambda: self._put_operator(op)

    def _active_operator(self, name: Any) -> Operator:
        op = self._operators.get(name)
        if op is None:
            raise RegistryError(R_CONFLICT, f"no operator {name!r}")
        if op.revoked is not None:
            raise RegistryError(R_CONFLICT, f"operator {name} is revoked")
        return op

    def _h_operator_revoke(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "name", "reason")
        op = self._active_operator(b["name"])
        reason = _check_text(b["reason"], "reason")
        if op.role == ROLE_ADMIN and not any(
            o.role == ROLE_ADMIN and o.revoked is None and o.name != op.name
            for o in self._operators.values()
        ):
            raise RegistryError(R_CONFLICT, "the last admin cannot be revoked")
        new = dataclasses.replace(op, revoked=(reason, tx.time))
        return lambda: self._put_operator(new)

    def _h_operator_rotate(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "name", "key", "below")
        op = self._active_operator(b["name"])
        key = _check_key(b["key"])
        self._key_free(key)
        keys = _rotate(op.keys, key, _check_uint(b["below"], "below"), tx.time)
        new = dataclasses.replace(op, public_key=key, keys=keys)
        return lambda: self._put_operator(new)

    def _h_device_add(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "id", "key", "segment", "board", "firmware", "pointmap")
        did = _check_device_id(b["id"])
        key = _check_key(b["key"])
        if did in self._devices:
            raise RegistryError(R_CONFLICT, f"device {did.hex()} exists")
        self._key_free(key)
        dev = Device(
            device_id=did,
            public_key=key,
            segment=_check_segment(b["segment"]),
            board=_check_text(b["board"], "board"),
            firmware=_check_text(b["firmware"], "firmware"),
            pointmap_digest=_check_text(b["pointmap"], "point map digest"),
            registered_by=by,
            registered_at=tx.time,
            keys=(KeyPeriod(key, 0, None, tx.time),),
        )

        def apply() -> None:
            self._devices[did] = dev
            self._device_keys[key] = did
            self._all_keys.add(key)

        return apply

    def _device(self, device_id: Any, live: bool = True) -> Device:
        dev = self._devices.get(_check_device_id(device_id))
        if dev is None:
            raise RegistryError(R_CONFLICT, f"no device {bytes(device_id).hex()}")
        if live and dev.revoked is not None:
            raise RegistryError(R_CONFLICT, f"device {dev.device_id.hex()} is revoked")
        return dev

    def _h_device_revoke(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "id", "reason")
        dev = self._device(b["id"])
        new = dataclasses.replace(dev, revoked=(_check_text(b["reason"], "reason"), tx.time))
        return lambda: self._devices.__setitem__(dev.device_id, new)

    def _h_device_rotate(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "id", "key", "below")
        dev = self._device(b["id"])
        key = _check_key(b["key"])
        self._key_free(key)
        keys = _rotate(dev.keys, key, _check_uint(b["below"], "below"), tx.time)
        new = dataclasses.replace(dev, public_key=key, keys=keys)

        def apply() -> None:
            self._devices[dev.device_id] = new
            self._device_keys[key] = dev.device_id
            self._all_keys.add(key)

        return apply

    def _h_device_quarantine(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "id", "at", "evidence")
        dev = self._device(b["id"], live=False)
        at = _check_uint(b["at"], "compromised at")
        ev = b["evidence"]
        if (
            type(ev) is not list
            or not ev
            or not all(type(e) is bytes and len(e) == spec.HASH_BYTES for e in ev)
        ):
            raise ValueError("evidence: a list of 32-byte transaction ids expected")
        if dev.quarantined is not None:
            # A later finding can only move the compromise earlier, and adds its evidence.
            at = min(at, dev.quarantined[0])
            ev = list(dev.quarantined[1]) + [e for e in ev if e not in dev.quarantined[1]]
        new = dataclasses.replace(dev, quarantined=(at, tuple(ev)))
        return lambda: self._devices.__setitem__(dev.device_id, new)

    def _h_filter_publish(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "segment", "epoch", "not_after", "hash")
        seg = _check_segment(b["segment"])
        epoch = _check_uint(b["epoch"], "epoch")
        h = b["hash"]
        if type(h) is not bytes or len(h) != spec.HASH_BYTES:
            raise ValueError("hash: 32 bytes expected")
        old = self._filters.get(seg)
        if old is not None and epoch <= old.epoch:
            raise ValueError(f"epoch {epoch} is not after the published {old.epoch}")
        rec = FilterRecord(seg, epoch, _check_uint(b["not_after"], "not_after"), h, by, tx.time)
        return lambda: self._filters.__setitem__(seg, rec)

    def _h_node_add(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "node", "role", "key")
        node, role, key = _check_name(b["node"], "node"), b["role"], _check_key(b["key"])
        if role not in spec.NODE_ROLES:
            raise ValueError(f"node key role {role!r}")
        self._key_free(key)
        nk = NodeKey(node, role, key, by, tx.time)
        return lambda: self._put_node_key(nk)

    def _put_node_key(self, nk: NodeKey) -> None:
        self._node_keys.append(nk)
        self._all_keys.add(nk.public_key)
        if nk.role == spec.ROLE_REGISTRY:
            self._kids[key_id(nk.public_key)] = ("node", nk.node)

    def _live_node_key(self, node: Any, role: Any, key: Any = None) -> int:
        found = [
            i
            for i, nk in enumerate(self._node_keys)
            if nk.node == node
            and nk.role == role
            and nk.revoked is None
            and nk.valid_until is None
            and (key is None or nk.public_key == key)
        ]
        if not found:
            raise RegistryError(R_CONFLICT, f"no current {role} key of node {node!r}")
        return found[-1]

    def _h_node_revoke(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "node", "role", "key", "reason")
        i = self._live_node_key(b["node"], b["role"], _check_key(b["key"]))
        nk = self._node_keys[i]
        new = dataclasses.replace(nk, revoked=(_check_text(b["reason"], "reason"), tx.time))

        def apply() -> None:
            self._node_keys[i] = new
            self._kids.pop(key_id(nk.public_key), None)

        return apply

    def _h_node_rotate(self, tx: RegistryTx, by: str) -> Callable[[], None]:
        b = tx.body
        self._keys(b, "node", "role", "key", "until")
        i = self._live_node_key(b["node"], b["role"])
        key = _check_key(b["key"])
        self._key_free(key)
        until = _check_uint(b["until"], "until")
        cur = self._node_keys[i]
        if cur.valid_from is not None and until <= cur.valid_from:
            raise RegistryError(R_CONFLICT, f"the current key is valid from {cur.valid_from}")
        old = dataclasses.replace(cur, valid_until=until)
        nk = NodeKey(old.node, old.role, key, by, tx.time, valid_from=until)

        def apply() -> None:
            self._node_keys[i] = old
            self._kids.pop(key_id(old.public_key), None)
            self._put_node_key(nk)

        return apply

    # -- making changes --------------------------------------------------------------------

    def _change(self, signer: SignerLike | None, action: str, body: dict[str, Any]) -> RegistryTx:
        with self._lock:
            self.catch_up()
            if self._count == 0 and action != A_OPERATOR_ADD:
                raise RegistryError(R_CONFLICT, "an empty registry: init_admin first")
            if signer is None:
                raise TypeError("signer: who signs this change is needed")
            s = _as_signer(signer)
            who = self._kids.get(key_id(s.public_key))
            if self._count and who != (s.kind, s.name):
                raise RegistryError(
                    R_UNKNOWN_SIGNER, f"that key is not the current key of {s.kind} {s.name}"
                )
            t = max(self.clock(), self._time)
            raw = make_registry_tx(s.seed, self._count, self._head, t, action, body)
            tx = decode_registry_tx(raw)
            apply = self._check(tx)
            self.store.append(raw, self._count)
            apply()
            return tx

    def init_admin(self, name: str, public_key: bytes, signing_seed: bytes) -> Operator:
        """The genesis: the first admin adds itself, self-signed. Only on an empty registry."""
        name = _check_name(name)
        key = _check_key(public_key)
        seed = _seed(signing_seed)
        if bytes(SigningKey(seed).verify_key) != key:
            raise ValueError("the seed is not the secret of that public key")
        with self._lock:
            self.catch_up()
            if self._count:
                raise RegistryError(R_CONFLICT, "the registry already has its genesis")
            self._change(
                RegistrySigner("operator", name, seed),
                A_OPERATOR_ADD,
                {"name": name, "role": ROLE_ADMIN, "key": key},
            )
            return self._operators[name]

    def as_operator(self, name: str, seed: bytes) -> RegistrySigner:
        """A signer for changes, checked now: ``name`` is an active operator and ``seed`` its current key."""
        s = RegistrySigner("operator", name, _seed(seed))
        op = self.operator(name)
        if op is None or op.revoked is not None:
            raise RegistryError(R_UNKNOWN_OPERATOR if op is None else R_REVOKED_OPERATOR, name)
        if op.public_key != s.public_key:
            raise RegistryError(R_UNKNOWN_SIGNER, f"that key is not {name}'s current key")
        return s

    def as_node(self, node: str, seed: bytes) -> RegistrySigner:
        """A signer for the changes a node may make itself (quarantine), with its registry-role key."""
        s = RegistrySigner("node", node, _seed(seed))
        with self._lock:
            self.catch_up()
            if self._kids.get(key_id(s.public_key)) != ("node", node):
                raise RegistryError(
                    R_UNKNOWN_SIGNER, f"that key is no current registry key of {node}"
                )
        return s

    def add_device(
        self,
        device_id: bytes,
        public_key: bytes,
        segment: str,
        board: str,
        firmware: str,
        pointmap_digest: str,
        signer: SignerLike,
    ) -> Device:
        did = _check_device_id(device_id)
        body = {
            "id": did,
            "key": _check_key(public_key),
            "segment": _check_segment(segment),
            "board": _check_text(board, "board"),
            "firmware": _check_text(firmware, "firmware"),
            "pointmap": _check_text(pointmap_digest, "point map digest"),
        }
        self._change(signer, A_DEVICE_ADD, body)
        return self._devices[did]

    def revoke_device(self, device_id: bytes, reason: str, signer: SignerLike) -> Device:
        did = _check_device_id(device_id)
        self._change(signer, A_DEVICE_REVOKE, {"id": did, "reason": _check_text(reason, "reason")})
        return self._devices[did]

    def rotate_device_key(
        self, device_id: bytes, new_public_key: bytes, old_valid_below_seq: int, signer: SignerLike
    ) -> Device:
        """The old key signs the device's sequence numbers below ``old_valid_below_seq`` only, the new one the rest."""
        did = _check_device_id(device_id)
        body = {
            "id": did,
            "key": _check_key(new_public_key),
            "below": _check_uint(old_valid_below_seq, "old_valid_below_seq"),
        }
        self._change(signer, A_DEVICE_ROTATE, body)
        return self._devices[did]

    def quarantine_device(
        self,
        device_id: bytes,
        compromised_at_us: int,
        evidence: Sequence[bytes],
        signer: SignerLike,
    ) -> Device:
        did = _check_device_id(device_id)
        body = {
            "id": did,
            "at": _check_uint(compromised_at_us, "compromised_at_us"),
            "evidence": [bytes(e) for e in evidence],
        }
        self._change(signer, A_DEVICE_QUARANTINE, body)
        return self._devices[did]

    def add_operator(self, name: str, role: str, public_key: bytes, signer: SignerLike) -> Operator:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
        body = {"name": _check_name(name), "role": role, "key": _check_key(public_key)}
        self._change(signer, A_OPERATOR_ADD, body)
        return self._operators[name]

    def revoke_operator(self, name: str, reason: str, signer: SignerLike) -> Operator:
        body = {"name": _check_name(name), "reason": _check_text(reason, "reason")}
        self._change(signer, A_OPERATOR_REVOKE, body)
        return self._operators[name]

    def rotate_operator_key(
        self, name: str, new_public_key: bytes, old_valid_below_seq: int, signer: SignerLike
    ) -> Operator:
        """The old key signs the operator's actions numbered below ``old_valid_below_seq`` only.

        Registry changes the operator signs use the new key from this change on.
        """
        body = {
            "name": _check_name(name),
            "key": _check_key(new_public_key),
            "below": _check_uint(old_valid_below_seq, "old_valid_below_seq"),
        }
        self._change(signer, A_OPERATOR_ROTATE, body)
        return self._operators[name]

    def add_node_key(self, node: str, role: str, public_key: bytes, signer: SignerLike) -> NodeKey:
        if role not in spec.NODE_ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(spec.NODE_ROLES)}")
        key = _check_key(public_key)
        self._change(
            signer, A_NODE_ADD, {"node": _check_name(node, "node"), "role": role, "key": key}
        )
        return self._node_keys[-1]

    def revoke_node_key(
        self, node: str, role: str, public_key: bytes, reason: str, signer: SignerLike
    ) -> NodeKey:
        key = _check_key(public_key)
        body = {"node": node, "role": role, "key": key, "reason": _check_text(reason, "reason")}
        tx = self._change(signer, A_NODE_REVOKE, body)
        return next(
            nk
            for nk in self._node_keys
            if nk.public_key == key and nk.revoked and nk.revoked[1] == tx.time
        )

    def rotate_node_key(
        self,
        node: str,
        role: str,
        new_public_key: bytes,
        old_valid_until_us: int,
        signer: SignerLike,
    ) -> NodeKey:
        """The node's current key for ``role`` signs objects timed below ``old_valid_until_us`` only."""
        body = {
            "node": node,
            "role": role,
            "key": _check_key(new_public_key),
            "until": _check_uint(old_valid_until_us, "old_valid_until_us"),
        }
        self._change(signer, A_NODE_ROTATE, body)
        return self._node_keys[-1]

    # -- clones ------------------------------------------------------------------------------

    def detect_clone(self, tx_a: bytes, tx_b: bytes, signer: SignerLike) -> Device | None:
        """Two different, authentic transactions of one device under one sequence number: quarantine it.

        The compromise time is the earlier device time of the two, the
        evidence both transaction ids. None (nothing changed) if the two
        are not such a pair; a transaction that does not decode or verify
        is a WireError/RegistryError.
        """
        a, b = codec.decode(tx_a), codec.decode(tx_b)
        if a.device_id != b.device_id or a.seq != b.seq or a.id == b.id:
            return None
        for t in (a, b):
            key = self.key_for(t.device_id, t.seq, historic=True)
            if key is None:
                raise RegistryError(
                    R_CONFLICT, f"no key of device {t.device_id.hex()} for seq {t.seq}"
                )
            t.verify(key)
        at = min(a.time.us, b.time.us)
        return self.quarantine_device(a.device_id, at, sorted((a.id, b.id)), signer)

    # -- reading -----------------------------------------------------------------------------

    def device(self, device_id: bytes) -> Device | None:
        with self._lock:
            return self._devices.get(bytes(device_id))

    def devices(self, segment: str | None = None, include_revoked: bool = False) -> list[Device]:
        with self._lock:
            return [
                d
                for d in self._devices.values()
                if (segment is None or d.segment == segment)
                and (include_revoked or d.revoked is None)
            ]

    def key_for(self, device_id: bytes, seq: int, historic: bool = False) -> bytes | None:
        """The key valid for the device's sequence number ``seq``.

        None if the device is unknown, revoked or quarantined, or no key
        covers ``seq``; ``historic=True`` ignores revocation and
        quarantine (an investigator checking what was signed before).
        """
        with self._lock:
            dev = self._devices.get(bytes(device_id))
        if dev is None:
            return None
        if not historic and (dev.revoked is not None or dev.quarantined is not None):
            return None
        for k in dev.keys:
            if k.covers(seq):
                return k.public_key
        return None

    def operator(self, name: str) -> Operator | None:
        with self._lock:
            return self._operators.get(name)

    def operators(self, include_revoked: bool = False) -> list[Operator]:
        with self._lock:
            return [o for o in self._operators.values() if include_revoked or o.revoked is None]

    def operator_by_id(self, op_id: bytes) -> Operator | None:
        with self._lock:
            for o in self._operators.values():
                if o.id == op_id:
                    return o
        return None

    def node_keys(
        self, role: str | None = None, node: str | None = None, include_revoked: bool = False
    ) -> list[NodeKey]:
        with self._lock:
            return [
                k
                for k in self._node_keys
                if (role is None or k.role == role)
                and (node is None or k.node == node)
                and (include_revoked or k.revoked is None)
            ]

    def node_key_for(self, node: str, role: str, time_us: int) -> bytes | None:
        """The node's unrevoked key for ``role`` whose validity covers ``time_us`` (None: none)."""
        with self._lock:
            for k in reversed(self._node_keys):
                if (
                    k.node == node
                    and k.role == role
                    and k.revoked is None
                    and (k.valid_from is None or k.valid_from <= time_us)
                    and (k.valid_until is None or time_us < k.valid_until)
                ):
                    return k.public_key
        return None

    def publish_filter(
        self, segment: str, epoch: int, not_after_s: int, filter_hash: bytes, signer: SignerLike
    ) -> FilterRecord:
        """Record the signed filter published for ``segment`` (its SHA-256); epochs only go forward.

        An admin or a node's ``registry`` key signs it: the hash is then on the
        registry chain, which the ledger commits and witnesses cosign.
        """
        body = {
            "segment": _check_segment(segment),
            "epoch": _check_uint(epoch, "epoch"),
            "not_after": _check_uint(not_after_s, "not_after_s"),
            "hash": bytes(filter_hash),
        }
        self._change(signer, A_FILTER_PUBLISH, body)
        return self._filters[segment]

    def filter_record(self, segment: str) -> FilterRecord | None:
        """The newest filter published for ``segment``, or None."""
        with self._lock:
            return self._filters.get(segment)

    def segments(self) -> list[str]:
        with self._lock:
            return sorted({d.segment for d in self._devices.values() if d.revoked is None})

    def __len__(self) -> int:
        return self._count

    @property
    def head(self) -> bytes:
        """SHA-256 of the last registry transaction (32 zero bytes when empty)."""
        return self._head

    @property
    def genesis(self) -> RegistryTx | None:
        return self._genesis

    def history(self) -> list[Change]:
        """Every change so far, in order, each verified when it was folded in."""
        with self._lock:
            return list(self._history)

    def transactions(self) -> list[RegistryTx]:
        """Every registry transaction, decoded (form only; they were verified when folded in)."""
        return [decode_registry_tx(raw) for raw in self.store.transactions(0)]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "transactions": self._count,
                "head": self._head.hex(),
                "time": self._time,
                "genesis_admin": self._genesis.body["name"] if self._genesis else None,
                "devices": len(self.devices()),
                "devices_revoked": sum(1 for d in self._devices.values() if d.revoked),
                "devices_quarantined": sum(1 for d in self._devices.values() if d.quarantined),
                "segments": self.segments(),
                "operators": len(self.operators()),
                "operators_revoked": sum(1 for o in self._operators.values() if o.revoked),
                "node_keys": len(self.node_keys()),
                "rejections": len(self.store.rejections()),
            }

    # -- operator actions ------------------------------------------------------------------------

    def rejections(self) -> list[Rejection]:
        return self.store.rejections()

    def check_operator_action(self, tx_bytes: bytes) -> tuple[Operator, OperatorAction]:
        """The operator and the action of an operator transaction, checked; otherwise refused and recorded.

        Refused (RegistryError, and a rejection with the bytes as evidence):
        a transaction that does not decode or is not kind 3, an unknown or
        revoked operator, no key of the operator's valid at its sequence
        number, a bad signature, a body not of the form, an action outside
        the operator's role.
        """
        try:
            return self._check_action(bytes(tx_bytes))
        except RegistryError as e:
            self.store.record_rejection(
                "operator", e.reason, e.detail, bytes(tx_bytes), self.clock()
            )
            raise

    def _check_action(self, data: bytes) -> tuple[Operator, OperatorAction]:
        try:
            tx = codec.decode(data)
        except WireError as e:
            raise RegistryError(R_ACTION, str(e)) from None
        if tx.kind != spec.KIND_OPERATOR:
            raise RegistryError(R_ACTION, f"a {tx.kind_name} transaction, not an operator action")
        with self._lock:
            self.catch_up()
            op = self.operator_by_id(tx.device_id)
        if op is None:
            raise RegistryError(R_UNKNOWN_OPERATOR, f"no operator with id {tx.device_id.hex()}")
        if op.revoked is not None:
            raise RegistryError(R_REVOKED_OPERATOR, f"{op.name}: {op.revoked[0]}")
        key = next((k.public_key for k in op.keys if k.covers(tx.seq)), None)
        if key is None:
            raise RegistryError(R_KEY_VALIDITY, f"no key of {op.name} for action {tx.seq}")
        try:
            tx.verify(key)
        except WireError as e:
            raise RegistryError(R_SIGNATURE, f"{op.name}: {e}") from None
        b = tx.body
        if (
            type(b) is not dict
            or set(b) != {OA_ACTION, OA_TARGET, OA_ARGS}
            or type(b[OA_ACTION]) is not str
            or type(b[OA_TARGET]) not in (str, bytes)
            or type(b[OA_ARGS]) is not dict
        ):
            raise RegistryError(R_ACTION, "body not {0: action, 1: target, 2: arguments}")
        if b[OA_ACTION] not in ACTIONS:
            raise RegistryError(R_ACTION, f"unknown action {b[OA_ACTION]!r}")
        if b[OA_ACTION] not in ROLES[op.role]:
            raise RegistryError(R_ROLE, f"{op.name} ({op.role}) may not {b[OA_ACTION]}")
        act = OperatorAction(
            b[OA_ACTION], b[OA_TARGET], b[OA_ARGS], tx.segment, tx.seq, tx.time.us, tx.id, tx
        )
        return op, act

    def close(self) -> None:
        self.store.close()


def _rotate(
    keys: tuple[KeyPeriod, ...], new_key: bytes, below: int, at: int
) -> tuple[KeyPeriod, ...]:
    cur = keys[-1]
    if cur.below is not None or below <= cur.from_seq:
        raise RegistryError(
            R_CONFLICT, f"the current key is valid from {cur.from_seq}: it must end above that"
        )
    return keys[:-1] + (dataclasses.replace(cur, below=below), KeyPeriod(new_key, below, None, at))


def operator_action(
    seed: bytes,
    operator: str,
    segment: str,
    seq: int,
    prev: bytes,
    time: int | Sequence[int],
    action: str,
    target: str | bytes,
    args: dict[Any, Any] | None = None,
) -> bytes:
    """A signed operator action (a wire transaction of kind 3); ``time`` in us, or the wire's [us, quality, uncertainty]."""
    t = [time, spec.TQ_NTP, 0] if isinstance(time, int) else list(time)
    body = {OA_ACTION: action, OA_TARGET: target, OA_ARGS: dict(args or {})}
    data, _ = codec.make(
        seed, operator_id(operator), segment, seq, prev, t, spec.KIND_OPERATOR, body
    )
    return data


def open_registry(
    path_or_url: str | Path | RegistryStore, clock: Callable[[], int] = now_us
) -> Registry:
    """A registry over a SQLite file (created if missing; ``sqlite:///path`` too), ``":memory:"``, or a store.

    RegistryError if the transactions there do not replay.
    """
    store: RegistryStore
    if isinstance(path_or_url, str | Path):
        s = str(path_or_url)
        if s == ":memory:":
            store = MemoryStore()
        else:
            if s.startswith("sqlite://"):
                s = s[len("sqlite://") :]
            store = SQLiteStore(s)
    else:
        store = path_or_url
    try:
        return Registry(store, clock)
    except BaseException:
        store.close()
        raise
