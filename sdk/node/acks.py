"""Block acks and NACKs: what a full node signs back to a device (docs/acks.md).

An ack says "your transactions up to ``seq`` are in a final block": the
device id, its highest sequence number in the block, that transaction's
id, the producer's signed checkpoint, the witnesses' cosignatures and the
RFC 9162 inclusion proof of that transaction. A NACK says why one
transaction was refused. Both are tagged COSE_Sign1 with protected header
``{1: -8, 3: CTY_ACK or CTY_NACK, 4: kid}``, signed with the node's ack key,
over a deterministic CBOR map. The payload keys and reasons are the
device's (``lightnode.firmware.ln.ack``): one place for both readers.

    >>> from lightnode.node import acks
    >>> n = acks.make_nack(bytes(32), b"ack-1", b"dev", 7, bytes(32), "bad-signature", 1)
    >>> acks.verify_nack(n, {b"ack-1": acks.public_key(bytes(32))}).reason
    'bad-signature'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightnode import wire
from lightnode.errors import LightnodeError, WireError
from lightnode.firmware.ln import ack as spec_ack
from lightnode.firmware.ln import wire as spec
from lightnode.ledger import checkpoint as cp
from lightnode.ledger import merkle
from lightnode.ledger.errors import CheckpointError, ProofError
from nacl.signing import SigningKey

__all__ = [
    "ACK_REASONS",
    "NACK_REASONS",
    "NODE_REASONS",
    "Ack",
    "AckError",
    "Nack",
    "make_ack",
    "make_nack",
    "public_key",
    "verify_ack",
    "verify_nack",
]

NODE_REASONS = spec_ack.NODE_REASONS
NACK_REASONS = spec_ack.NACK_REASONS
ACK_REASONS = spec_ack.ACK_REASONS
HASH_SIZE = spec.HASH_BYTES


class AckError(LightnodeError):
    """An ack or NACK refused by its reader; ``reason`` is one of ``ACK_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in ACK_REASONS:
            raise ValueError("unknown ack reason %r" % (reason,))
        self.reason = reason
        self.detail = detail
        super().__init__("%s: %s" % (reason, detail) if detail else reason)


@dataclass(frozen=True)
class Ack:
    raw: bytes
    kid: bytes  # of the node's ack key
    device: bytes
    seq: int
    tx_id: bytes
    checkpoint: bytes  # the producer's signed checkpoint
    cosignatures: tuple[bytes, ...]
    index: int
    size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class Nack:
    raw: bytes
    kid: bytes
    device: bytes
    seq: int | None
    tx_id: bytes | None
    reason: str
    time: int


def public_key(seed: bytes) -> bytes:
    return bytes(SigningKey(bytes(seed)).verify_key)


def _protected(cty: str, kid: bytes) -> bytes:
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= spec.MAX_DEVICE_ID:
        raise ValueError("kid: 1-%d bytes expected" % spec.MAX_DEVICE_ID)
    return wire.encode({spec.H_ALG: spec.ALG_EDDSA, spec.H_CTY: cty, spec.H_KID: kid})


def _sign(cty: str, payload: bytes, seed: bytes, kid: bytes) -> bytes:
    protected = _protected(cty, kid)
    sig = SigningKey(bytes(seed)).sign(wire.sig_structure(protected, payload)).signature
    return wire.envelope(protected, payload, sig)


def _device_arg(device_id: bytes) -> bytes:
    if not isinstance(device_id, bytes | bytearray):
        raise TypeError("device id: bytes expected")
    if not 1 <= len(device_id) <= spec.MAX_DEVICE_ID:
        raise ValueError("device id: 1-%d bytes expected" % spec.MAX_DEVICE_ID)
    return bytes(device_id)


def _hash_arg(name: str, h: Any, nullable: bool = False) -> bytes | None:
    if h is None and nullable:
        return None
    if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
        raise ValueError("%s: %d bytes expected" % (name, HASH_SIZE))
    return bytes(h)


def _uint(name: str, x: Any, nullable: bool = False) -> int | None:
    if x is None and nullable:
        return None
    if type(x) is not int or not 0 <= x < 1 << 63:
        raise ValueError("%s: an unsigned 63-bit integer expected" % name)
    return x


# -- NACKs ----------------------------------------------------------------------------


def nack_payload(
    device_id: bytes, seq: int | None, tx_id: bytes | None, reason: str, time_us: int
) -> bytes:
    if reason not in NACK_REASONS:
        raise ValueError("reason %r: one of NACK_REASONS expected" % (reason,))
    return wire.encode(
        {
            spec_ack.N_VERSION: spec_ack.ACK_VERSION,
            spec_ack.N_DEVICE: _device_arg(device_id),
            spec_ack.N_SEQ: _uint("seq", seq, True),
            spec_ack.N_TX: _hash_arg("tx_id", tx_id, True),
            spec_ack.N_REASON: reason,
            spec_ack.N_TIME: _uint("time_us", time_us),
        }
    )


