"""Operator actions reach the operator sidechain only when the registry says the operator may act.

A real registry and ledger: an accepted action is a leaf of a signed
operator-chain block (inclusion proof against the checkpoint root); an
action by a revoked operator and one by an unknown operator are refused,
recorded with their bytes, and never committed.
"""

import pytest
from lightnode import keys, registry
from lightnode.ledger import checkpoint, merkle
from lightnode.ledger.chain import Ledger
from lightnode.ledger.store import open_store
from lightnode.node import operators
from lightnode.registry import RegistryError

T = 1_764_000_000_000_000


def _seed(n):
    return bytes([n]) * 32


def _act(n, who, seq, action="emergency-shutdown"):
    return registry.operator_action(_seed(n), who, "feeder-7", seq, bytes(32), T + seq, action,
                                    "feeder-7", {})


def test_accepted_committed_refused_recorded(tmp_path):
    reg = registry.open_registry(":memory:")
    reg.init_admin("alice", keys.public_key(_seed(1)), _seed(1))
    admin = reg.as_operator("alice", _seed(1))
    reg.add_operator("bob", "operator", keys.public_key(_seed(2)), admin)
    reg.add_operator("carol", "operator", keys.public_key(_seed(3)), admin)
    reg.revoke_operator("carol", "left the company", admin)
    ledger = Ledger(open_store(str(tmp_path / "ledger.db")), _seed(12), b"node-a")

    good = _act(2, "bob", 0)
    op, action, index = operators.commit(reg, ledger, good)
    assert (op.name, action.action, index) == ("bob", "emergency-shutdown", 0)

    for bad, reason in ((_act(3, "carol", 0), "revoked-operator"), (_act(4, "mallory", 0), "unknown-operator")):
        with pytest.raises(RegistryError) as e:
            operators.commit(reg, ledger, bad)
        assert e.value.reason == reason
    assert [(r.reason, r.evidence) for r in reg.rejections()][-2:] == [
        ("revoked-operator", _act(3, "carol", 0)), ("unknown-operator", _act(4, "mallory", 0))]

    signed = ledger.cut(operators.OPERATOR_CHAIN)
    cpt = checkpoint.verify_checkpoint(signed.raw, {ledger.kid: ledger.public_key}).checkpoint
    assert cpt.size == 1  # only bob's action
    tree = ledger.chain(operators.OPERATOR_CHAIN).tree
    merkle.verify_inclusion(merkle.leaf_hash(good), 0, 1, tree.inclusion_proof(0, 1), cpt.root)
