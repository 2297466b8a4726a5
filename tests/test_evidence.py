"""Evidence bundles (lightnode.evidence, ``lightnode evidence``) and the audit against a registry.

A real ledger store is built with the ``Ledger``: devices signing with
``wire.Signer``, registered in a real registry whose transactions are also
the ledger's registry chain, blocks cut and cosigned by two witnesses, the
general chain committing every sidechain checkpoint. A bundle exported from
it must verify against the trust roots; every byte changed (a sample of at
least 2,000 positions covering every structural byte) must make it fail
and name the object; a consistent bundle under other keys, a missing
cosignature and a key used outside its validity must be refused.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lightnode import evidence, registry
from lightnode.evidence import Selection, Trust
from lightnode.ledger import checkpoint as cp
from lightnode.ledger.audit import audit as run_audit
from lightnode.ledger.chain import Ledger
from lightnode.ledger.store import open_store
from lightnode.wire import Signer

T0 = 1_700_000_000_000_000
HEARTBEAT = {0: "1.0", 1: 50_000, 2: 3, 3: 1, 4: 1, 5: 0}
EVENT = {0: 7, 1: 2, 2: None, 3: None, 4: None, 5: T0}
ADMIN = b"\xa0" * 32


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


class World:
    """A store and a registry made the way a full node makes them."""

    def __init__(self, d: Path, salt: int = 0) -> None:
        self.dir = d
        self.clock = Clock()
        seeds = [bytes([salt + 1 + i]) * 32 for i in range(3)]
        self.node, self.w1, self.w2 = seeds
        self.kids = [registry.key_id(cp.public_key(s)) for s in seeds]
        self.reg = registry.open_registry(d / "registry.db", clock=self.clock)
        admin_seed = bytes([ADMIN[0] ^ salt]) * 32
        self.reg.init_admin("alice", cp.public_key(admin_seed), admin_seed)
        self.admin = self.reg.as_operator("alice", admin_seed)
        for name, s in zip(("node-1", "witness-1", "witness-2"), seeds, strict=True):
            self.reg.add_node_key(name, "checkpoint", cp.public_key(s), self.admin)
        self.store_path = d / "ledger.db"
        self.store = open_store(self.store_path)
        witnesses = {self.kids[1]: cp.public_key(self.w1), self.kids[2]: cp.public_key(self.w2)}
        self.ledger = Ledger(
            self.store,
            self.node,
            self.kids[0],
            clock=self.clock,
            witnesses=witnesses,
            registry=self._registry_checkpoint,
        )
        self.mirrored = 0
        self.devices: dict[int, Signer] = {}
        self.prev: dict[int, bytes] = {}
        self.seq: dict[int, int] = {}

    def _registry_checkpoint(self) -> tuple[int, bytes] | None:
        h = self.store.head(cp.KIND_REGISTRY)
        return None if h is None else (h.size, h.root)

    def trust(self, quorum: int = 1) -> Trust:
        return Trust(
            {self.kids[0]: cp.public_key(self.node)},
            {self.kids[1]: cp.public_key(self.w1), self.kids[2]: cp.public_key(self.w2)},
            quorum=quorum,
        )

    def cosign(self, signed: cp.Signed | None, witnesses: tuple[bytes, ...] | None = None) -> None:
        assert signed is not None
        for w in (self.w1, self.w2) if witnesses is None else witnesses:
            self.ledger.add_cosignature(cp.cosign(signed.raw, w, registry.key_id(cp.public_key(w))))

    def sync_registry(self) -> None:
        """The registry's new transactions onto the ledger's registry chain, cut and cosigned."""
        new = list(self.reg.store.transactions(self.mirrored))
        for raw in new:
            self.ledger.add_entry(cp.KIND_REGISTRY, raw)
        self.mirrored += len(new)
        if new:
            self.tick()
            self.cosign(self.ledger.cut(cp.KIND_REGISTRY))

    def tick(self, us: int = 1_000_000) -> None:
        self.clock.t += us

    def add_device(self, n: int, segment: str = "feeder-7") -> Signer:
        s = Signer(bytes([0x40 + n]) * 32, bytes([0x4C, 0x4E, 0, n]), segment)
        self.reg.add_device(
            s.device_id, s.public, segment, "pico_w", "0.1.0", "ab" * 32, self.admin
        )
        self.devices[n], self.prev[n], self.seq[n] = s, bytes(32), 0
        return s

    def send(self, n: int, signer: Signer | None = None, kind: int = 4, body: Any = None) -> None:
        s = signer or self.devices[n]
        data, self.prev[n] = s.make(
            self.seq[n],
            self.prev[n],
            (self.clock.t, 1, 500),
            kind,
            HEARTBEAT if body is None else body,
        )
        self.seq[n] += 1
        assert self.ledger.add_transaction(data).status == "added"

    def cut(self, chain: str = "seg:feeder-7", witnesses: tuple[bytes, ...] | None = None) -> None:
        self.tick()
        self.cosign(self.ledger.cut(chain), witnesses)

    def cut_general(self) -> None:
        self.tick()
        self.cosign(self.ledger.cut(cp.KIND_GENERAL))


def build(d: Path, salt: int = 0) -> World:
    w = World(d, salt)
    for n in (1, 2, 3):
        w.add_device(n)
    w.add_device(4, "feeder-9")
    w.sync_registry()
    for rnd in range(3):
        for _ in range(2):
            for n in (1, 2, 3):
                w.send(
                    n,
                    kind=2 if rnd == 1 and n == 2 else 4,
                    body=EVENT if rnd == 1 and n == 2 else None,
                )
                w.tick(100_000)
        w.cut()
        if rnd == 0:
            w.send(4)
            w.send(4)
            w.cut("seg:feeder-9")
            # device 3 gets a new key from seq 2 on; device 4's old key stops at seq 2
            old3 = w.devices[3]
            w.devices[3] = Signer(b"\x53" * 32, old3.device_id, "feeder-7")
            w.reg.rotate_device_key(old3.device_id, w.devices[3].public, 2, w.admin)
            new4 = Signer(b"\x54" * 32, w.devices[4].device_id, "feeder-9")
            w.reg.rotate_device_key(new4.device_id, new4.public, 2, w.admin)
            w.sync_registry()
        w.cut_general()
    # device 4's old key signs seq 2 anyway (a stolen key); the node took it
    w.send(4)
    w.cut("seg:feeder-9")
    w.cut_general()
    return w


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build(tmp_path_factory.mktemp("evidence"))


@pytest.fixture(scope="module")
def bundle(world: World) -> bytes:
    ex = evidence.export(world.store, world.reg, Selection(chain="seg:feeder-7"))
    assert ex.transactions == 18 and not ex.left_out
    return ex.data


def test_export_verifies(world: World, bundle: bytes) -> None:
    r = evidence.verify(bundle, world.trust())
    assert r.ok, r.failures
    assert len(r.transactions) == 18 and all(t["verified"] for t in r.transactions)
    assert r.anchors and all(a.startswith("checkpoint general@") for a in r.anchors)
    assert r.registry["anchored_by"]
    assert all(t["bracket_adjacent"] for t in r.transactions)


def _heads(data: bytes) -> tuple[list[int], list[tuple[int, int]]]:
    """Every CBOR head byte of a bundle (the structure), and the spans of its byte strings' contents."""
    heads: list[int] = []
    spans: list[tuple[int, int]] = []

    def walk(pos: int) -> int:
        ib = data[pos]
        mt, ai = ib >> 5, ib & 31
        size = 0 if ai < 24 else 1 << (ai - 24)
        heads.extend(range(pos, pos + 1 + size))
        if ib == 0xF6:
            return pos + 1
        n = ai if ai < 24 else int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
        pos += 1 + size
        if mt in (2, 3):
            if mt == 3:
                heads.extend(range(pos, pos + n))
            else:
                spans.append((pos, pos + n))
            return pos + n
        if mt == 4:
            for _ in range(n):
                pos = walk(pos)
        return pos

    assert walk(0) == len(data)
    return heads, spans


