"""The ledger over its store, SQLite and PostgreSQL alike (lightnode.ledger.chain, .store, .checkpoint).

Every test runs twice: against a SQLite file and against PostgreSQL on
127.0.0.1:5432 (database ``test``, a fresh schema per test, dropped after).
Without a PostgreSQL that answers, its half is skipped with the reason,
except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _need import missing
from lightnode import wire
from lightnode.ledger import checkpoint as cp
from lightnode.ledger import merkle
from lightnode.ledger.chain import ADDED, DUPLICATE, FORK, Ledger
from lightnode.ledger.errors import CheckpointError, StoreError
from lightnode.ledger.store import FLAG_GAP, FLAG_LATE, FLAG_PREV, Entry, open_store

PG_BASE = os.environ.get("LIGHTNODE_TEST_PG", "postgresql://127.0.0.1:5432/test")
T0 = 1_700_000_000_000_000
HEARTBEAT = {0: "1.0", 1: 50_000, 2: 3, 3: 1, 4: 1, 5: 0}
NODE_SEED, W1_SEED, W2_SEED = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def _pg_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (the postgres extra)"
    try:
        psycopg.connect(PG_BASE, connect_timeout=3).close()
    except Exception as e:  # any failure to answer
        return "PostgreSQL at %s does not answer: %s" % (PG_BASE, str(e).strip()[:120])
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "ledger.db")
        return
    why = _pg_unavailable()
    if why:
        missing(why)
    import psycopg

    schema = "ln_test_%d_%s" % (os.getpid(), secrets.token_hex(4))
    yield PG_BASE + "?schema=" + schema
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % schema)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def _ledger(url: str, clock: Clock, **kw: object) -> Ledger:
    witnesses = {b"w1": cp.public_key(W1_SEED), b"w2": cp.public_key(W2_SEED)}
    return Ledger(open_store(url), NODE_SEED, b"node-1", clock=clock, witnesses=witnesses, **kw)  # type: ignore[arg-type]


class Device:
    def __init__(self, n: int, segment: str = "feeder-7") -> None:
        self.signer = wire.Signer(bytes([n]) * 32, bytes([0x4C, 0x4E, 0, n]), segment)
        self.prev = bytes(32)
        self.seq = 0

    def tx(self, seq: int | None = None, t: int | None = None, body: dict | None = None) -> bytes:
        seq = self.seq if seq is None else seq
        data, tx_id = self.signer.make(
            seq, self.prev, (t or T0 + seq * 1000, 1, 500), 4, body or HEARTBEAT
        )
        self.prev, self.seq = tx_id, seq + 1
        return data


def test_blocks_proofs_and_restart(store_url: str) -> None:
    clock = Clock()
    ledger = _ledger(store_url, clock, block_entries=5)
    dev = Device(1)
    sent = [dev.tx() for _ in range(12)]
    for data in sent:
        assert ledger.add_transaction(data).status == ADDED
    signed = ledger.cut_due()  # 12 pending: one block of all twelve
    assert [s.checkpoint.size for s in signed] == [12]
    sent += [dev.tx() for _ in range(3)]
    for data in sent[12:]:
        ledger.add_transaction(data)
    clock.t += 10_000_000  # by age
    s2 = ledger.cut_due()
    assert [(s.checkpoint.chain, s.checkpoint.size) for s in s2] == [
        ("seg:feeder-7", 15),
        ("general", 2),
    ]
    c = s2[0].checkpoint
    leaves = [merkle.leaf_hash(d) for d in sent]
    assert c.root == merkle.root(leaves) and c.prev == signed[0].header_hash
    trusted = {b"node-1": cp.public_key(NODE_SEED)}
    assert cp.verify_checkpoint(s2[0].raw, trusted).checkpoint == c
    tree = ledger.chain("seg:feeder-7").tree
    for i in (0, 7, 14):
        merkle.verify_inclusion(merkle.leaf_hash(sent[i]), i, 15, tree.inclusion_proof(i), c.root)
    merkle.verify_consistency(12, 15, tree.consistency_proof(12), signed[0].checkpoint.root, c.root)
    old_proof = tree.inclusion_proof(2, 15)
    ledger.store.close()

    # restart: the same state, nothing lost, nothing duplicated
    again = _ledger(store_url, clock)
    ch = again.chain("seg:feeder-7")
    assert ch.size == 15 and ch.tree.root() == c.root
    assert again.add_transaction(sent[3]).status == DUPLICATE
    nxt = dev.tx()
    assert again.add_transaction(nxt).index == 15
    assert again.chain("seg:feeder-7").tree.inclusion_proof(2, 15) == old_proof
    again.cut("seg:feeder-7")
    assert [e.seq for e in again.store.entries(chain="seg:feeder-7")] == list(range(16))
    # the general chain holds each segment checkpoint as it was signed
    again.cut("general")
    gen = [e.data for e in again.store.entries(chain="general")]
    assert gen[0] == signed[0].raw and gen[1] == s2[0].raw and len(gen) == 3


def test_fork_is_evidence_not_an_entry(store_url: str) -> None:
    ledger = _ledger(store_url, Clock())
    dev = Device(2)
    first = dev.tx(seq=0)
    other = Device(2).tx(seq=0, body={**HEARTBEAT, 1: 1})
    assert ledger.add_transaction(first).status == ADDED
    assert ledger.add_transaction(other).status == FORK  # against a pending entry
    ledger.cut("seg:feeder-7")
    assert ledger.add_transaction(other).status == FORK  # against a committed one: kept once
    assert ledger.add_transaction(first).status == DUPLICATE
    forks = ledger.store.flags(kind="fork")
    assert len(forks) == 1
    assert forks[0].evidence == first and forks[0].evidence2 == other and forks[0].seq == 0
    assert [e.data for e in ledger.store.entries()] == [first]
    # and the database itself refuses a second entry under (chain, device, seq)
    c = ledger.chain("seg:feeder-7")
    e = Entry("seg:feeder-7", 1, merkle.leaf_hash(other), other, dev.signer.device_id, 0)
    c.tree.append(e.leaf_hash)
    head = ledger.store.head("seg:feeder-7")
    assert head is not None
    block = cp.Checkpoint("seg:feeder-7", 2, c.tree.root(), head.header_hash, T0)
    from lightnode.ledger.store import Block

    with pytest.raises(StoreError):
        ledger.store.commit_block(
            Block("seg:feeder-7", 2, 2, block.root, block.header_hash, block.prev, T0, b"x", b""),
            [e],
        )
    assert ledger.store.head("seg:feeder-7") == head
    assert len(list(ledger.store.entries(chain="seg:feeder-7"))) == 1


def test_flags_on_committed_entries(store_url: str) -> None:
    clock = Clock()
    ledger = _ledger(store_url, clock)
    dev = Device(3)
    txs = {s: dev.tx(seq=s) for s in range(4)}
    ledger.add_transaction(txs[0])
    assert ledger.add_transaction(txs[2]).flags == FLAG_GAP
    broken = Device(3)
    broken.seq = 3
    third = broken.tx(seq=3)
    assert ledger.add_transaction(third).flags == FLAG_PREV  # prev of zeros, not seq 2's id
    assert ledger.add_transaction(txs[1]).flags == FLAG_LATE
    back = Device(3)
    back.prev = wire.decode(third).id
    late_clock = back.tx(seq=4, t=T0 - 10)
    assert ledger.add_transaction(late_clock).flags & 8
    skew = back.tx(seq=5, t=T0 + 3_600_000_000)
    assert ledger.add_transaction(skew).flags & 16
    ledger.cut("seg:feeder-7")
    kinds = [f.kind for f in ledger.store.flags()]
    assert kinds == ["gap", "prev-mismatch", "late", "clock-back", "time-skew"]
    assert len(list(ledger.store.entries())) == 6  # every one committed


def test_a_failed_block_leaves_nothing_and_is_retried(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    ledger = _ledger(store_url, clock)
    dev = Device(4)
    for _ in range(3):
        ledger.add_transaction(dev.tx())
    ledger.cut("seg:feeder-7")
    for _ in range(4):
        ledger.add_transaction(dev.tx())
    store = ledger.store

    def boom(*a: object) -> None:
        raise RuntimeError("power cut between statements")

    monkeypatch.setattr(store, "_insert_entries", boom)
    with pytest.raises(RuntimeError):
        ledger.cut("seg:feeder-7")
    monkeypatch.undo()
    head = store.head("seg:feeder-7")
    assert (
        head is not None and head.size == 3 and len(list(store.entries(chain="seg:feeder-7"))) == 3
    )
    fresh = _ledger(store_url, clock)
    assert fresh.chain("seg:feeder-7").size == 3
    s = ledger.cut("seg:feeder-7")  # the same pending block goes in on the retry
    assert s is not None and s.checkpoint.size == 7
    assert [e.index for e in store.entries(chain="seg:feeder-7")] == list(range(7))


def test_cosignatures_finality_and_time_brackets(store_url: str) -> None:
    clock = Clock()
    ledger = _ledger(store_url, clock)
    dev = Device(5)
    ledger.add_transaction(dev.tx())
    clock.t += 1_000_000
    b1 = ledger.cut("seg:feeder-7")
    ledger.add_transaction(dev.tx())
    ledger.add_transaction(dev.tx())
    clock.t += 1_000_000
    b2 = ledger.cut("seg:feeder-7")
    assert b1 is not None and b2 is not None
    assert ledger.bracket("seg:feeder-7", 1) == (None, None)  # nothing final yet
    # a producer signature alone is not final; the producer's key does not count as a witness
    with pytest.raises(CheckpointError, match="not-final"):
        cp.verify_final(b1.raw, [], ledger.producers, ledger.witnesses)
    with pytest.raises(CheckpointError):
        ledger.add_cosignature(cp.cosign(b1.raw, NODE_SEED, b"node-1"))
    assert ledger.add_cosignature(cp.cosign(b1.raw, W1_SEED, b"w1")) is True
    assert ledger.add_cosignature(cp.cosign(b2.raw, W2_SEED, b"w2")) is True
    assert ledger.add_cosignature(cp.cosign(b2.raw, W1_SEED, b"w1")) is True
    assert len(ledger.store.cosignatures("seg:feeder-7", 2)) == 2
    assert ledger.bracket("seg:feeder-7", 0) == (None, b1.checkpoint.time)
    assert ledger.bracket("seg:feeder-7", 2) == (b1.checkpoint.time, b2.checkpoint.time)
    # a witness key unknown to us, or a cosignature over another checkpoint at that size
    with pytest.raises(CheckpointError, match="unknown-key"):
        ledger.add_cosignature(cp.cosign(b1.raw, b"\x09" * 32, b"w9"))
    other = cp.sign(cp.Checkpoint("seg:feeder-7", 1, bytes(32), cp.GENESIS, T0), W1_SEED, b"w1")
    with pytest.raises(CheckpointError, match="checkpoint-fork"):
        ledger.add_cosignature(other)
    assert [f.kind for f in ledger.store.flags()] == ["checkpoint-fork"]


def test_verify_checkpoint_refusals() -> None:
    c = cp.Checkpoint("seg:feeder-7", 3, b"\x11" * 32, cp.GENESIS, T0, (5, b"\x22" * 32))
    signed = cp.sign(c, NODE_SEED, b"node-1")
    trusted = {b"node-1": cp.public_key(NODE_SEED)}
    assert cp.verify_checkpoint(signed, trusted).checkpoint == c
    with pytest.raises(CheckpointError, match="unknown-key"):
        cp.verify_checkpoint(signed, {b"node-2": cp.public_key(NODE_SEED)})
    with pytest.raises(CheckpointError, match="bad-signature"):
        cp.verify_checkpoint(signed, {b"node-1": cp.public_key(W1_SEED)})
    for i in range(len(signed)):  # every single-byte change is refused
        bad = bytearray(signed)
        bad[i] ^= 0x01
        with pytest.raises(CheckpointError):
            cp.verify_checkpoint(bytes(bad), trusted)
    # a transaction envelope is not a checkpoint
    data, _ = wire.make(NODE_SEED, b"node-1", "feeder-7", 0, bytes(32), (T0, 1, 1), 4, HEARTBEAT)
    with pytest.raises(CheckpointError):
        cp.verify_checkpoint(wire.decode(data).envelope, trusted)
    with pytest.raises(ValueError):
        cp.Checkpoint("seg:Feeder", 0, bytes(32), cp.GENESIS, 0).payload()


def test_rejections_are_counted(store_url: str) -> None:
    store = open_store(store_url)
    for i in range(5):
        store.count_rejection("ln/feeder-7/4c4e0009/tx", "bad-signature", T0 + i)
    store.count_rejection("ln/feeder-7/4c4e0009/tx", "malformed", T0)
    store.count_rejection("ln/feeder-7/4c4e0009/tx", "bad-signature", T0 + 7_200_000_000)
    got = {(r["reason"], r["count"]) for r in store.rejections()}
    assert got == {("bad-signature", 6), ("malformed", 1)}
    assert [r["count"] for r in store.rejections(since=T0 + 3_600_000_000)] == [1]


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from lightnode import wire
    from lightnode.ledger.chain import Ledger
    from lightnode.ledger.store import open_store
    ledger = Ledger(open_store(sys.argv[1]), b"\\x01" * 32, b"node-1", block_entries=7)
    s = wire.Signer(b"\\x07" * 32, b"LN\\x00\\x07", "feeder-7")
    prev, seq = bytes(32), 0
    print("ready", flush=True)
    while True:
        data, prev = s.make(seq, prev, (1_700_000_000_000_000 + seq, 1, 1), 4,
                            {0: "1.0", 1: 1, 2: 1, 3: 1, 4: 1, 5: 0})
        ledger.add_transaction(data)
        ledger.cut_due()
        seq += 1
    """
)


