"""Block acks and NACKs as the device reads them (docs/acks.md).

A full node answers each device on ``ln/<segment>/<device>/ack``: once a
block is final, one cumulative ack (the device's highest sequence number
in it, that transaction's id, the checkpoint with its signatures and the
inclusion proof of that transaction); for a rejected transaction, a NACK
with the reason. Both are tagged COSE_Sign1 with protected header
``{1: -8, 3: cty, 4: kid}`` signed by a node key of the ack role.

The device frees its records up to the acked number only if ``check_ack``
passes: the node's signature, the checkpoint signed by one configured
checkpoint key and cosigned by another, the inclusion proof of its own
record's bytes against the checkpoint's root, and the acked id equal to
its own record's. Every refusal is an ``AckError`` with one reason of
``ACK_REASONS``.

    from ln import ack
    a = ack.check_ack(data, cfg.nodes, segment, record_bytes, record_id)
    a.seq   # free records up to this one

The payload keys and reasons are shared with the SDK (``lightnode.node.acks``).
"""

from . import wire

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


ACK_VERSION = const(1)

# Ack payload map keys.
A_VERSION = const(0)
A_DEVICE = const(1)
A_SEQ = const(2)  # the device's highest sequence number in the block
A_TX = const(3)  # SHA-256 of that transaction's COSE bytes (its id)
A_CHECKPOINT = const(4)  # the producer's signed checkpoint (COSE_Sign1 bytes)
A_COSIGS = const(5)  # [witness cosignature (COSE_Sign1 bytes), ...]
A_PROOF = const(6)  # [leaf index, tree size, [hash, ...]]: RFC 9162 inclusion proof
ACK_KEYS = (0, 1, 2, 3, 4, 5, 6)

# NACK payload map keys.
N_VERSION = const(0)
N_DEVICE = const(1)
N_SEQ = const(2)  # null when the transaction could not be read
N_TX = const(3)  # SHA-256 of the refused bytes' COSE part, or null
N_REASON = const(4)  # one of NACK_REASONS
N_TIME = const(5)  # the node's clock, us since 1970
NACK_KEYS = (0, 1, 2, 3, 4, 5)

MAX_COSIGS = const(8)
MAX_PROOF = const(64)  # hashes in an inclusion proof: a tree of up to 2**64 leaves
MAX_ACK_BYTES = const(4096)

# Why a node refused a transaction, besides wire.REASONS (the bytes themselves).
NR_UNKNOWN_DEVICE = "unknown-device"
NR_REVOKED_DEVICE = "revoked-device"
NR_QUARANTINED_DEVICE = "quarantined-device"
NR_TOPIC = "topic-mismatch"  # topic segment or device and payload/kid disagree
NR_FORK = "fork"  # another transaction is committed under this sequence number
NODE_REASONS = (
    NR_UNKNOWN_DEVICE,
    NR_REVOKED_DEVICE,
    NR_QUARANTINED_DEVICE,
    NR_TOPIC,
    NR_FORK,
)
NACK_REASONS = wire.REASONS + NODE_REASONS

# Why an ack or NACK is refused by its reader.
AR_COSE = "bad-cose"  # not a COSE_Sign1 of the subset
AR_HEADER = "protected-header"  # protected header not exactly {1, 3, 4}, or unprotected not empty
AR_CTY = "content-type"  # not an ack (or not a NACK; or a checkpoint that is not one)
AR_KEY = "unknown-key"  # no configured node key of the role signed it
AR_SIGNATURE = "bad-signature"
AR_PAYLOAD = "bad-payload"  # payload fields missing, extra, out of range
AR_DEVICE = "wrong-device"  # for another device
AR_CHAIN = "wrong-chain"  # the checkpoint is not of the device's segment chain
AR_QUORUM = "not-final"  # no cosignature by a second configured checkpoint key
AR_PROOF = "bad-proof"  # the record's bytes are not in the tree the checkpoint signs
AR_TX = "tx-mismatch"  # the acked id is not the device's own record's
ACK_REASONS = (
    AR_COSE,
    AR_HEADER,
    AR_CTY,
    AR_KEY,
    AR_SIGNATURE,
    AR_PAYLOAD,
    AR_DEVICE,
    AR_CHAIN,
    AR_QUORUM,
    AR_PROOF,
    AR_TX,
)
