"""Checkpoints: a chain's block header, signed by the node that cut it and cosigned by witnesses.

A checkpoint says "chain C had ``size`` entries with Merkle root ``root``
at ``time``, after the checkpoint whose payload hashes to ``prev``, checked
against registry checkpoint (size, root)". Its payload is a deterministic
CBOR map (docs/verification.md has it byte by byte); the producer signs it
as a tagged COSE_Sign1 with protected ``{1: -8, 3: CTY_CHECKPOINT, 4: kid}``
and an empty unprotected header. A witness cosigns by signing the very same
payload bytes the same way with its own key: a second COSE_Sign1. A
checkpoint is final when its producer and one witness of the configured set
have signed it.

    >>> from lightnode.ledger import checkpoint as cp
    >>> c = cp.Checkpoint("registry", 0, cp.EMPTY_ROOT, cp.GENESIS, 1_700_000_000_000_000)
    >>> signed = cp.sign(c, seed=bytes(32), kid=b"node-1")
    >>> cp.verify_checkpoint(signed, {b"node-1": cp.public_key(bytes(32))}).checkpoint == c
    True
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lightnode import wire
from lightnode.errors import WireError
from lightnode.firmware.ln import wire as spec
from lightnode.ledger.errors import CheckpointError
from lightnode.ledger.merkle import EMPTY_ROOT, HASH_SIZE
from nacl.signing import SigningKey

__all__ = [
    "EMPTY_ROOT",
    "GENESIS",
    "Checkpoint",
    "Signed",
    "chain_kind",
    "cosign",
    "decode",
    "header_hash",
    "public_key",
    "sign",
    "verify_checkpoint",
    "verify_final",
]

GENESIS = bytes(HASH_SIZE)  # ``prev`` of a chain's first checkpoint

KIND_SEGMENT = "segment"
KIND_REGISTRY = "registry"
KIND_OPERATOR = "operator"
KIND_GENERAL = "general"
CHAIN_KINDS = (KIND_SEGMENT, KIND_REGISTRY, KIND_OPERATOR, KIND_GENERAL)
SEGMENT_PREFIX = "seg:"
_SEGMENT_RE = re.compile(r"[a-z0-9-]{1,%d}\Z" % spec.MAX_SEGMENT)


def chain_kind(chain: str) -> str:
    """``segment`` for ``seg:<segment>``, else the chain's own name; ValueError for anything else."""
    if not isinstance(chain, str):
        raise TypeError("chain: str expected")
    if chain.startswith(SEGMENT_PREFIX):
        if not _SEGMENT_RE.match(chain[len(SEGMENT_PREFIX) :]):
            raise ValueError("chain %r: a segment is 1-%d of a-z0-9-" % (chain, spec.MAX_SEGMENT))
        return KIND_SEGMENT
    if chain in (KIND_REGISTRY, KIND_OPERATOR, KIND_GENERAL):
        return chain
    raise ValueError("chain %r: seg:<segment>, registry, operator or general" % (chain,))


@dataclass(frozen=True)
class Checkpoint:
    """What a block header says; ``registry`` is the registry checkpoint (size, root) checked against."""

    chain: str
    size: int
    root: bytes
    prev: bytes  # SHA-256 of the previous checkpoint's payload; GENESIS for the first
    time: int  # us since 1970, the producing node's clock when it cut the block
    registry: tuple[int, bytes] | None = None
    version: int = spec.CHECKPOINT_VERSION

    def payload(self) -> bytes:
        """The deterministic CBOR map that is signed (and hashed into the next ``prev``)."""
        chain_kind(self.chain)
        for name, h in (("root", self.root), ("prev", self.prev)):
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise ValueError("%s: %d bytes expected" % (name, HASH_SIZE))
        if (
            type(self.size) is not int
            or self.size < 0
            or type(self.time) is not int
            or self.time < 0
        ):
            raise ValueError("size and time are unsigned integers")
        reg: Any = None
        if self.registry is not None:
            rsize, rroot = self.registry
            if type(rsize) is not int or rsize < 0 or len(rroot) != HASH_SIZE:
                raise ValueError("registry: (size, 32-byte root) expected")
            reg = [rsize, bytes(rroot)]
        return wire.encode(
            {
                spec.CP_VERSION: self.version,
                spec.CP_CHAIN: self.chain,
                spec.CP_SIZE: self.size,
                spec.CP_ROOT: self.root,
                spec.CP_PREV: self.prev,
                spec.CP_TIME: self.time,
                spec.CP_REGISTRY: reg,
            }
        )

    @property
    def header_hash(self) -> bytes:
        return header_hash(self.payload())