NAMED = ("bundle: ", "transaction ", "checkpoint ", "registry transaction ", "registry: ")


def test_every_byte_changed_fails_and_names_the_object(world: World, bundle: bytes) -> None:
    """Each structural byte, three positions in every byte string, and random others: at least 2,000."""
    heads, spans = _heads(bundle)
    rng = random.Random(7)
    positions = set(heads)
    for s, e in spans:
        positions.update((s, e - 1, rng.randrange(s, e)))
    while len(positions) < 2_400:
        positions.add(rng.randrange(len(bundle)))
    assert len(positions) >= 2_000
    trust = world.trust()
    t = time.perf_counter()
    for i in sorted(positions):
        for delta in (rng.randrange(1, 256),):
            bad = bytearray(bundle)
            bad[i] ^= delta
            r = evidence.verify(bytes(bad), trust)
            assert not r.ok, "byte %d ^ %d passed" % (i, delta)
            assert all(f.startswith(NAMED) for f in r.failures), r.failures
    assert time.perf_counter() - t < 60


def test_named_failures(world: World, bundle: bytes) -> None:
    b = evidence.decode(bundle)
    trust = world.trust()
    # a proof hash of transaction 3 changed
    t3 = b.transactions[3]
    bad = evidence.Bundle(
        b.registry,
        b.checkpoints,
        b.transactions[:3]
        + (evidence.TxEntry(t3.data, t3.checkpoint, t3.index, (b"\x00" * 32,) + t3.proof[1:]),)
        + b.transactions[4:],
    )
    r = evidence.verify(bad.encode(), trust)
    assert len(r.failures) == 1
    f = r.failures[0]
    assert f.startswith(
        "transaction 3 (device 4c4e0001, seq 1): inclusion proof does not lead to checkpoint seg:feeder-7@6 root"
    ), f
    # a registry transaction left out
    r = evidence.verify(
        evidence.Bundle(b.registry[:-1], b.checkpoints, b.transactions).encode(), trust
    )
    assert any(
        f.startswith(
            "checkpoint seg:feeder-7@18: validated against registry size 10; the bundle holds 9"
        )
        for f in r.failures
    ), r.failures
    # truncated
    r = evidence.verify(bundle[:-1], trust)
    assert len(r.failures) == 1 and r.failures[0].startswith("bundle: byte "), r.failures
    assert r.failures[0].endswith("truncated") or "left" in r.failures[0], r.failures


