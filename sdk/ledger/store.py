"""Where the ledger keeps its chains: one interface over SQLite (default) and PostgreSQL.

``open_store(url)`` takes ``sqlite:///path``, a plain path, or
``postgresql://...`` (psycopg 3; ``?schema=NAME`` puts the tables in a
schema of their own, made if missing). The one write that grows a chain,
``commit_block``, is one database transaction: the block's entries, its
signed checkpoint, the tree's right edge after it and the block's flags go
in together or not at all, so a crash never leaves half a block, and a
restart starts from the last block's stored frontier.

Unique constraints hold the ledger's rules where the data is: one entry
per (chain, index), one per (chain, device, seq) on a segment chain, one
block per (chain, height) and per (chain, size).

    >>> from lightnode.ledger.store import open_store
    >>> s = open_store(":memory:")
    >>> s.chains()
    []
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lightnode.ledger.errors import StoreError

__all__ = ["Block", "Entry", "Flag", "Store", "open_store"]

# What a flag on an entry says (bits of entries.flags, and flags.kind).
# Where a store is when nobody says: the node, ledger, audit and evidence
# commands all open this, so they find each other's store.
DEFAULT_URL = "lightnode-ledger.db"
ENV_URL = "LIGHTNODE_STORE"

FLAG_GAP = 1  # sequence numbers missing before this one
FLAG_PREV = 2  # prev is not the id of the device's previous transaction
FLAG_LATE = 4  # arrived after a later sequence number of the same device
FLAG_CLOCK_BACK = 8  # device time earlier than its previous transaction's
FLAG_TIME_SKEW = 16  # device time far from the node's clock when it arrived
FLAG_NAMES = {
    FLAG_GAP: "gap",
    FLAG_PREV: "prev-mismatch",
    FLAG_LATE: "late",
    FLAG_CLOCK_BACK: "clock-back",
    FLAG_TIME_SKEW: "time-skew",
}
# Flags that stand alone, not on an entry.
FLAG_FORK = "fork"  # a second, different transaction under a committed (device, seq)
FLAG_CHECKPOINT_FORK = "checkpoint-fork"  # two different checkpoints at one size
# Fork alarms a witness raises (it refuses to cosign):
FLAG_INCONSISTENT = "inconsistent-checkpoint"  # evidence: last cosigned, new checkpoint
FLAG_FORGED_BLOCK = "forged-block"  # evidence: the checkpoint, the block's entries (CBOR array)
# The full node's time analysis (lightnode.node.analysis), on committed entries:
FLAG_ANGLE_DRIFT = "angle-drift"  # one PMU's angle steps or drifts against the others'
FLAG_TIME_STEP = "time-step"  # source timestamps jump against the series period
FLAG_CLOCK_BRACKET = "clock-bracket"  # device time outside the ledger's checkpoint bracket
FLAG_OPERATOR_ODD_HOUR = "operator-odd-hour"  # an operator action outside the operator's hours
TIME_FLAGS = (FLAG_ANGLE_DRIFT, FLAG_TIME_STEP, FLAG_CLOCK_BRACKET)
ANALYSIS_FLAGS = TIME_FLAGS + (FLAG_OPERATOR_ODD_HOUR,)

# An entry so flagged may have a hole below it; one without has its seq - 1 committed before it.
_BREAK = "(flags & %d) != 0" % (FLAG_GAP | FLAG_LATE)

REJECTION_WINDOW_US = 3_600_000_000  # rejections are counted per source, reason and hour


def flag_names(bits: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if bits & bit]


@dataclass(frozen=True)
class Entry:
    chain: str
    index: int
    leaf_hash: bytes
    data: bytes
    device: bytes | None = None
    seq: int | None = None
    kind: int | None = None
    device_time: int | None = None
    tx_id: bytes | None = None
    flags: int = 0
    received: int | None = None
    height: int | None = None  # the block it was committed in


@dataclass(frozen=True)
class Block:
    chain: str
    height: int  # 1 for the first block
    size: int
    root: bytes
    header_hash: bytes
    prev: bytes
    time: int
    signed: bytes  # the producer's COSE_Sign1
    frontier: bytes  # the tree's right-edge hashes after this block, concatenated
    final: bool = False
    final_time: int | None = None


@dataclass(frozen=True)
class Flag:
    kind: str
    chain: str
    time: int
    detail: str = ""
    index: int | None = None
    device: bytes | None = None
    seq: int | None = None
    evidence: bytes | None = None  # for a fork: the committed copy
    evidence2: bytes | None = None  # and the other one
    id: int | None = None


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS chains (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        created_us BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS blocks (
        chain TEXT NOT NULL REFERENCES chains(name),
        height BIGINT NOT NULL,
        size BIGINT NOT NULL,
        root {blob} NOT NULL,
        header_hash {blob} NOT NULL,
        prev {blob} NOT NULL,
        time_us BIGINT NOT NULL,
        signed {blob} NOT NULL,
        frontier {blob} NOT NULL,
        final INTEGER NOT NULL DEFAULT 0,
        final_us BIGINT,
        PRIMARY KEY (chain, height),
        UNIQUE (chain, size),
        UNIQUE (header_hash))""",
    """CREATE TABLE IF NOT EXISTS cosignatures (
        chain TEXT NOT NULL,
        height BIGINT NOT NULL,
        kid {blob} NOT NULL,
        signed {blob} NOT NULL,
        received_us BIGINT NOT NULL,
        PRIMARY KEY (chain, height, kid),
        FOREIGN KEY (chain, height) REFERENCES blocks(chain, height))""",
    """CREATE TABLE IF NOT EXISTS entries (
        chain TEXT NOT NULL REFERENCES chains(name),
        idx BIGINT NOT NULL,
        leaf_hash {blob} NOT NULL,
        data {blob} NOT NULL,
        height BIGINT NOT NULL,
        device {blob},
        seq BIGINT,
        kind INTEGER,
        device_time_us BIGINT,
        tx_id {blob},
        flags INTEGER NOT NULL DEFAULT 0,
        received_us BIGINT,
        PRIMARY KEY (chain, idx),
        UNIQUE (chain, device, seq))""",
    "CREATE INDEX IF NOT EXISTS entries_device_time ON entries (device, device_time_us)",
    "CREATE INDEX IF NOT EXISTS entries_received ON entries (received_us)",
    # the entries that follow a hole in a device's sequence: few, so finding them costs little
    "CREATE INDEX IF NOT EXISTS entries_breaks ON entries (chain, device, seq) WHERE %s" % _BREAK,
    """CREATE TABLE IF NOT EXISTS flags (
        id {serial},
        kind TEXT NOT NULL,
        chain TEXT NOT NULL,
        time_us BIGINT NOT NULL,
        detail TEXT NOT NULL,
        idx BIGINT,
        device {blob},
        seq BIGINT,
        evidence {blob},
        evidence2 {blob},
        evidence_key {blob},
        UNIQUE (kind, chain, evidence_key))""",
    "CREATE INDEX IF NOT EXISTS flags_time ON flags (time_us)",
    """CREATE TABLE IF NOT EXISTS rejections (
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        window_us BIGINT NOT NULL,
        count BIGINT NOT NULL,
        first_us BIGINT NOT NULL,
        last_us BIGINT NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (source, reason, window_us))""",
]