def header_hash(payload: bytes) -> bytes:
    """SHA-256 of a checkpoint's payload bytes: what the next checkpoint's ``prev`` holds."""
    return hashlib.sha256(payload).digest()


def _refuse(reason: str, detail: str) -> CheckpointError:
    return CheckpointError(reason, detail)


def parse_payload(payload: bytes) -> Checkpoint:
    """The checkpoint in a payload; CheckpointError(``bad-checkpoint``) if it is not one exactly."""
    try:
        wire.scan(payload, wire.TAGS_NONE)
        m = wire._load(payload, wire.TAGS_NONE)  # canonical re-encoding checked there
    except WireError as e:
        raise _refuse("bad-checkpoint", "payload: %s" % e) from None
    if type(m) is not dict or sorted(m) != list(spec.CP_KEYS):
        raise _refuse("bad-checkpoint", "payload: a map of keys 0-6 expected")
    if m[spec.CP_VERSION] != spec.CHECKPOINT_VERSION:
        raise _refuse("bad-checkpoint", "version %r" % (m[spec.CP_VERSION],))
    reg = m[spec.CP_REGISTRY]
    if reg is not None:
        if (
            type(reg) is not list
            or len(reg) != 2
            or type(reg[0]) is not int
            or type(reg[1]) is not bytes
        ):
            raise _refuse("bad-checkpoint", "registry: [size, root] or null expected")
        reg = (reg[0], reg[1])
    if type(m[spec.CP_CHAIN]) is not str:
        raise _refuse("bad-checkpoint", "chain: text expected")
    c = Checkpoint(m[spec.CP_CHAIN], m[spec.CP_SIZE], m[spec.CP_ROOT], m[spec.CP_PREV], m[spec.CP_TIME], reg)
    try:
        again = c.payload()
    except (ValueError, TypeError) as e:
        raise _refuse("bad-checkpoint", str(e)) from None
    if again != payload:
        raise _refuse("bad-checkpoint", "payload does not re-encode to itself")
    return c


@dataclass(frozen=True)
class Signed:
    """One signature over a checkpoint: the producer's, or a witness's cosignature."""

    raw: bytes  # the tagged COSE_Sign1
    kid: bytes
    payload: bytes
    checkpoint: Checkpoint
    protected: bytes
    signature: bytes

    @property
    def header_hash(self) -> bytes:
        return header_hash(self.payload)


def _protected(kid: bytes) -> bytes:
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= spec.MAX_DEVICE_ID:
        raise ValueError("kid: 1-%d bytes expected" % spec.MAX_DEVICE_ID)
    return wire.encode(
        {spec.H_ALG: spec.ALG_EDDSA, spec.H_CTY: spec.CTY_CHECKPOINT, spec.H_KID: kid}
    )


def public_key(seed: bytes) -> bytes:
    """The Ed25519 public key of a 32-byte seed."""
    return bytes(SigningKey(bytes(seed)).verify_key)


def _sign_payload(payload: bytes, seed: bytes, kid: bytes) -> bytes:
    protected = _protected(kid)
    sig = SigningKey(bytes(seed)).sign(wire.sig_structure(protected, payload)).signature
    return wire.envelope(protected, payload, sig)


def sign(c: Checkpoint, seed: bytes, kid: bytes) -> bytes:
    """The producer's signed checkpoint: a tagged COSE_Sign1 over ``c.payload()``."""
    return _sign_payload(c.payload(), seed, kid)


