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
    a = ack.check_ack(data, cfg.node_keys(), cfg.device, cfg.segment, journal.record)
    a.seq   # free records up to this one

The payload keys and reasons are shared with the SDK (``lightnode.node.acks``).
"""

import hashlib

from . import cbor, cose, wire
from .errors import WireError

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


class AckError(WireError):
    """An ack or NACK the device refuses; ``reason`` is one of ACK_REASONS."""


class Ack:
    """What a checked ack lets the device do: free its records up to ``seq``."""

    def __init__(self, seq, tx_id, chain, size, root, index, kid):
        self.seq = seq
        self.tx_id = tx_id
        self.chain = chain  # the checkpoint's
        self.size = size
        self.root = root
        self.index = index  # of the acked transaction in the chain
        self.kid = kid  # of the node's ack key

    def __repr__(self):
        return "Ack(seq=%d, %s[%d] of %d)" % (self.seq, self.chain, self.index, self.size)


class Nack:
    def __init__(self, seq, tx_id, reason, time, kid):
        self.seq = seq  # None: the node could not read it
        self.tx_id = tx_id
        self.reason = reason
        self.time = time
        self.kid = kid


_LEAF = b"\x00"
_NODE = b"\x01"
_ED25519_ALGS = (wire.ALG_EDDSA, wire.ALG_ED25519)
_HEADER_LABELS = [wire.H_ALG, wire.H_CTY, wire.H_KID]


def _is_uint(x):
    return type(x) is int and 0 <= x < (1 << 63)


def _open(data, cty, reason_cty=AR_CTY):
    """The decoded COSE_Sign1 of one node object: shape, headers and content type (not its signature)."""
    try:
        msg = cose.decode1(data)
    except WireError as e:
        raise AckError(AR_COSE, str(e))
    h = msg.protected
    if sorted(h.keys()) != _HEADER_LABELS or msg.unprotected:
        raise AckError(AR_HEADER, "{1, 3, 4} protected and nothing unprotected expected")
    if type(h[wire.H_ALG]) is not int or h[wire.H_ALG] not in _ED25519_ALGS:
        raise AckError(AR_HEADER, "alg %r" % (h[wire.H_ALG],))
    if h[wire.H_CTY] != cty:
        raise AckError(reason_cty, "content type %r" % (h[wire.H_CTY],))
    if type(h[wire.H_KID]) is not bytes or msg.payload is None:
        raise AckError(AR_HEADER, "kid or payload")
    if len(msg.signature) != wire.ED25519_SIG_BYTES:
        raise AckError(AR_SIGNATURE, "signature of %d bytes" % len(msg.signature))
    return msg


def _key(node_keys, kid, role):
    """The public key of ``kid`` if it is configured for ``role``, else AckError(unknown-key)."""
    held = node_keys.get(kid)
    if held is None or role not in held[1]:
        raise AckError(AR_KEY, "kid %s is no %s key of this device's nodes" % (_hex(kid), role))
    return held[0]


def _check_sig(key, msg, what):
    try:
        cose.check_signature(
            key, cose.sig_structure(msg.protected_bytes, msg.payload), msg.signature
        )
    except WireError:
        raise AckError(AR_SIGNATURE, what)


def _hex(b):
    return "".join("%02x" % x for x in b)


def _map(payload, keys):
    try:
        m = cbor.loads(payload)
    except WireError as e:
        raise AckError(AR_PAYLOAD, str(e))
    if type(m) is not dict or sorted(m.keys()) != list(keys):
        raise AckError(AR_PAYLOAD, "a map of keys %d-%d expected" % (keys[0], keys[-1]))
    return m


def inclusion_root(leaf, index, size, path):
    """The root that ``path`` leads to from leaf hash ``leaf`` at ``index`` of ``size`` (RFC 9162 2.1.3.2), or None."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hashlib.sha256(_NODE + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(_NODE + r + p).digest()
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def leaf_hash(record):
    return hashlib.sha256(_LEAF + record).digest()