def test_untrusted_keys_are_refused_even_when_consistent(tmp_path: Path, world: World) -> None:
    other = build(tmp_path, salt=0x20)
    data = evidence.export(other.store, other.reg, Selection(chain="seg:feeder-7")).data
    assert evidence.verify(data, other.trust()).ok  # consistent in itself
    r = evidence.verify(data, world.trust())
    assert not r.ok and not r.anchors
    assert any("which is not a trusted node key" in f for f in r.failures)
    assert any("not a trusted witness key" in f for f in r.failures)
    assert any(f.startswith("registry: not anchored") for f in r.failures)
    # the genesis admin as a trust root does not rescue checkpoints signed by strangers
    t = world.trust()
    r = evidence.verify(
        data, Trust(t.nodes, t.witnesses, frozenset({cp.public_key(bytes([ADMIN[0]]) * 32)}))
    )
    assert any(
        f.startswith("registry transaction 0: the genesis admin key is not among")
        for f in r.failures
    )


def _without_cosignatures(b: evidence.Bundle, n: int, keep: int) -> bytes:
    c = b.checkpoints[n]
    cps = list(b.checkpoints)
    cps[n] = evidence.CheckpointEntry(c.signed, c.cosignatures[:keep], c.consistency, c.general)
    return evidence.Bundle(b.registry, tuple(cps), b.transactions).encode()


def test_missing_cosignature(world: World, bundle: bytes) -> None:
    b = evidence.decode(bundle)
    n = next(
        i
        for i, c in enumerate(b.checkpoints)
        if cp.decode(c.signed).checkpoint.chain == "seg:feeder-7"
    )
    label = "checkpoint seg:feeder-7@%d" % cp.decode(b.checkpoints[n].signed).checkpoint.size
    r = evidence.verify(_without_cosignatures(b, n, 0), world.trust(quorum=1))
    assert r.failures == [
        label + ": not final: 0 cosignature(s) by trusted witnesses, the quorum is 1"
    ]
    assert not any(t["verified"] for t in r.transactions if t["checkpoint"] == label[11:])
    # one of two left: enough for a quorum of 1, not of 2
    assert evidence.verify(_without_cosignatures(b, n, 1), world.trust(quorum=1)).ok
    r = evidence.verify(_without_cosignatures(b, n, 1), world.trust(quorum=2))
    assert r.failures == [
        label + ": not final: 1 cosignature(s) by trusted witnesses, the quorum is 2"
    ]
    assert evidence.verify(bundle, world.trust(quorum=2)).ok