_ENTRY_COLS = "chain, idx, leaf_hash, data, device, seq, kind, device_time_us, tx_id, flags, received_us, height"
_BLOCK_COLS = (
    "chain, height, size, root, header_hash, prev, time_us, signed, frontier, final, final_us"
)
_FLAG_COLS = "kind, chain, time_us, detail, idx, device, seq, evidence, evidence2, id"


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(
        r[0],
        r[1],
        bytes(r[2]),
        bytes(r[3]),
        _b(r[4]),
        r[5],
        r[6],
        r[7],
        _b(r[8]),
        r[9],
        r[10],
        r[11],
    )


def _block(r: Sequence[Any]) -> Block:
    return Block(
        r[0],
        r[1],
        r[2],
        bytes(r[3]),
        bytes(r[4]),
        bytes(r[5]),
        r[6],
        bytes(r[7]),
        bytes(r[8]),
        bool(r[9]),
        r[10],
    )


def _flag(r: Sequence[Any]) -> Flag:
    return Flag(r[0], r[1], r[2], r[3], r[4], _b(r[5]), r[6], _b(r[7]), _b(r[8]), r[9])


def _b(x: Any) -> bytes | None:
    return None if x is None else bytes(x)


class Store:
    """The ledger's tables behind one set of methods; ``open_store`` picks the database."""

    dialect = "sqlite"

    def __init__(self, conn: Any, url: str) -> None:
        self._conn = conn
        self.url = url
        self._depth = 0

    # -- plumbing ---------------------------------------------------------------------

    def _sql(self, q: str) -> str:
        return q

    def _execute(self, q: str, args: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._sql(q), tuple(args))

    def _all(self, q: str, args: Sequence[Any] = ()) -> list[Any]:
        return list(self._execute(q, args).fetchall())

    def _one(self, q: str, args: Sequence[Any] = ()) -> Any:
        return self._execute(q, args).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside happen together or not at all (nested uses join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        self._commit()

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")

    def _create(self) -> None:
        with self.transaction():
            for q in _SCHEMA:
                self._execute(q.format(blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT"))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- chains -----------------------------------------------------------------------

    def ensure_chain(self, name: str, kind: str, now: int) -> None:
        with self.transaction():
            row = self._one("SELECT kind FROM chains WHERE name = ?", (name,))
            if row is None:
                self._execute(
                    "INSERT INTO chains (name, kind, created_us) VALUES (?, ?, ?)",
                    (name, kind, now),
                )
            elif row[0] != kind:
                raise StoreError("chain %s is a %s chain, not %s" % (name, row[0], kind))

    def chains(self) -> list[dict[str, Any]]:
        rows = self._all(
            """SELECT c.name, c.kind, c.created_us,
                  (SELECT COUNT(*) FROM blocks b WHERE b.chain = c.name),
                  (SELECT MAX(size) FROM blocks b WHERE b.chain = c.name),
                  (SELECT MAX(time_us) FROM blocks b WHERE b.chain = c.name),
                  (SELECT MAX(size) FROM blocks b WHERE b.chain = c.name AND b.final = 1)
               FROM chains c ORDER BY c.name"""
        )
        return [
            {
                "chain": r[0],
                "kind": r[1],
                "created": r[2],
                "blocks": r[3],
                "size": r[4] or 0,
                "last_time": r[5],
                "final_size": r[6] or 0,
            }
            for r in rows
        ]

    # -- blocks -----------------------------------------------------------------------

    def head(self, chain: str) -> Block | None:
        """The chain's last block, or None."""
        r = self._one(
            "SELECT %s FROM blocks WHERE chain = ? ORDER BY height DESC LIMIT 1" % _BLOCK_COLS,
            (chain,),
        )
        return None if r is None else _block(r)

    def blocks(self, chain: str, since: int | None = None, until: int | None = None) -> list[Block]:
        q = "SELECT %s FROM blocks WHERE chain = ?" % _BLOCK_COLS
        args: list[Any] = [chain]
        if since is not None:
            q += " AND time_us >= ?"
            args.append(since)
        if until is not None:
            q += " AND time_us < ?"
            args.append(until)
        return [_block(r) for r in self._all(q + " ORDER BY height", args)]

    def block_at_size(self, chain: str, size: int) -> Block | None:
        r = self._one(
            "SELECT %s FROM blocks WHERE chain = ? AND size = ?" % _BLOCK_COLS, (chain, size)
        )
        return None if r is None else _block(r)

    def commit_block(
        self, block: Block, entries: Sequence[Entry], flags: Sequence[Flag] = ()
    ) -> None:
        """One block, its entries and their flags, in one transaction (StoreError if a rule is broken)."""
        head = self.head(block.chain)
        if block.height != (head.height + 1 if head else 1):
            raise StoreError(
                "block %d of %s after height %s" % (block.height, block.chain, head and head.height)
            )
        first = head.size if head else 0
        if [e.index for e in entries] != list(range(first, block.size)):
            raise StoreError(
                "block %d of %s: entries must be %d..%d"
                % (block.height, block.chain, first, block.size - 1)
            )
        try:
            with self.transaction():
                self._execute(
                    "INSERT INTO blocks (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    % _BLOCK_COLS,
                    (
                        block.chain,
                        block.height,
                        block.size,
                        block.root,
                        block.header_hash,
                        block.prev,
                        block.time,
                        block.signed,
                        block.frontier,
                        int(block.final),
                        block.final_time,
                    ),
                )
                self._insert_entries(block.height, entries)
                for f in flags:
                    self._insert_flag(f)
        except StoreError:
            raise
        except Exception as e:  # a unique constraint: the ledger's rules, held by the database
            if _is_integrity_error(e):
                raise StoreError(
                    "block %d of %s refused: %s" % (block.height, block.chain, e)
                ) from e
            raise

    def _insert_entries(self, height: int, entries: Sequence[Entry]) -> None:
        q = self._sql(
            "INSERT INTO entries (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" % _ENTRY_COLS
        )
        rows = [
            (
                e.chain,
                e.index,
                e.leaf_hash,
                e.data,
                e.device,
                e.seq,
                e.kind,
                e.device_time,
                e.tx_id,
                e.flags,
                e.received,
                height,
            )
            for e in entries
        ]
        self._executemany(q, rows)

    def _executemany(self, q: str, rows: list[tuple[Any, ...]]) -> None:
        self._conn.executemany(q, rows)

    def add_cosignature(self, chain: str, height: int, kid: bytes, signed: bytes, now: int) -> bool:
        """Keep a witness's cosignature; False if that witness's was already kept."""
        with self.transaction():
            cur = self._execute(
                "INSERT INTO cosignatures (chain, height, kid, signed, received_us) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (chain, height, kid, signed, now),
            )
            return bool(cur.rowcount)

    def cosignatures(self, chain: str, height: int) -> list[tuple[bytes, bytes]]:
        """(kid, signed) of every cosignature kept for a block."""
        rows = self._all(
            "SELECT kid, signed FROM cosignatures WHERE chain = ? AND height = ? ORDER BY kid",
            (chain, height),
        )
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    def set_final(self, chain: str, height: int, now: int) -> None:
        with self.transaction():
            self._execute(
                "UPDATE blocks SET final = 1, final_us = ? WHERE chain = ? AND height = ? AND final = 0",
                (now, chain, height),
            )

    def bracket(self, chain: str, index: int) -> tuple[Block | None, Block | None]:
        """The last final block before entry ``index`` and the first final block that covers it."""
        before = self._one(
            "SELECT %s FROM blocks WHERE chain = ? AND final = 1 AND size <= ? ORDER BY size DESC LIMIT 1"
            % _BLOCK_COLS,
            (chain, index),
        )
        after = self._one(
            "SELECT %s FROM blocks WHERE chain = ? AND final = 1 AND size > ? ORDER BY size LIMIT 1"
            % _BLOCK_COLS,
            (chain, index),
        )
        return (
            None if before is None else _block(before),
            None if after is None else _block(after),
        )

    # -- entries ----------------------------------------------------------------------

    def leaf_hashes(self, chain: str, start: int, end: int) -> list[bytes]:
        rows = self._all(
            "SELECT leaf_hash FROM entries WHERE chain = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (chain, start, end),
        )
        return [bytes(r[0]) for r in rows]

    def entry(self, chain: str, index: int) -> Entry | None:
        r = self._one(
            "SELECT %s FROM entries WHERE chain = ? AND idx = ?" % _ENTRY_COLS, (chain, index)
        )
        return None if r is None else _entry(r)

    def entry_by_seq(self, chain: str, device: bytes, seq: int) -> Entry | None:
        r = self._one(
            "SELECT %s FROM entries WHERE chain = ? AND device = ? AND seq = ?" % _ENTRY_COLS,
            (chain, device, seq),
        )
        return None if r is None else _entry(r)

    def last_of_device(self, chain: str, device: bytes) -> Entry | None:
        """The device's committed entry with the highest sequence number."""
        r = self._one(
            "SELECT %s FROM entries WHERE chain = ? AND device = ? ORDER BY seq DESC LIMIT 1"
            % _ENTRY_COLS,
            (chain, device),
        )
        return None if r is None else _entry(r)

    def seq_breaks(
        self, chain: str, device: bytes, after: int, end: int, limit: int
    ) -> list[tuple[int, int | None]]:
        """(seq, kind) of the device's entries flagged gap or late, seq > ``after``, index < ``end``, by seq."""
        rows = self._all(
            "SELECT seq, kind FROM entries WHERE chain = ? AND device = ? AND %s"
            " AND seq > ? AND idx < ? ORDER BY seq LIMIT %d" % (_BREAK, int(limit)),
            (chain, device, after, end),
        )
        return [(int(r[0]), r[1]) for r in rows]

    def seq_edge(
        self, chain: str, device: bytes, end: int, below: int | None = None, lowest: bool = False
    ) -> int | None:
        """The device's highest committed seq (below ``below``; or its lowest) among entries with index < ``end``."""
        q = "SELECT seq FROM entries WHERE chain = ? AND device = ? AND idx < ?"
        args: list[Any] = [chain, device, end]
        if below is not None:
            q += " AND seq < ?"
            args.append(below)
        r = self._one(q + " ORDER BY seq %s LIMIT 1" % ("" if lowest else "DESC"), args)
        return None if r is None else int(r[0])

    def entries(
        self,
        chain: str | None = None,
        device: bytes | None = None,
        since: int | None = None,
        until: int | None = None,
        kind: int | None = None,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
    ) -> Iterator[Entry]:
        """Entries in chain and index order; ``since``/``until`` are device time in us (until exclusive)."""
        q, args = "SELECT %s FROM entries WHERE 1 = 1" % _ENTRY_COLS, []
        for cond, value in (
            ("chain = ?", chain),
            ("device = ?", device),
            ("device_time_us >= ?", since),
            ("device_time_us < ?", until),
            ("kind = ?", kind),
            ("idx >= ?", start),
            ("idx < ?", end),
        ):
            if value is not None:
                q += " AND " + cond
                args.append(value)
        q += " ORDER BY chain, idx"
        if limit is not None:
            q += " LIMIT %d" % int(limit)
        for r in self._all(q, args):
            yield _entry(r)

    # -- flags and rejections ---------------------------------------------------------

    def _insert_flag(self, f: Flag) -> bool:
        # evidence_key makes a repeated fork copy one flag, not one per arrival
        key = None if f.evidence2 is None else _evidence_key(f)
        cur = self._execute(
            "INSERT INTO flags (kind, chain, time_us, detail, idx, device, seq, evidence, evidence2, evidence_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                f.kind,
                f.chain,
                f.time,
                f.detail,
                f.index,
                f.device,
                f.seq,
                f.evidence,
                f.evidence2,
                key,
            ),
        )
        return bool(cur.rowcount)

    def add_flag(self, f: Flag) -> bool:
        """Keep a flag that stands alone (a fork); False if the same evidence is already kept."""
        with self.transaction():
            return self._insert_flag(f)

    def flags(
        self, since: int | None = None, chain: str | None = None, kind: str | None = None
    ) -> list[Flag]:
        q, args = "SELECT %s FROM flags WHERE 1 = 1" % _FLAG_COLS, []
        for cond, value in (("time_us >= ?", since), ("chain = ?", chain), ("kind = ?", kind)):
            if value is not None:
                q += " AND " + cond
                args.append(value)
        return [_flag(r) for r in self._all(q + " ORDER BY time_us, id", args)]

    def count_rejection(
        self, source: str, reason: str, now: int, detail: str = "", count: int = 1
    ) -> None:
        """Count refused input per source, reason and hour: a flood costs one row an hour, and is still seen."""
        window = now - now % REJECTION_WINDOW_US
        with self.transaction():
            self._execute(
                "INSERT INTO rejections (source, reason, window_us, count, first_us, last_us, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, reason, window_us) DO UPDATE SET"
                " count = rejections.count + excluded.count, last_us = excluded.last_us, detail = excluded.detail",
                (source, reason, window, count, now, now, detail[:200]),
            )

    def rejections(self, since: int | None = None) -> list[dict[str, Any]]:
        q = (
            "SELECT source, reason, SUM(count), MIN(first_us), MAX(last_us) FROM rejections"
            + (" WHERE last_us >= ?" if since is not None else "")
            + " GROUP BY source, reason ORDER BY source, reason"
        )
        rows = self._all(q, () if since is None else (since,))
        return [
            {
                "source": r[0],
                "reason": r[1],
                "count": int(r[2]),
                "first": int(r[3]),
                "last": int(r[4]),
            }
            for r in rows
        ]


def _evidence_key(f: Flag) -> bytes:
    import hashlib

    h = hashlib.sha256()
    for part in (f.device or b"", str(f.seq).encode(), f.evidence or b"", f.evidence2 or b""):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


def _is_integrity_error(e: Exception) -> bool:
    if isinstance(e, sqlite3.IntegrityError):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(e, psycopg.IntegrityError)


class SQLiteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str, url: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        # WAL with synchronous FULL: a committed block survives a power cut, not only a crash
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        super().__init__(conn, url)
        self._create()


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as e:
            raise StoreError("PostgreSQL needs psycopg 3: pip install 'lightnode[postgres]'") from e
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", None)
        if schema is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValueError("schema %r: lower-case letters, digits and _" % schema)
        dsn = urlunsplit(parts._replace(query=urlencode(query)))
        try:
            conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        except psycopg.Error as e:
            raise StoreError("cannot open %s: %s" % (_safe(url), e)) from e
        if schema is not None:
            conn.execute('CREATE SCHEMA IF NOT EXISTS "%s"' % schema)
            conn.execute('SET search_path TO "%s"' % schema)
        super().__init__(conn, url)
        self._create()

    def _sql(self, q: str) -> str:
        return q.replace("?", "%s")

    def _begin(self) -> None:
        self._conn.execute("BEGIN")

    def _create(self) -> None:
        with self.transaction():
            for q in _SCHEMA:
                self._execute(q.format(blob="BYTEA", serial="BIGSERIAL PRIMARY KEY"))

    def _executemany(self, q: str, rows: list[tuple[Any, ...]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(q, rows)


def _safe(url: str) -> str:
    """A URL fit for a message: no password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def open_store(url: str | Path) -> Store:
    """A store for ``sqlite:///path`` (``sqlite:////abs/path``), a plain path (SQLite), ``:memory:`` or ``postgresql://...``."""
    url = str(url)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    if url.startswith("sqlite://"):
        # as SQLAlchemy spells it: sqlite:///relative.db, sqlite:////absolute.db, sqlite:// in memory
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        path = path or ":memory:"
    elif "://" in url:
        raise ValueError("store %r: sqlite:///path, a path, or postgresql://..." % url)
    else:
        path = url
    return SQLiteStore(path, url)
