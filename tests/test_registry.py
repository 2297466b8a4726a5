"""The registry: replay equals state, a broken chain is refused, only admins change it, rotation, quarantine."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode import keys, registry
from lightnode import wire as codec
from lightnode.firmware.ln import wire
from lightnode.registry import RegistryError


def seed(n: int) -> bytes:
    return bytes([n]) * 32


def pub(n: int) -> bytes:
    return keys.public_key(seed(n))


ADMIN = seed(1)
DIGEST = "ab" * 32


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000_000_000

    def __call__(self) -> int:
        self.t += 1_000
        return self.t


def new(path: Path | str = ":memory:") -> registry.Registry:
    reg = registry.open_registry(path, clock=Clock())
    reg.init_admin("alice", pub(1), ADMIN)
    return reg


def snapshot(reg: registry.Registry) -> Any:
    return (
        len(reg),
        reg.head,
        sorted(reg.devices(include_revoked=True), key=lambda d: d.device_id),
        sorted(reg.operators(include_revoked=True), key=lambda o: o.name),
        reg.node_keys(include_revoked=True),
        reg.segments(),
    )


def populated(path: Path) -> registry.Registry:
    reg = new(path)
    admin = reg.as_operator("alice", ADMIN)
    reg.add_operator("bob", "operator", pub(2), admin)
    reg.add_operator("carol", "admin", pub(3), admin)
    for i in range(4):
        reg.add_device(
            bytes([i]) * 8, pub(10 + i), "feeder-%d" % (i % 2), "pico_w", "0.1.0", DIGEST, admin
        )
    carol = reg.as_operator("carol", seed(3))
    reg.revoke_device(bytes([1]) * 8, "stolen from the substation", carol)
    reg.rotate_device_key(bytes([2]) * 8, pub(30), 100, carol)
    reg.add_node_key("node-a", wire.ROLE_ACK, pub(40), admin)
    reg.add_node_key("node-a", wire.ROLE_REGISTRY, pub(41), admin)
    reg.revoke_operator("bob", "left the company", carol)
    return reg


def rows(path: Path) -> list[bytes]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT tx FROM registry_tx ORDER BY idx")]


def rewrite(path: Path, txs: list[bytes]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM registry_tx")
        db.executemany("INSERT INTO registry_tx (idx, tx) VALUES (?, ?)", list(enumerate(txs)))


# -- replay ----------------------------------------------------------------------------------


def test_replay_equals_state(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = populated(path)
    before = snapshot(reg)
    reg.close()
    again = registry.open_registry(path)
    assert snapshot(again) == before
    assert len(again) == 12
    assert again.genesis is not None and again.genesis.body["name"] == "alice"


def test_memory_and_sqlite_url(tmp_path: Path) -> None:
    reg = registry.open_registry("sqlite://" + str(tmp_path / "u.db"))
    assert len(reg) == 0 and reg.head == bytes(32)
    assert (tmp_path / "u.db").exists()


def test_tampered_transaction_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    populated(path).close()
    txs = rows(path)
    t = bytearray(txs[5])
    t[-70] ^= 1  # inside the payload: the signature no longer holds
    rewrite(path, txs[:5] + [bytes(t)] + txs[6:])
    with pytest.raises(RegistryError) as e:
        registry.open_registry(path)
    assert e.value.reason in (registry.R_SIGNATURE, registry.R_MALFORMED)
    assert "registry transaction 5" in str(e.value)


@pytest.mark.parametrize("how", ["removed", "reordered", "truncated-head", "duplicated"])
def test_broken_chain_refused(tmp_path: Path, how: str) -> None:
    path = tmp_path / "r.db"
    populated(path).close()
    txs = rows(path)
    if how == "removed":
        txs = txs[:3] + txs[4:]
    elif how == "reordered":
        txs[3], txs[4] = txs[4], txs[3]
    elif how == "truncated-head":
        txs = txs[1:]
    else:
        txs = txs[:4] + [txs[3]] + txs[4:]
    rewrite(path, txs)
    with pytest.raises(RegistryError):
        registry.open_registry(path)


def test_dropping_the_tail_is_a_shorter_registry_not_a_broken_one(tmp_path: Path) -> None:
    # A chain alone cannot tell a missing tail; the ledger's checkpoints will.
    path = tmp_path / "r.db"
    populated(path).close()
    rewrite(path, rows(path)[:6])
    assert len(registry.open_registry(path)) == 6


def test_forged_change_by_a_non_admin_refused_on_open(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = new(path)
    reg.add_operator("bob", "operator", pub(2), reg.as_operator("alice", ADMIN))
    # bob signs a well-chained change himself, straight into the store
    raw = registry.make_registry_tx(
        seed(2),
        len(reg),
        reg.head,
        1_800_000_000_000_000,
        registry.A_DEVICE_ADD,
        {
            "id": b"\x09" * 8,
            "key": pub(9),
            "segment": "feeder-1",
            "board": "pico_w",
            "firmware": "0.1.0",
            "pointmap": DIGEST,
        },
    )
    reg.store.append(raw)
    reg.close()
    with pytest.raises(RegistryError) as e:
        registry.open_registry(path)
    assert e.value.reason == registry.R_NOT_ADMIN


def test_genesis_must_be_self_signed_admin(tmp_path: Path) -> None:
    store = registry.MemoryStore()
    body = {"name": "alice", "role": "admin", "key": pub(1)}
    store.append(registry.make_registry_tx(seed(2), 0, bytes(32), 1, registry.A_OPERATOR_ADD, body))
    with pytest.raises(RegistryError) as e:
        registry.open_registry(store)
    assert e.value.reason == registry.R_UNKNOWN_SIGNER
    store = registry.MemoryStore()
    body = {"name": "alice", "role": "operator", "key": pub(1)}
    store.append(registry.make_registry_tx(seed(1), 0, bytes(32), 1, registry.A_OPERATOR_ADD, body))
    with pytest.raises(RegistryError):
        registry.open_registry(store)


def test_not_a_registry_transaction_refused() -> None:
    store = registry.MemoryStore()
    data, _ = codec.make(
        seed(1),
        b"\x01" * 8,
        "feeder-1",
        0,
        bytes(32),
        (1, 1, 1),
        wire.KIND_HEARTBEAT,
        {0: "1", 1: 1, 2: 1, 3: 1, 4: 1, 5: 1},
    )
    store.append(data)
    with pytest.raises(RegistryError) as e:
        registry.open_registry(store)
    assert e.value.reason == registry.R_MALFORMED


def test_time_may_not_go_back() -> None:
    store = registry.MemoryStore()
    g = registry.make_registry_tx(
        seed(1),
        0,
        bytes(32),
        100,
        registry.A_OPERATOR_ADD,
        {"name": "alice", "role": "admin", "key": pub(1)},
    )
    store.append(g)
    store.append(
        registry.make_registry_tx(
            seed(1),
            1,
            registry.decode_registry_tx(g).id,
            99,
            registry.A_OPERATOR_ADD,
            {"name": "bob", "role": "auditor", "key": pub(2)},
        )
    )
    with pytest.raises(RegistryError) as e:
        registry.open_registry(store)
    assert e.value.reason == registry.R_CHAIN


# -- authority -----------------------------------------------------------------------------


def test_empty_registry_needs_genesis() -> None:
    reg = registry.open_registry(":memory:")
    with pytest.raises(RegistryError):
        reg.add_device(b"\x01" * 8, pub(5), "f", "pico_w", "1", DIGEST, ("alice", ADMIN))
    reg.init_admin("alice", pub(1), ADMIN)
    with pytest.raises(RegistryError):
        reg.init_admin("eve", pub(2), seed(2))
    with pytest.raises(ValueError):
        registry.open_registry(":memory:").init_admin("alice", pub(2), ADMIN)


def test_non_admin_changes_refused() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    reg.add_operator("bob", "operator", pub(2), admin)
    n = len(reg)
    for signer in (reg.as_operator("bob", seed(2)), ("bob", seed(2)), ("mallory", seed(7))):
        with pytest.raises(RegistryError) as e:
            reg.add_device(b"\x01" * 8, pub(5), "feeder-1", "pico_w", "1", DIGEST, signer)
        assert e.value.reason in (registry.R_NOT_ADMIN, registry.R_UNKNOWN_SIGNER)
    assert len(reg) == n and reg.device(b"\x01" * 8) is None
    with pytest.raises(RegistryError):
        reg.as_operator("alice", seed(2))  # not her key


def test_revoked_admin_cannot_sign_and_last_admin_stays() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    with pytest.raises(RegistryError):
        reg.revoke_operator("alice", "no", admin)
    reg.add_operator("carol", "admin", pub(3), admin)
    reg.revoke_operator("alice", "retired", reg.as_operator("carol", seed(3)))
    with pytest.raises(RegistryError) as e:
        reg.add_operator("dave", "auditor", pub(4), admin)
    assert e.value.reason == registry.R_UNKNOWN_SIGNER
    assert [o.name for o in reg.operators()] == ["carol"]
    assert {o.name for o in reg.operators(include_revoked=True)} == {"alice", "carol"}


def test_conflicts_refused() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    reg.add_device(b"\x01" * 8, pub(5), "feeder-1", "pico_w", "1", DIGEST, admin)
    with pytest.raises(RegistryError):
        reg.add_device(b"\x01" * 8, pub(6), "feeder-1", "pico_w", "1", DIGEST, admin)
    with pytest.raises(RegistryError):  # one key, two devices
        reg.add_device(b"\x02" * 8, pub(5), "feeder-1", "pico_w", "1", DIGEST, admin)
    with pytest.raises(RegistryError):
        reg.add_operator("alice", "admin", pub(8), admin)
    with pytest.raises(RegistryError):
        reg.revoke_device(b"\x03" * 8, "never there", admin)
    reg.revoke_device(b"\x01" * 8, "decommissioned", admin)
    with pytest.raises(RegistryError):
        reg.revoke_device(b"\x01" * 8, "twice", admin)
    with pytest.raises(ValueError):
        reg.add_device(b"\x04" * 8, pub(9), "Feeder 1", "pico_w", "1", DIGEST, admin)
    with pytest.raises(ValueError):
        reg.add_operator("bob", "root", pub(9), admin)


def test_device_record() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    d = reg.add_device(b"\x01" * 8, pub(5), "feeder-1", "pico_w", "0.2.0", DIGEST, admin)
    assert reg.device(b"\x01" * 8) == d
    assert (d.segment, d.board, d.firmware, d.pointmap_digest) == (
        "feeder-1",
        "pico_w",
        "0.2.0",
        DIGEST,
    )
    assert d.registered_by == "alice" and d.registered_at > 0
    assert d.revoked is None and d.quarantined is None
    reg.add_device(b"\x02" * 8, pub(6), "feeder-2", "esp32", "0.2.0", DIGEST, admin)
    assert reg.segments() == ["feeder-1", "feeder-2"]
    assert [x.device_id for x in reg.devices(segment="feeder-2")] == [b"\x02" * 8]
    r = reg.revoke_device(b"\x01" * 8, "tampered", admin)
    assert r.revoked is not None and r.revoked[0] == "tampered"
    assert reg.key_for(b"\x01" * 8, 0) is None
    assert reg.key_for(b"\x01" * 8, 0, historic=True) == pub(5)
    assert reg.segments() == ["feeder-2"]
    assert len(reg.devices()) == 1 and len(reg.devices(include_revoked=True)) == 2
    assert r.to_json()["revoked"]["reason"] == "tampered"


# -- rotation --------------------------------------------------------------------------------


def test_device_rotation_by_sequence_number() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    did = b"\x01" * 8
    reg.add_device(did, pub(5), "feeder-1", "pico_w", "1", DIGEST, admin)
    d = reg.rotate_device_key(did, pub(6), 1000, admin)
    assert d.public_key == pub(6)
    assert reg.key_for(did, 0) == pub(5) and reg.key_for(did, 999) == pub(5)
    assert reg.key_for(did, 1000) == pub(6) and reg.key_for(did, 1 << 40) == pub(6)
    with pytest.raises(RegistryError):  # must end after the current key starts
        reg.rotate_device_key(did, pub(7), 1000, admin)
    reg.rotate_device_key(did, pub(7), 2000, admin)
    assert [(k.from_seq, k.below) for k in reg.device(did).keys] == [
        (0, 1000),
        (1000, 2000),
        (2000, None),
    ]  # type: ignore[union-attr]
    assert reg.key_for(did, 1500) == pub(6)
    assert reg.key_for(b"\x09" * 8, 0) is None


def test_operator_rotation_moves_registry_signing_to_the_new_key() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    reg.rotate_operator_key("alice", pub(11), 50, admin)
    with pytest.raises(RegistryError):
        reg.add_operator("bob", "auditor", pub(2), admin)
    reg.add_operator("bob", "auditor", pub(2), reg.as_operator("alice", seed(11)))
    assert reg.operator("alice").public_key == pub(11)  # type: ignore[union-attr]


def test_node_keys() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    reg.add_node_key("node-a", wire.ROLE_CHECKPOINT, pub(40), admin)
    reg.add_node_key("node-a", wire.ROLE_ACK, pub(41), admin)
    reg.add_node_key("node-b", wire.ROLE_CHECKPOINT, pub(42), admin)
    assert len(reg.node_keys()) == 3
    assert [k.public_key for k in reg.node_keys(role=wire.ROLE_CHECKPOINT)] == [pub(40), pub(42)]
    assert [k.role for k in reg.node_keys(node="node-a")] == [wire.ROLE_CHECKPOINT, wire.ROLE_ACK]
    reg.rotate_node_key("node-a", wire.ROLE_CHECKPOINT, pub(43), 5_000, admin)
    assert reg.node_key_for("node-a", wire.ROLE_CHECKPOINT, 4_999) == pub(40)
    assert reg.node_key_for("node-a", wire.ROLE_CHECKPOINT, 5_000) == pub(43)
    old = [k for k in reg.node_keys(node="node-a") if k.public_key == pub(40)][0]
    assert old.valid_until == 5_000
    k = reg.revoke_node_key("node-b", wire.ROLE_CHECKPOINT, pub(42), "disk lost", admin)
    assert k.revoked is not None and reg.node_key_for("node-b", wire.ROLE_CHECKPOINT, 1) is None
    assert len(reg.node_keys(role=wire.ROLE_CHECKPOINT)) == 2
    with pytest.raises(ValueError):
        reg.add_node_key("node-a", "coffee", pub(44), admin)
    with pytest.raises(RegistryError):
        reg.add_node_key("node-c", wire.ROLE_ACK, pub(41), admin)  # key in use


# -- clones ----------------------------------------------------------------------------------


def device_tx(n: int, seq: int, t: int, body_heap: int) -> bytes:
    hb = {0: "1.0", 1: body_heap, 2: 0, 3: 1, 4: 1, 5: 0}
    return codec.make(
        seed(n), b"\x01" * 8, "feeder-1", seq, bytes(32), (t, 1, 0), wire.KIND_HEARTBEAT, hb
    )[0]


def test_clone_quarantined() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    reg.add_device(b"\x01" * 8, pub(5), "feeder-1", "pico_w", "1", DIGEST, admin)
    a, b = device_tx(5, 7, 2_000, 100), device_tx(5, 7, 1_000, 200)
    assert reg.detect_clone(a, a, admin) is None
    assert reg.detect_clone(a, device_tx(5, 8, 1_000, 200), admin) is None
    d = reg.detect_clone(a, b, admin)
    assert d is not None and d.quarantined is not None
    at, evidence = d.quarantined
    assert at == 1_000
    assert set(evidence) == {codec.decode(a).id, codec.decode(b).id}
    assert reg.key_for(b"\x01" * 8, 7) is None
    assert reg.key_for(b"\x01" * 8, 7, historic=True) == pub(5)
    # a second finding moves the compromise earlier and adds its evidence
    c, e = device_tx(5, 3, 500, 1), device_tx(5, 3, 600, 2)
    d = reg.detect_clone(c, e, admin)
    assert d is not None and d.quarantined is not None
    assert d.quarantined[0] == 500 and len(d.quarantined[1]) == 4


def test_clone_needs_authentic_transactions() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    reg.add_device(b"\x01" * 8, pub(5), "feeder-1", "pico_w", "1", DIGEST, admin)
    from lightnode.errors import WireError

    with pytest.raises(WireError):  # a forger cannot get a device quarantined
        reg.detect_clone(device_tx(5, 7, 1, 1), device_tx(6, 7, 1, 2), admin)
    assert reg.device(b"\x01" * 8).quarantined is None  # type: ignore[union-attr]


def test_node_registry_key_may_quarantine_only() -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    reg.add_device(b"\x01" * 8, pub(5), "feeder-1", "pico_w", "1", DIGEST, admin)
    reg.add_node_key("node-a", wire.ROLE_REGISTRY, pub(41), admin)
    reg.add_node_key("node-a", wire.ROLE_ACK, pub(42), admin)
    node = reg.as_node("node-a", seed(41))
    with pytest.raises(RegistryError):
        reg.as_node("node-a", seed(42))  # the ack key signs no registry change
    with pytest.raises(RegistryError) as e:
        reg.add_device(b"\x02" * 8, pub(6), "feeder-1", "pico_w", "1", DIGEST, node)
    assert e.value.reason == registry.R_NOT_ADMIN
    d = reg.detect_clone(device_tx(5, 7, 1, 1), device_tx(5, 7, 2, 2), node)
    assert d is not None and d.quarantined is not None
    assert snapshot(registry.open_registry(_copy(reg.store))) == snapshot(reg)


def _copy(store: Any) -> registry.MemoryStore:
    m = registry.MemoryStore()
    for t in store.transactions():
        m.append(t)
    return m


# -- stores ----------------------------------------------------------------------------------


def test_two_registries_on_one_file_stay_in_step(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    a = new(path)
    b = registry.open_registry(path)
    a.add_operator("bob", "auditor", pub(2), a.as_operator("alice", ADMIN))
    b.add_device(b"\x01" * 8, pub(5), "feeder-1", "pico_w", "1", DIGEST, ("alice", ADMIN))
    a.catch_up()
    assert snapshot(a) == snapshot(b)
    with pytest.raises(RegistryError):  # a stale writer cannot fork the chain
        b.store.append(b"x", 0)


def test_rejections_persist(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = new(path)
    reg.store.record_rejection("operator", "unknown-operator", "who?", b"\x01\x02", 5)
    reg.close()
    r = registry.open_registry(path).rejections()
    assert [(x.index, x.at, x.source, x.reason, x.evidence) for x in r] == [
        (0, 5, "operator", "unknown-operator", b"\x01\x02")
    ]


# -- properties ------------------------------------------------------------------------------

OPS = st.lists(
    st.tuples(st.sampled_from(["add", "revoke", "rotate", "op", "node"]), st.integers(0, 5)),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_replay_equals_state_for_any_history(ops: list[tuple[str, int]]) -> None:
    reg = new()
    admin = reg.as_operator("alice", ADMIN)
    k = 100
    for what, i in ops:
        k += 1
        did = bytes([i + 1]) * 8
        try:
            if what == "add":
                reg.add_device(did, pub(k), "seg-%d" % (i % 3), "pico_w", "1", DIGEST, admin)
            elif what == "revoke":
                reg.revoke_device(did, "r", admin)
            elif what == "rotate":
                reg.rotate_device_key(did, pub(k), k, admin)
            elif what == "op":
                reg.add_operator("op-%d" % i, "operator", pub(k), admin)
            else:
                reg.add_node_key("node-%d" % i, wire.NODE_ROLES[i % 5], pub(k), admin)
        except RegistryError:
            pass
    assert snapshot(registry.open_registry(_copy(reg.store))) == snapshot(reg)


_CHAIN: list[bytes] = []


def _chain() -> list[bytes]:
    if not _CHAIN:
        reg = new()
        admin = reg.as_operator("alice", ADMIN)
        reg.add_operator("bob", "operator", pub(2), admin)
        reg.add_device(b"\x01" * 8, pub(5), "feeder-1", "pico_w", "1", DIGEST, admin)
        _CHAIN.extend(reg.store.transactions())
    return _CHAIN


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_changed_byte_is_refused(data: st.DataObject) -> None:
    txs = list(_chain())
    i = data.draw(st.integers(0, len(txs) - 1))
    pos = data.draw(st.integers(0, len(txs[i]) - 1))
    bit = data.draw(st.integers(0, 7))
    t = bytearray(txs[i])
    t[pos] ^= 1 << bit
    txs[i] = bytes(t)
    store = registry.MemoryStore()
    for t2 in txs:
        store.append(t2)
    with pytest.raises(RegistryError):
        registry.open_registry(store)
