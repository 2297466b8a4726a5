"""COSE_Sign1 (RFC 9052) with Ed25519, and the wire format's hash envelope (RFC 9995).

``sign1``/``verify1`` are plain COSE_Sign1; ``sign_envelope`` and
``check_envelope_header`` are the transaction profile of
docs/wire-format.md: the COSE payload is SHA-256 of the transaction's
payload and the protected header is exactly ``{1: -8, 4: kid, 258: -16,
259: 60}``. Refusals are ``CoseError`` (or ``CBORError`` for the bytes
themselves) carrying a reason of ``ln.wire``.

    from ln import cose, ed25519
    key = ed25519.SigningKey(seed)
    data = cose.sign1({1: -8}, {4: b"11"}, b"content", key)
    msg = cose.verify1(data, key.public)    # a Sign1; msg.payload == b"content"
"""

import hashlib

from . import cbor, wire
from .errors import CoseError

_CONTEXT = "Signature1"
_ED25519_ALGS = (wire.ALG_EDDSA, wire.ALG_ED25519)
_ENVELOPE_LABELS = (wire.H_ALG, wire.H_KID, wire.H_PAYLOAD_HASH_ALG, wire.H_PREIMAGE_CTY)


class Sign1:
    """A decoded COSE_Sign1: the protected header as signed (bytes) and decoded (dict)."""

    def __init__(self, tag, protected_bytes, protected, unprotected, payload, signature):
        self.tag = tag  # None when untagged
        self.protected_bytes = protected_bytes
        self.protected = protected
        self.unprotected = unprotected
        self.payload = payload  # None: detached
        self.signature = signature

    @property
    def alg(self):
        return self.protected.get(wire.H_ALG)

    @property
    def kid(self):
        kid = self.protected.get(wire.H_KID, self.unprotected.get(wire.H_KID))
        return kid if type(kid) is bytes else None

    def __repr__(self):
        return "Sign1(alg=%r, kid=%r, %d-byte payload)" % (
            self.alg,
            self.kid,
            -1 if self.payload is None else len(self.payload),
        )


def sig_structure(protected_bytes, payload, external_aad=b""):
    """``["Signature1", protected, external_aad, payload]``: the bytes Ed25519 signs."""
    return cbor.dumps([_CONTEXT, protected_bytes, external_aad, payload])


def sign1(protected, unprotected, payload, key, tag=True, external_aad=b""):
    """A COSE_Sign1 of ``payload`` signed with ``key`` (an ``ed25519.SigningKey``).

    An empty protected header is the empty byte string (RFC 9052 3).
    """
    pb = cbor.dumps(protected) if protected else b""
    sig = key.sign(sig_structure(pb, payload, external_aad))
    msg = [pb, unprotected, payload, sig]
    return cbor.dumps(cbor.Tag(wire.COSE_SIGN1_TAG, msg) if tag else msg)


def parts(item, payload_may_be_nil=True):
    """``(tag, protected, unprotected, payload, signature)`` of a decoded COSE_Sign1, types checked.

    ``tag`` is None if ``item`` is untagged. Raises ``CoseError(structure)``.
    """
    tag = None
    if isinstance(item, cbor.Tag):
        tag = item.tag
        item = item.value
    if type(item) is not list or len(item) != 4:
        raise CoseError(wire.R_STRUCTURE, "the envelope is not a COSE_Sign1 array of 4")
    protected, unprotected, payload, signature = item
    if type(protected) is not bytes:
        raise CoseError(wire.R_STRUCTURE, "protected header not a byte string")
    if type(unprotected) is not dict:
        raise CoseError(wire.R_STRUCTURE, "unprotected header not a map")
    if not (type(payload) is bytes or (payload_may_be_nil and payload is None)):
        raise CoseError(wire.R_STRUCTURE, "payload not a byte string")
    if type(signature) is not bytes:
        raise CoseError(wire.R_STRUCTURE, "signature not a byte string")
    return tag, protected, unprotected, payload, signature


def check_tag(tag):
    if tag != wire.COSE_SIGN1_TAG:
        raise CoseError(
            wire.R_TAG,
            "untagged" if tag is None else "tag %d, not %d" % (tag, wire.COSE_SIGN1_TAG),
        )


def check_alg(header):
    """The alg of a decoded protected header, if Ed25519 (-8 or -19); else ``CoseError``."""
    if type(header) is not dict:
        raise CoseError(wire.R_PROTECTED, "protected header not a map")
    if wire.H_ALG not in header:
        raise CoseError(wire.R_PROTECTED, "no alg in the protected header")
    alg = header[wire.H_ALG]
    if type(alg) is not int or alg not in _ED25519_ALGS:
        raise CoseError(wire.R_ALG, "alg %r" % (alg,))
    return alg