def test_key_outside_its_validity(world: World) -> None:
    d4 = world.devices[4].device_id
    ex = evidence.export(world.store, world.reg, Selection(device=d4))
    r = evidence.verify(ex.data, world.trust())
    assert ex.transactions == 3
    assert r.failures == [
        "transaction 2 (device 4c4e0004, seq 2): signed with the device key for seq 0..1, "
        "not with the key valid for seq 2 (%s…%s)"
        % (world.reg.device(d4).public_key.hex()[:8], world.reg.device(d4).public_key.hex()[-4:])
    ]
    # device 3's rotation is honoured: old key below seq 2, new key from it
    d3 = world.devices[3].device_id
    assert evidence.verify(
        evidence.export(world.store, world.reg, Selection(device=d3)).data, world.trust()
    ).ok


def _trust_file(world: World, d: Path) -> Path:
    p = d / "trust.json"
    p.write_text(json.dumps(world.trust().to_json()))
    return p


def test_cli_export_and_verify(tmp_path: Path, world: World) -> None:
    from lightnode.evidencecli import evidence as group

    out = tmp_path / "case.lnev"
    r = CliRunner().invoke(
        group,
        [
            "export",
            "--store",
            str(world.store_path),
            "--registry",
            str(world.dir / "registry.db"),
            "--device",
            world.devices[2].device_id.hex(),
            "--kind",
            "event",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.startswith("%s: 2 transaction(s)" % out)
    trust = _trust_file(world, tmp_path)
    r = CliRunner().invoke(group, ["verify", str(out), "--trust", str(trust)])
    assert r.exit_code == 0, r.output
    assert "anchored to checkpoint general@" in r.output and r.output.rstrip().endswith(
        "evidence: ok"
    )
    r = CliRunner().invoke(group, ["verify", str(out), "--trust", str(trust), "--json"])
    rep = json.loads(r.output)
    assert rep["ok"] and [t["kind"] for t in rep["transactions"]] == ["event", "event"]
    bad = bytearray(out.read_bytes())
    bad[-40] ^= 1  # inside the last transaction's inclusion proof
    out.write_bytes(bytes(bad))
    r = CliRunner().invoke(group, ["verify", str(out), "--trust", str(trust)])
    assert r.exit_code == 1
    assert (
        "FAIL transaction 1 (device 4c4e0002, seq 3): inclusion proof does not lead to checkpoint seg:feeder-7@12 root"
        in r.output
    )


def test_audit_with_registry(tmp_path: Path, world: World) -> None:
    from lightnode.ledgercli import audit as audit_cmd

    r = run_audit(world.store, {}, world.reg)
    # the stolen old key of device 4 signed seq 2: the registry says that key stops at seq 1
    assert r.failures == [
        "seg:feeder-9[2]: transaction signature: bad-signature: Ed25519 verification failed"
    ]
    assert r.checked["registry references"] > 0 and r.checked["cosignatures"] > 0
    res = CliRunner().invoke(
        audit_cmd, ["--store", str(world.store_path), "--registry", str(world.dir / "registry.db")]
    )
    assert res.exit_code == 1 and "FAIL seg:feeder-9[2]" in res.output
    # --keys still works; a flat file has one key per device, so the rotations do not fit it
    keys = {k.hex(): v.hex() for k, v in {**world.trust().nodes, **world.trust().witnesses}.items()}
    keys.update({s.device_id.hex(): s.public.hex() for s in world.devices.values()})
    kp = tmp_path / "keys.json"
    kp.write_text(json.dumps(keys))
    res = CliRunner().invoke(audit_cmd, ["--store", str(world.store_path), "--keys", str(kp)])
    assert res.exit_code == 1 and "FAIL seg:feeder-7[" in res.output
    assert CliRunner().invoke(audit_cmd, ["--store", str(world.store_path)]).exit_code == 2


def test_audit_registry_mismatch(tmp_path: Path) -> None:
    w = build(tmp_path)
    # a registry transaction the ledger never saw, and a registry chain leaf changed
    w.reg.add_device(
        b"\x4c\x4e\x00\x09",
        cp.public_key(b"\x59" * 32),
        "feeder-7",
        "pico_w",
        "0.1.0",
        "ab" * 32,
        w.admin,
    )
    import sqlite3

    w.store.close()
    con = sqlite3.connect(w.store_path)
    con.execute("UPDATE entries SET data = X'00' WHERE chain = 'registry' AND idx = 3")
    con.commit()
    con.close()
    r = run_audit(open_store(w.store_path), {}, w.reg)
    assert "registry[3]: is not registry transaction 3" in r.failures
    assert any(
        f.startswith("registry block 1: the tree of the stored entries") or "leaf hash" in f
        for f in r.failures
    )
