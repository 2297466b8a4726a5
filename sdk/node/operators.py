"""Operator actions onto the operator sidechain: checked against the registry, then committed.

An operator's login, emergency shutdown or control command is a kind-3
transaction signed with the operator's key (docs/registry.md). The node
checks it against the registry (``Registry.check_operator_action``: an
unknown or revoked operator, a key not valid at that sequence number, a
bad signature or an action outside the role is refused and recorded in
the registry's rejection log with the bytes as evidence) and commits what
passes as a leaf of the ledger's ``operator`` chain, so an investigator
can prove who ordered what, and when.

    op, action, index = operators.commit(reg, ledger, tx_bytes)
"""

from __future__ import annotations

from typing import Any

from lightnode.registry import Operator, OperatorAction, Registry

OPERATOR_CHAIN = "operator"


def commit(reg: Registry, ledger: Any, tx_bytes: bytes) -> tuple[Operator, OperatorAction, int]:
    """Check and commit one operator action; its operator, action and leaf index.

    Raises ``RegistryError`` (already recorded as a rejection) for what is refused.
    """
    op, action = reg.check_operator_action(tx_bytes)
    return op, action, ledger.add_entry(OPERATOR_CHAIN, bytes(tx_bytes))