def cosign(signed_checkpoint: bytes, seed: bytes, kid: bytes) -> bytes:
    """A witness's cosignature: its own COSE_Sign1 over the same payload bytes.

    The witness is expected to have recomputed the block and checked
    consistency before calling this; here only the checkpoint's shape is checked.
    """
    return _sign_payload(decode(signed_checkpoint).payload, seed, kid)


def decode(data: bytes) -> Signed:
    """A signed checkpoint or cosignature, shape checked (not the signature): CheckpointError otherwise."""
    try:
        s = wire.decode_cose_sign1(data)
    except WireError as e:
        raise _refuse("bad-cose", str(e)) from None
    h = s.header
    if sorted(h, key=repr) != sorted((spec.H_ALG, spec.H_CTY, spec.H_KID), key=repr):
        raise _refuse(
            "protected-header", "labels 1, 3, 4 expected, got %r" % (sorted(h, key=repr),)
        )
    if h[spec.H_ALG] not in (spec.ALG_EDDSA, spec.ALG_ED25519) or type(h[spec.H_ALG]) is not int:
        raise _refuse("unsupported-alg", "alg %r" % (h[spec.H_ALG],))
    if h[spec.H_CTY] != spec.CTY_CHECKPOINT:
        raise _refuse("content-type", "cty %r is not a checkpoint" % (h[spec.H_CTY],))
    kid = h[spec.H_KID]
    if type(kid) is not bytes or not 1 <= len(kid) <= spec.MAX_DEVICE_ID:
        raise _refuse("protected-header", "kid: 1-32 bytes expected")
    if s.unprotected:
        raise _refuse("unprotected-header", "the unprotected header must be empty")
    if s.payload is None:
        raise _refuse("bad-checkpoint", "detached payload")
    if len(s.signature) != spec.ED25519_SIG_BYTES:
        raise _refuse("bad-signature", "signature of %d bytes" % len(s.signature))
    return Signed(s.raw, kid, s.payload, parse_payload(s.payload), s.protected, s.signature)


def _check_signature(s: Signed, key: bytes) -> None:
    try:
        # alg already checked by decode: -8 or -19, both Ed25519
        header = {spec.H_ALG: spec.ALG_EDDSA}
        wire.Sign1(s.raw, s.protected, header, {}, s.payload, s.signature).verify(key)
    except WireError as e:
        raise _refuse("bad-signature", "kid %s: %s" % (s.kid.hex(), e)) from None


def verify_checkpoint(data: bytes, trusted_keys: Mapping[bytes, bytes]) -> Signed:
    """Decode and check one signed checkpoint against ``trusted_keys`` (kid -> Ed25519 public key)."""
    s = decode(data)
    key = trusted_keys.get(s.kid)
    if key is None:
        raise _refuse("unknown-key", "kid %s is not a trusted node key" % s.kid.hex())
    _check_signature(s, key)
    return s


def verify_final(
    data: bytes,
    cosignatures: Iterable[bytes],
    producers: Mapping[bytes, bytes],
    witnesses: Mapping[bytes, bytes],
    quorum: int = 1,
) -> tuple[Signed, list[bytes]]:
    """Check that a checkpoint is final: its producer's signature and ``quorum`` witnesses' over the same payload.

    Returns the checkpoint and the kids of the witnesses whose cosignatures
    hold. A cosignature from a producer's own key, over another payload or
    with a bad signature does not count (a bad one is refused outright:
    nothing false is kept quietly beside a checkpoint).
    """
    s = verify_checkpoint(data, producers)
    good: list[bytes] = []
    for raw in cosignatures:
        w = decode(raw)
        if w.payload != s.payload:
            raise _refuse("cosignature-mismatch", "kid %s signed another checkpoint" % w.kid.hex())
        key = witnesses.get(w.kid)
        if key is None:
            raise _refuse("unknown-key", "kid %s is not a witness" % w.kid.hex())
        _check_signature(w, key)
        if w.kid != s.kid and w.kid not in good:
            good.append(w.kid)
    if len(good) < quorum:
        raise _refuse("not-final", "%d witness cosignature(s), %d needed" % (len(good), quorum))
    return s, good
