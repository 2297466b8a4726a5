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
        self.reg.add_device(s.device_id, s.public, segment, "pico_w", "0.1.0", "ab" * 32, self.admin)
        self.devices[n], self.prev[n], self.seq[n] = s, bytes(32), 0
        return s

    def send(self, n: int, signer: Signer | None = None, kind: int = 4, body: Any = None) -> None:
        s = signer or self.devices[n]
        data, self.prev[n] = s.make(
            self.seq[n], self.prev[n], (self.clock.t, 1, 500), kind, HEARTBEAT if body is None else body
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
                w.send(n, kind=2 if rnd == 1 and n == 2 else 4, body=EVENT if rnd == 1 and n == 2 else None)
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
    print(len(bundle), r.anchors, r.registry)