def make_nack(
    seed: bytes,
    kid: bytes,
    device_id: bytes,
    seq: int | None,
    tx_id: bytes | None,
    reason: str,
    time_us: int,
) -> bytes:
    """A signed NACK for one refused transaction; ``seq``/``tx_id`` None when they could not be read.

    ``reason`` is one of ``NACK_REASONS`` (``wire.REASONS`` and ``NODE_REASONS``);
    anything else is the caller's mistake (ValueError).
    """
    return _sign(spec.CTY_NACK, nack_payload(device_id, seq, tx_id, reason, time_us), seed, kid)


# -- acks -----------------------------------------------------------------------------


def ack_payload(
    device_id: bytes,
    seq: int,
    tx_id: bytes,
    checkpoint: bytes,
    cosignatures: Sequence[bytes],
    index: int,
    size: int,
    path: Sequence[bytes],
) -> bytes:
    cosigs = [bytes(c) for c in cosignatures]
    if not 1 <= len(cosigs) <= spec_ack.MAX_COSIGS:
        raise ValueError("1-%d cosignatures expected" % spec_ack.MAX_COSIGS)
    if len(path) > spec_ack.MAX_PROOF:
        raise ValueError("an inclusion proof of at most %d hashes" % spec_ack.MAX_PROOF)
    index_ = _uint("index", index)
    size_ = _uint("size", size)
    assert index_ is not None and size_ is not None
    if index_ >= size_:
        raise ValueError("leaf %d is not in a tree of %d" % (index_, size_))
    return wire.encode(
        {
            spec_ack.A_VERSION: spec_ack.ACK_VERSION,
            spec_ack.A_DEVICE: _device_arg(device_id),
            spec_ack.A_SEQ: _uint("seq", seq),
            spec_ack.A_TX: _hash_arg("tx_id", tx_id),
            spec_ack.A_CHECKPOINT: bytes(checkpoint),
            spec_ack.A_COSIGS: cosigs,
            spec_ack.A_PROOF: [index_, size_, [_hash_arg("path", p) for p in path]],
        }
    )


def make_ack(
    seed: bytes,
    kid: bytes,
    device_id: bytes,
    seq: int,
    tx_id: bytes,
    checkpoint: bytes,
    cosignatures: Sequence[bytes],
    index: int,
    size: int,
    path: Sequence[bytes],
) -> bytes:
    """A signed ack: the same arguments always give the same bytes (Ed25519 is deterministic).

    ``checkpoint`` is the producer's signed checkpoint, ``cosignatures`` the
    witnesses' (sorted here by their bytes, so a re-ack is identical),
    ``(index, size, path)`` the inclusion proof of transaction ``tx_id``.
    """
    payload = ack_payload(
        device_id, seq, tx_id, checkpoint, sorted(cosignatures), index, size, path
    )
    if len(payload) + 200 > spec_ack.MAX_ACK_BYTES:
        raise ValueError("an ack of %d bytes is over MAX_ACK_BYTES" % len(payload))
    return _sign(spec.CTY_ACK, payload, seed, kid)


# -- reading them back (SDK side; the device has ln.ack) -------------------------------


def _open(data: bytes, cty: str, keys: Mapping[bytes, bytes]) -> tuple[bytes, Any]:
    """Check the envelope and the signature; the kid and decoded payload map."""
    try:
        s = wire.decode_cose_sign1(bytes(data))
    except WireError as e:
        raise AckError(spec_ack.AR_COSE, str(e)) from None
    h = s.header
    if (
        sorted(h, key=repr) != sorted((spec.H_ALG, spec.H_CTY, spec.H_KID), key=repr)
        or s.unprotected
    ):
        raise AckError(spec_ack.AR_HEADER, "{1, 3, 4} protected and nothing unprotected expected")
    if h[spec.H_CTY] != cty:
        raise AckError(spec_ack.AR_CTY, "cty %r, not %r" % (h[spec.H_CTY], cty))
    kid = h[spec.H_KID]
    key = keys.get(kid) if type(kid) is bytes else None
    if key is None:
        raise AckError(spec_ack.AR_KEY, "kid %r is not a node ack key" % (kid,))
    if s.payload is None:
        raise AckError(spec_ack.AR_PAYLOAD, "detached payload")
    try:
        s.verify(key)
    except WireError as e:
        raise AckError(spec_ack.AR_SIGNATURE, str(e)) from None
    try:
        m = wire._load(s.payload, wire.TAGS_NONE)
    except WireError as e:
        raise AckError(spec_ack.AR_PAYLOAD, str(e)) from None
    return kid, m