def check_key(public_key):
    """``public_key`` as bytes if it is an Ed25519 key; an Ed448 one is ``unsupported-alg``."""
    if not isinstance(public_key, (bytes, bytearray, memoryview)):
        raise TypeError("public key: bytes expected, not %s" % type(public_key).__name__)
    key = bytes(public_key)
    if len(key) == wire.ED448_KEY_BYTES:
        raise CoseError(wire.R_ALG, "a %d-byte key is Ed448, which is not supported" % len(key))
    if len(key) != wire.ED25519_KEY_BYTES:
        raise ValueError("public key: %d bytes, an Ed25519 key has 32" % len(key))
    return key


def check_signature(public_key, signed, signature):
    """Raise ``CoseError(bad-signature)`` unless ``signature`` over ``signed`` holds."""
    if len(signature) != wire.ED25519_SIG_BYTES:
        raise CoseError(wire.R_SIGNATURE, "signature of %d bytes" % len(signature))
    from . import ed25519  # the curve code is large: only where a signature is checked

    if not ed25519.verify(public_key, signed, signature):
        raise CoseError(wire.R_SIGNATURE, "Ed25519 verification failed")


def decode1(data, tag=True):
    """A COSE_Sign1 in the CBOR subset: structure, tag and protected header checked, not the signature.

    With ``tag=True`` it must carry tag 18; with ``tag=False`` it must be
    untagged. A detached payload decodes as None.
    """
    obj = cbor.loads(data, tag_depth=0 if tag else -1)
    t, pb, unprotected, payload, sig = parts(obj, True)
    if tag:
        check_tag(t)
    header = cbor.loads(pb) if pb else {}
    if type(header) is not dict:
        raise CoseError(wire.R_PROTECTED, "protected header not a map")
    return Sign1(t, pb, header, unprotected, payload, sig)


def verify1(data, public_key, payload=None, external_aad=b"", tag=True):
    """``decode1(data)``, then its Ed25519 signature with ``public_key``: the ``Sign1`` or a refusal.

    ``payload`` is the detached payload, for an object that has none.
    Order: structure, tag, protected header, key (Ed448: unsupported-alg),
    alg (anything but -8 and -19: unsupported-alg), signature.
    """
    msg = decode1(data, tag)
    key = check_key(public_key)
    alg = msg.alg
    if type(alg) is not int or alg not in _ED25519_ALGS:
        raise CoseError(wire.R_ALG, "alg %r" % (alg,))
    content = msg.payload if payload is None else payload
    if content is None:
        raise ValueError("a detached payload is needed to verify this object")
    check_signature(key, sig_structure(msg.protected_bytes, content, external_aad), msg.signature)
    return msg


# ---------------------------------------------------------------- hash envelope


def envelope_header(kid):
    """The protected header a device emits, as the bytes of its bstr."""
    if not isinstance(kid, (bytes, bytearray)):
        raise TypeError("kid: bytes expected")
    if not 1 <= len(kid) <= wire.MAX_DEVICE_ID:
        raise ValueError("kid: %d bytes, must be 1-%d" % (len(kid), wire.MAX_DEVICE_ID))
    return cbor.dumps(
        {
            wire.H_ALG: wire.ALG_EDDSA,
            wire.H_KID: bytes(kid),
            wire.H_PAYLOAD_HASH_ALG: wire.ALG_SHA256,
            wire.H_PREIMAGE_CTY: wire.CTY_CBOR,
        }
    )


def sign_envelope(payload, key, kid, protected_bytes=None):
    """The envelope of ``payload``: ``18([protected, {}, SHA-256(payload), signature])`` as bytes.

    ``protected_bytes`` may be given precomputed (``envelope_header(kid)``).
    """
    pb = envelope_header(kid) if protected_bytes is None else protected_bytes
    digest = hashlib.sha256(payload).digest()
    sig = key.sign(sig_structure(pb, digest))
    return cbor.dumps(cbor.Tag(wire.COSE_SIGN1_TAG, [pb, {}, digest, sig]))


def check_envelope_header(header, unprotected):
    """The kid, if ``header`` is exactly the envelope's protected header and ``unprotected`` is empty.

    ``header`` has passed ``check_alg``. Raises ``CoseError``
    (protected-header, then unprotected-header).
    """
    kid = header.get(wire.H_KID)
    ok = len(header) == len(_ENVELOPE_LABELS)
    for label in _ENVELOPE_LABELS:
        ok = ok and label in header
    if not (
        ok
        and type(kid) is bytes
        and 1 <= len(kid) <= wire.MAX_DEVICE_ID
        and type(header[wire.H_PAYLOAD_HASH_ALG]) is int
        and header[wire.H_PAYLOAD_HASH_ALG] == wire.ALG_SHA256
        and type(header[wire.H_PREIMAGE_CTY]) is int
        and header[wire.H_PREIMAGE_CTY] == wire.CTY_CBOR
    ):
        raise CoseError(
            wire.R_PROTECTED, "not exactly {1: alg, 4: kid (1-32 bytes), 258: -16, 259: 60}"
        )
    if unprotected:
        raise CoseError(wire.R_UNPROTECTED, "labels %r" % (sorted(unprotected, key=str),))
    return kid