def check_ack(data, node_keys, device_id, segment, record_for):
    """The ``Ack`` if every claim of ``data`` holds for this device, else AckError.

    ``node_keys`` is ``{kid: (public key, roles)}`` (``Config.node_keys()``);
    ``record_for(seq)`` gives ``(wire bytes, tx id)`` of the device's own
    record under that sequence number, or None. The cheap checks (shape,
    the record, the proof) go before the three signature checks: the ack's
    (ack role), the checkpoint's (checkpoint role), then cosignatures until
    one by another checkpoint key holds.
    """
    msg = _open(data, wire.CTY_ACK)
    ack_key = _key(node_keys, msg.kid, wire.ROLE_ACK)
    m = _map(msg.payload, ACK_KEYS)
    seq, tx_id, cps, cosigs, proof = (m[A_SEQ], m[A_TX], m[A_CHECKPOINT], m[A_COSIGS], m[A_PROOF])
    if (
        m[A_VERSION] != ACK_VERSION
        or not _is_uint(seq)
        or type(tx_id) is not bytes
        or len(tx_id) != wire.HASH_BYTES
        or type(cps) is not bytes
        or type(cosigs) is not list
        or not 0 < len(cosigs) <= MAX_COSIGS
        or type(proof) is not list
        or len(proof) != 3
        or not _is_uint(proof[0])
        or not _is_uint(proof[1])
        or type(proof[2]) is not list
        or len(proof[2]) > MAX_PROOF
    ):
        raise AckError(AR_PAYLOAD, "fields missing or out of range")
    for x in cosigs:
        if type(x) is not bytes:
            raise AckError(AR_PAYLOAD, "a cosignature is not a byte string")
    for h in proof[2]:
        if type(h) is not bytes or len(h) != wire.HASH_BYTES:
            raise AckError(AR_PAYLOAD, "a proof hash is not %d bytes" % wire.HASH_BYTES)
    if m[A_DEVICE] != device_id:
        raise AckError(AR_DEVICE, "ack for device %s" % _hex(m[A_DEVICE]))
    # the device's own record, and the ack's id of it
    rec = record_for(seq)
    if rec is None:
        raise AckError(AR_TX, "no record under seq %d" % seq)
    record, record_id = rec
    if tx_id != record_id:
        raise AckError(AR_TX, "seq %d: the acked id is not this record's" % seq)
    # the checkpoint: of this segment's chain, of the proof's size
    cpm = _open(cps, wire.CTY_CHECKPOINT)
    c = _map(cpm.payload, wire.CP_KEYS)
    if c[wire.CP_VERSION] != wire.CHECKPOINT_VERSION or type(c[wire.CP_ROOT]) is not bytes:
        raise AckError(AR_PAYLOAD, "checkpoint version or root")
    if c[wire.CP_CHAIN] != "seg:" + segment:
        raise AckError(AR_CHAIN, "checkpoint of chain %r" % (c[wire.CP_CHAIN],))
    index, size = proof[0], proof[1]
    if size != c[wire.CP_SIZE]:
        raise AckError(AR_PROOF, "proof for size %d, checkpoint of %r" % (size, c[wire.CP_SIZE]))
    if inclusion_root(leaf_hash(record), index, size, proof[2]) != c[wire.CP_ROOT]:
        raise AckError(AR_PROOF, "the record is not leaf %d of the checkpoint's tree" % index)
    # the signatures, last: each costs an Ed25519 verification
    _check_sig(ack_key, msg, "the ack")
    _check_sig(_key(node_keys, cpm.kid, wire.ROLE_CHECKPOINT), cpm, "the checkpoint")
    why = "no cosignature"
    for x in cosigs:
        try:
            w = _open(x, wire.CTY_CHECKPOINT)
            if w.payload != cpm.payload:
                why = "a cosignature of another checkpoint"
                continue
            if w.kid == cpm.kid:
                why = "a cosignature by the producer's own key"
                continue
            _check_sig(_key(node_keys, w.kid, wire.ROLE_CHECKPOINT), w, "a cosignature")
            return Ack(seq, tx_id, c[wire.CP_CHAIN], size, c[wire.CP_ROOT], index, msg.kid)
        except AckError as e:
            why = str(e)
    raise AckError(AR_QUORUM, why)


def check_nack(data, node_keys, device_id):
    """The ``Nack`` if a node's ack key signed ``data`` for this device, else AckError."""
    msg = _open(data, wire.CTY_NACK)
    key = _key(node_keys, msg.kid, wire.ROLE_ACK)
    m = _map(msg.payload, NACK_KEYS)
    seq, tx_id, reason, t = m[N_SEQ], m[N_TX], m[N_REASON], m[N_TIME]
    if (
        m[N_VERSION] != ACK_VERSION
        or not (seq is None or _is_uint(seq))
        or not (tx_id is None or (type(tx_id) is bytes and len(tx_id) == wire.HASH_BYTES))
        or reason not in NACK_REASONS
        or not _is_uint(t)
    ):
        raise AckError(AR_PAYLOAD, "fields missing or out of range")
    if m[N_DEVICE] != device_id:
        raise AckError(AR_DEVICE, "NACK for device %s" % _hex(m[N_DEVICE]))
    _check_sig(key, msg, "the NACK")
    return Nack(seq, tx_id, reason, t, msg.kid)