def verify_nack(data: bytes, node_keys: Mapping[bytes, bytes]) -> Nack:
    """A NACK signed by one of ``node_keys`` (kid -> ack public key), or AckError."""
    kid, m = _open(data, spec.CTY_NACK, node_keys)
    if type(m) is not dict or sorted(m) != list(spec_ack.NACK_KEYS):
        raise AckError(spec_ack.AR_PAYLOAD, "a map of keys 0-5 expected")
    try:
        again = nack_payload(
            m[spec_ack.N_DEVICE],
            m[spec_ack.N_SEQ],
            m[spec_ack.N_TX],
            m[spec_ack.N_REASON],
            m[spec_ack.N_TIME],
        )
    except (ValueError, TypeError) as e:
        raise AckError(spec_ack.AR_PAYLOAD, str(e)) from None
    if m[spec_ack.N_VERSION] != spec_ack.ACK_VERSION or again != wire.encode(m):
        raise AckError(spec_ack.AR_PAYLOAD, "version or fields")
    return Nack(
        bytes(data),
        kid,
        m[spec_ack.N_DEVICE],
        m[spec_ack.N_SEQ],
        m[spec_ack.N_TX],
        m[spec_ack.N_REASON],
        m[spec_ack.N_TIME],
    )


def verify_ack(
    data: bytes,
    node_keys: Mapping[bytes, bytes],
    witness_keys: Mapping[bytes, bytes],
    expected_tx_id: bytes | None = None,
    record: bytes | None = None,
    device_id: bytes | None = None,
) -> Ack:
    """An ack whose every claim holds, or AckError with the first that does not.

    ``node_keys`` (kid -> public key) are the producing node's keys: its ack
    key signs the ack, its checkpoint key the checkpoint (the content type
    keeps the two kinds apart); ``witness_keys`` the witnesses', of which one
    must have cosigned. ``expected_tx_id`` is the reader's own transaction id
    for the acked sequence number, ``record`` its wire bytes (the leaf), and
    ``device_id`` the reader's device; each is checked when given.
    """
    kid, m = _open(data, spec.CTY_ACK, node_keys)
    if type(m) is not dict or sorted(m) != list(spec_ack.ACK_KEYS):
        raise AckError(spec_ack.AR_PAYLOAD, "a map of keys 0-6 expected")
    proof = m[spec_ack.A_PROOF]
    cosigs = m[spec_ack.A_COSIGS]
    if (
        m[spec_ack.A_VERSION] != spec_ack.ACK_VERSION
        or type(proof) is not list
        or len(proof) != 3
        or type(proof[2]) is not list
        or type(cosigs) is not list
        or not all(type(c) is bytes for c in cosigs)
        or type(m[spec_ack.A_CHECKPOINT]) is not bytes
    ):
        raise AckError(spec_ack.AR_PAYLOAD, "version, proof or cosignatures")
    try:
        again = ack_payload(
            m[spec_ack.A_DEVICE],
            m[spec_ack.A_SEQ],
            m[spec_ack.A_TX],
            m[spec_ack.A_CHECKPOINT],
            cosigs,
            proof[0],
            proof[1],
            proof[2],
        )
    except (ValueError, TypeError) as e:
        raise AckError(spec_ack.AR_PAYLOAD, str(e)) from None
    if again != wire.encode(m):
        raise AckError(spec_ack.AR_PAYLOAD, "fields out of range")
    a = Ack(
        bytes(data),
        kid,
        m[spec_ack.A_DEVICE],
        m[spec_ack.A_SEQ],
        m[spec_ack.A_TX],
        m[spec_ack.A_CHECKPOINT],
        tuple(cosigs),
        proof[0],
        proof[1],
        tuple(proof[2]),
    )
    if device_id is not None and a.device != device_id:
        raise AckError(spec_ack.AR_DEVICE, "ack for device %s" % a.device.hex())
    try:
        s, _ = cp.verify_final(a.checkpoint, a.cosignatures, node_keys, witness_keys, quorum=1)
    except CheckpointError as e:
        reason = {
            "unknown-key": spec_ack.AR_KEY,
            "bad-signature": spec_ack.AR_SIGNATURE,
            "not-final": spec_ack.AR_QUORUM,
            "content-type": spec_ack.AR_CTY,
        }.get(e.reason, spec_ack.AR_COSE)
        raise AckError(reason, "checkpoint: %s" % e) from None
    if cp.chain_kind(s.checkpoint.chain) != cp.KIND_SEGMENT:
        raise AckError(spec_ack.AR_CHAIN, "checkpoint of chain %s" % s.checkpoint.chain)
    if a.size != s.checkpoint.size:
        raise AckError(
            spec_ack.AR_PROOF, "proof for size %d, checkpoint %d" % (a.size, s.checkpoint.size)
        )
    if expected_tx_id is not None and a.tx_id != expected_tx_id:
        raise AckError(spec_ack.AR_TX, "acked %s" % a.tx_id.hex())
    if record is not None:
        rec = wire.decode(record)
        if rec.id != a.tx_id or rec.seq != a.seq or rec.device_id != a.device:
            raise AckError(spec_ack.AR_TX, "the record is not the acked transaction")
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(record), a.index, a.size, a.path, s.checkpoint.root
            )
        except ProofError as e:
            raise AckError(spec_ack.AR_PROOF, str(e)) from None
        if s.checkpoint.chain != cp.SEGMENT_PREFIX + rec.segment:
            raise AckError(spec_ack.AR_CHAIN, "checkpoint of chain %s" % s.checkpoint.chain)
    return a
