"""The ledger's errors, in the SDK's one family (``lightnode.errors.LightnodeError``).

>>> from lightnode.ledger import merkle
>>> from lightnode.ledger.errors import ProofError
>>> try:
...     merkle.verify_inclusion(b"\\x00" * 32, 0, 1, [], b"\\x01" * 32)
... except ProofError as e:
...     print(e.reason)
root-mismatch
"""

from __future__ import annotations

from lightnode.errors import LightnodeError


class LedgerError(LightnodeError):
    """The ledger cannot do what was asked, or what it holds does not check out."""


class ProofError(LedgerError):
    """A Merkle inclusion or consistency proof (RFC 9162) was refused; ``reason`` says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__("%s: %s" % (reason, detail) if detail else reason)


class CheckpointError(LedgerError):
    """A checkpoint or cosignature was refused: not decodable, not ours, or a bad signature."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__("%s: %s" % (reason, detail) if detail else reason)


class StoreError(LedgerError):
    """The store cannot be opened, or refuses a write that would break the ledger's rules."""
