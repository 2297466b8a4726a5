"""``lightnode ledger ...`` and ``lightnode audit`` (lightnode.ledgercli) over a SQLite store.

A store is made with the ledger itself (two devices, blocks, witness
cosignatures, a fork, a gap, rejections); the queries must show it, the
audit must pass it, and every kind of tampering with the file must make
the audit fail and name what it found.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from lightnode import wire
from lightnode.ledger import checkpoint as cp
from lightnode.ledger.audit import audit as run_audit
from lightnode.ledger.chain import Ledger
from lightnode.ledger.store import open_store
from lightnode.ledgercli import audit, ledger

T0 = 1_700_000_000_000_000
HEARTBEAT = {0: "1.0", 1: 50_000, 2: 3, 3: 1, 4: 1, 5: 0}
EVENT = {0: 7, 1: 2, 2: None, 3: None, 4: None, 5: T0}
NODE, W1, W2 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


class Clock:
    t = T0

    def __call__(self) -> int:
        return self.t


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("ledger")
    db = d / "ledger.db"
    clock = Clock()
    witnesses = {b"w1": cp.public_key(W1), b"w2": cp.public_key(W2)}
    lg = Ledger(open_store(db), NODE, b"node-1", clock=clock, witnesses=witnesses)
    devs = {n: wire.Signer(bytes([n]) * 32, bytes([0x4C, 0x4E, 0, n]), "feeder-7") for n in (1, 2)}
    prev = {n: bytes(32) for n in devs}
    for seq in range(6):
        for n, s in devs.items():
            if n == 2 and seq == 3:
                continue  # a gap for device 2
            kind, body = (2, EVENT) if seq == 4 else (4, HEARTBEAT)
            data, prev[n] = s.make(seq, prev[n], (T0 + seq * 1_000_000, 1, 500), kind, body)
            lg.add_transaction(data)
        if seq % 2:
            clock.t += 2_000_000
            b = lg.cut("seg:feeder-7")
            assert b is not None
            lg.add_cosignature(cp.cosign(b.raw, W1, b"w1"))
    fork, _ = devs[1].make(0, bytes(32), (T0, 1, 500), 4, {**HEARTBEAT, 1: 9})
    assert lg.add_transaction(fork).status == "fork"
    lg.add_entry("operator", b"operator action")
    lg.cut("operator")
    lg.cut("general")
    lg.store.count_rejection("ln/feeder-7/4c4e0009/tx", "bad-signature", T0 + 5)
    lg.store.close()
    keys = {s.device_id.hex(): s.public.hex() for s in devs.values()}
    keys.update({b"node-1".hex(): cp.public_key(NODE).hex(), b"w1".hex(): witnesses[b"w1"].hex()})
    kp = d / "keys.json"
    kp.write_text(json.dumps(keys))
    return db, kp, {"d1": devs[1].device_id.hex(), "d2": devs[2].device_id.hex()}


def _json(args: list[str]) -> object:
    r = CliRunner().invoke(ledger, args + ["--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_chains_and_blocks(made: tuple[Path, Path, dict[str, str]]) -> None:
    db, _, _ = made
    rows = _json(["chains", "--store", str(db)])
    assert isinstance(rows, list)
    by = {r["chain"]: r for r in rows}
    assert set(by) == {"seg:feeder-7", "operator", "general"}
    assert by["seg:feeder-7"]["size"] == 11 and by["seg:feeder-7"]["blocks"] == 3
    assert by["seg:feeder-7"]["final_size"] == 11
    blocks = _json(["blocks", "seg:feeder-7", "--store", "sqlite:///" + str(db)])
    assert isinstance(blocks, list)
    assert [(b["size"], b["final"], b["witnesses"]) for b in blocks] == [
        (4, True, [b"w1".hex()]),
        (7, True, [b"w1".hex()]),
        (11, True, [b"w1".hex()]),
    ]
    r = CliRunner().invoke(ledger, ["chains", "--store", str(db)])
    assert r.exit_code == 0 and "seg:feeder-7" in r.output and "general" in r.output


def test_tx_queries(made: tuple[Path, Path, dict[str, str]]) -> None:
    db, _, ids = made
    rows = _json(["tx", "--device", ids["d2"], "--store", str(db)])
    assert isinstance(rows, list)
    assert [r["seq"] for r in rows] == [0, 1, 2, 4, 5]
    assert rows[3]["flags"] == ["gap"]
    events = _json(["tx", "--kind", "event", "--store", str(db)])
    assert isinstance(events, list) and {r["seq"] for r in events} == {4} and len(events) == 2
    window = _json(
        [
            "tx",
            "--since",
            "2023-11-14T22:13:21Z",
            "--until",
            str(T0 + 3_000_000),
            "--store",
            str(db),
        ]
    )
    assert isinstance(window, list) and sorted(r["seq"] for r in window) == [1, 1, 2, 2]
    # the first block's entries: no final checkpoint before them, the first one covers them
    first = _json(["tx", "--device", ids["d1"], "--store", str(db)])
    assert isinstance(first, list)
    assert first[0]["bracket"][0] is None and first[0]["bracket"][1] == T0 + 2_000_000
    assert first[-1]["bracket"] == [T0 + 4_000_000, T0 + 6_000_000]
    r = CliRunner().invoke(ledger, ["tx", "--kind", "nonsense", "--store", str(db)])
    assert r.exit_code != 0
    r = CliRunner().invoke(ledger, ["tx", "--device", ids["d1"], "--store", str(db)])
    assert r.exit_code == 0 and ids["d1"] in r.output


def test_flags_and_rejections(made: tuple[Path, Path, dict[str, str]]) -> None:
    db, _, ids = made
    flags = _json(["flags", "--since", str(T0), "--store", str(db)])
    assert isinstance(flags, list)
    assert sorted(f["kind"] for f in flags) == ["fork", "gap"]
    fork = next(f for f in flags if f["kind"] == "fork")
    assert fork["device"] == ids["d1"] and fork["evidence"] and fork["evidence2"]
    assert _json(["flags", "--since", str(T0 + 10**12), "--store", str(db)]) == []
    rej = _json(["rejections", "--since", "2023-11-14", "--store", str(db)])
    assert rej == [
        {
            "source": "ln/feeder-7/4c4e0009/tx",
            "reason": "bad-signature",
            "count": 1,
            "first": T0 + 5,
            "last": T0 + 5,
        }
    ]
    r = CliRunner().invoke(ledger, ["flags", "--store", str(db.parent / "missing.db")])
    assert r.exit_code != 0 and "no ledger store" in r.output


def test_audit_passes_a_good_store(made: tuple[Path, Path, dict[str, str]]) -> None:
    db, keys, _ = made
    r = CliRunner().invoke(audit, ["--store", str(db), "--keys", str(keys)])
    assert r.exit_code == 0, r.output
    assert "audit: ok" in r.output
    r = CliRunner().invoke(audit, ["--store", str(db), "--keys", str(keys), "--json"])
    report = json.loads(r.output)
    assert report["ok"] and report["checked"]["transactions"] == 11
    assert report["checked"]["checkpoints"] == 5 and report["checked"]["general leaves"] == 4


TAMPER = {
    "a transaction byte": (
        "UPDATE entries SET data = CAST(substr(data, 1, 40) || x'ff' || substr(data, 42) AS BLOB) WHERE idx = 5 AND chain = 'seg:feeder-7'",
        "seg:feeder-7[5]",
    ),
    "a block root": (
        "UPDATE blocks SET root = zeroblob(32) WHERE height = 2 AND chain = 'seg:feeder-7'",
        "seg:feeder-7 block 2: the block row differs",
    ),
    "a removed entry": (
        "DELETE FROM entries WHERE chain = 'seg:feeder-7' AND idx = 10",
        "seg:feeder-7 block 3",
    ),
    "a cosignature of a final block": (
        "DELETE FROM cosignatures WHERE chain = 'seg:feeder-7' AND height = 1",
        "marked final without a witness",
    ),
    "a replaced checkpoint": (
        "UPDATE blocks SET signed = (SELECT signed FROM blocks WHERE chain = 'operator') WHERE chain = 'seg:feeder-7' AND height = 3",
        "seg:feeder-7 block 3",
    ),
    "fork evidence": (
        "UPDATE flags SET evidence2 = evidence WHERE kind = 'fork'",
        "flag fork",
    ),
}


@pytest.mark.parametrize("what", sorted(TAMPER))
def test_audit_names_what_was_tampered_with(
    made: tuple[Path, Path, dict[str, str]], tmp_path: Path, what: str
) -> None:
    db, keys, _ = made
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    for suffix in ("-wal", "-shm"):
        if Path(str(db) + suffix).exists():
            shutil.copy(str(db) + suffix, str(copy) + suffix)
    sql, expect = TAMPER[what]
    with sqlite3.connect(copy) as conn:
        conn.execute(sql)
    r = CliRunner().invoke(audit, ["--store", str(copy), "--keys", str(keys)])
    assert r.exit_code == 1, r.output
    assert expect in r.output, r.output


def test_audit_without_a_device_key(
    made: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    db, keys, ids = made
    k = json.loads(keys.read_text())
    del k[ids["d2"]]
    kp = tmp_path / "keys.json"
    kp.write_text(json.dumps(k))
    report = run_audit(open_store(db), {bytes.fromhex(a): bytes.fromhex(b) for a, b in k.items()})
    assert not report.ok and any(
        "no public key for device " + ids["d2"] in f for f in report.failures
    )
    r = CliRunner().invoke(audit, ["--store", str(db), "--keys", str(kp)])
    assert r.exit_code == 1 and "no public key" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    r = CliRunner().invoke(audit, ["--store", str(db), "--keys", str(bad)])
    assert r.exit_code != 0 and "keys" in r.output