def test_killed_writer_leaves_whole_blocks(tmp_path: Path) -> None:
    # SIGKILL in the middle of writing blocks: whatever is on disk is whole blocks
    url = str(tmp_path / "killed.db")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, url], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(0.8)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ledger = Ledger(open_store(url), b"\x01" * 32, b"node-1", block_entries=7)
    head = ledger.store.head("seg:feeder-7")
    assert head is not None and head.size % 7 == 0 and head.size > 0
    entries = list(ledger.store.entries(chain="seg:feeder-7"))
    assert [e.seq for e in entries] == list(range(head.size))
    assert merkle.root([e.leaf_hash for e in entries]) == head.root
    assert ledger.chain("seg:feeder-7").tree.root() == head.root


def test_audit_passes_what_the_ledger_wrote(store_url: str) -> None:
    from lightnode.ledger.audit import audit

    clock = Clock()
    ledger = _ledger(store_url, clock)
    dev = Device(6)
    for _ in range(9):
        ledger.add_transaction(dev.tx())
    b = ledger.cut("seg:feeder-7")
    assert b is not None
    ledger.add_cosignature(cp.cosign(b.raw, W2_SEED, b"w2"))
    ledger.add_transaction(Device(6).tx(seq=0, body={**HEARTBEAT, 2: 9}))  # a fork
    ledger.cut("general")
    keys = {
        dev.signer.device_id: dev.signer.public,
        b"node-1": cp.public_key(NODE_SEED),
        b"w2": cp.public_key(W2_SEED),
    }
    report = audit(ledger.store, keys)
    assert report.ok, report.failures
    assert report.checked["transactions"] == 9 and report.checked["cosignatures"] == 1
