"""Operator actions: accepted with the key valid at their sequence number; everything else refused and recorded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightnode import keys, registry
from lightnode import wire as codec
from lightnode.firmware.ln import wire
from lightnode.registry import RegistryError


def seed(n: int) -> bytes:
    return bytes([n]) * 32


def pub(n: int) -> bytes:
    return keys.public_key(seed(n))


T = 1_700_000_000_000_000


@pytest.fixture
def reg() -> registry.Registry:
    r = registry.open_registry(":memory:")
    r.init_admin("alice", pub(1), seed(1))
    admin = r.as_operator("alice", seed(1))
    r.add_operator("bob", "operator", pub(2), admin)
    r.add_operator("audrey", "auditor", pub(3), admin)
    r.add_operator("olga", "operator", pub(4), admin)
    r.revoke_operator("olga", "left", admin)
    return r


def act(
    n: int, who: str, action: str = "control", seq: int = 0, target: str | bytes = "breaker-3"
) -> bytes:
    return registry.operator_action(
        seed(n), who, "feeder-7", seq, bytes(32), T + seq, action, target, {"open": True}
    )


def test_operator_id() -> None:
    import hashlib

    assert registry.operator_id("bob") == hashlib.sha256(b"bob").digest()[:8]
    tx = codec.decode(act(2, "bob"))
    assert tx.device_id == tx.kid == registry.operator_id("bob")
    assert tx.kind == wire.KIND_OPERATOR
    assert tx.body == {0: "control", 1: "breaker-3", 2: {"open": True}}


@pytest.mark.parametrize("action", registry.ACTIONS)
def test_accepted(reg: registry.Registry, action: str) -> None:
    op, a = reg.check_operator_action(act(2, "bob", action, target=b"\x01" * 8))
    assert op.name == "bob" and op.role == "operator"
    assert (a.action, a.target, a.args, a.segment, a.seq, a.time) == (
        action,
        b"\x01" * 8,
        {"open": True},
        "feeder-7",
        0,
        T,
    )
    assert a.id == codec.decode(act(2, "bob", action, target=b"\x01" * 8)).id
    assert reg.rejections() == []


def test_admin_may_act_and_auditor_may_log_in(reg: registry.Registry) -> None:
    assert reg.check_operator_action(act(1, "alice", "emergency-shutdown"))[0].name == "alice"
    assert reg.check_operator_action(act(3, "audrey", "login"))[1].action == "login"


def refused(reg: registry.Registry, data: bytes, reason: str) -> None:
    n = len(reg.rejections())
    with pytest.raises(RegistryError) as e:
        reg.check_operator_action(data)
    assert e.value.reason == reason
    r = reg.rejections()
    assert len(r) == n + 1
    assert (r[-1].source, r[-1].reason, r[-1].evidence) == ("operator", reason, data)


def test_unknown_operator(reg: registry.Registry) -> None:
    refused(reg, act(9, "mallory"), registry.R_UNKNOWN_OPERATOR)


def test_revoked_operator(reg: registry.Registry) -> None:
    refused(reg, act(4, "olga"), registry.R_REVOKED_OPERATOR)


def test_revoked_after_acting(reg: registry.Registry) -> None:
    data = act(2, "bob")
    reg.check_operator_action(data)
    reg.revoke_operator("bob", "suspended", ("alice", seed(1)))
    refused(reg, data, registry.R_REVOKED_OPERATOR)


def test_wrong_role(reg: registry.Registry) -> None:
    refused(reg, act(3, "audrey", "control"), registry.R_ROLE)
    refused(reg, act(3, "audrey", "emergency-shutdown"), registry.R_ROLE)


def test_bad_signature(reg: registry.Registry) -> None:
    refused(reg, act(9, "bob"), registry.R_SIGNATURE)  # signed with another key under bob's id


def test_not_an_action(reg: registry.Registry) -> None:
    refused(reg, b"\x82\x01", registry.R_ACTION)
    hb = codec.make(
        seed(2),
        registry.operator_id("bob"),
        "feeder-7",
        0,
        bytes(32),
        (T, 1, 0),
        wire.KIND_HEARTBEAT,
        {0: "1", 1: 1, 2: 1, 3: 1, 4: 1, 5: 1},
    )[0]
    refused(reg, hb, registry.R_ACTION)
    refused(reg, act(2, "bob", "reboot-everything"), registry.R_ACTION)
    bad = codec.make(
        seed(2),
        registry.operator_id("bob"),
        "feeder-7",
        0,
        bytes(32),
        (T, 1, 0),
        wire.KIND_OPERATOR,
        {0: "control"},
    )[0]
    refused(reg, bad, registry.R_ACTION)


def test_rotated_key_by_sequence_number(reg: registry.Registry) -> None:
    reg.rotate_operator_key("bob", pub(12), 10, ("alice", seed(1)))
    assert reg.check_operator_action(act(2, "bob", seq=9))[1].seq == 9
    refused(reg, act(2, "bob", seq=10), registry.R_SIGNATURE)
    assert reg.check_operator_action(act(12, "bob", seq=10))[1].seq == 10
    refused(reg, act(12, "bob", seq=9), registry.R_SIGNATURE)


def test_rejections_survive_reopening(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "r.db"
    r = registry.open_registry(path)
    r.init_admin("alice", pub(1), seed(1))
    with pytest.raises(RegistryError):
        r.check_operator_action(act(9, "mallory"))
    r.close()
    (rej,) = registry.open_registry(path).rejections()
    assert rej.reason == registry.R_UNKNOWN_OPERATOR and rej.evidence == act(9, "mallory")


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_pass_or_are_refused_and_recorded(data: bytes) -> None:
    r = registry.open_registry(":memory:")
    r.init_admin("alice", pub(1), seed(1))
    with pytest.raises(RegistryError):
        r.check_operator_action(data)
    assert r.rejections()[-1].evidence == data


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_changed_action_is_refused(pos: int, bit: int) -> None:
    r = registry.open_registry(":memory:")
    r.init_admin("alice", pub(1), seed(1))
    r.add_operator("bob", "operator", pub(2), ("alice", seed(1)))
    data = bytearray(act(2, "bob"))
    data[pos % len(data)] ^= 1 << bit
    with pytest.raises(RegistryError):
        r.check_operator_action(bytes(data))
    assert len(r.rejections()) == 1
