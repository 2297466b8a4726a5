"""The ledger core: RFC 9162 Merkle trees, chains and checkpoints, storage, queries.

``merkle`` (trees and proofs), ``checkpoint`` (signed block headers and
cosignatures), ``chain`` (append, cut blocks, flags, time brackets),
``store`` (SQLite and PostgreSQL), ``query`` (what the CLI shows) and
``audit`` (re-verify a whole store offline). docs/verification.md says
what a verifier checks.
"""
