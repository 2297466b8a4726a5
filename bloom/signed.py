"""A filter as the node signs it, and the board's checks before it uses a new one.

A signed filter is a tagged COSE_Sign1 (RFC 9052): protected header
``{1: -8, 3: wire.CTY_FILTER, 4: kid}`` (kid: the node's filter key),
unprotected header empty, payload the filter's bytes (bloom.filter). The
node signs (``lightnode.filters.sign``); a board checks with
``verify_filter`` and keeps the filter only if every check holds.

    from lightnode.bloom import signed
    node_keys = {kid: (public_key, ("filter",))}   # the board's config
    f = signed.verify_filter(data, node_keys, held_epoch, now_s, max_bytes)
"""

try:
    from ln import cbor, cose, wire
    from ln.errors import WireError
except ImportError:  # CPython
    from lightnode.firmware.ln import cbor, cose, wire
    from lightnode.firmware.ln.errors import WireError

from .filter import (
    R_CONTENT_TYPE,
    R_EPOCH,
    R_EXPIRED,
    R_OVERSIZED,
    R_PROTECTED,
    R_ROLE,
    R_SIGNER,
    BloomFilter,
    FilterError,
    read_header,
)

_LABELS = (wire.H_ALG, wire.H_CTY, wire.H_KID)


def protected_header(kid):
    """The protected header of a signed filter, as the bytes of its bstr."""
    if not isinstance(kid, (bytes, bytearray)) or not 1 <= len(kid) <= wire.MAX_DEVICE_ID:
        raise ValueError("kid: 1-%d bytes expected" % wire.MAX_DEVICE_ID)
    return cbor.dumps({wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: wire.CTY_FILTER, wire.H_KID: bytes(kid)})


def _key_of(node_keys, kid):
    entry = node_keys.get(kid)
    if entry is None:
        raise FilterError(R_SIGNER, "kid %s is not a node key of this board" % _hex(kid))
    public, roles = entry
    if wire.ROLE_FILTER not in roles:
        raise FilterError(R_ROLE, "kid %s has no %s role" % (_hex(kid), wire.ROLE_FILTER))
    return public


def _hex(b):
    return "".join("%02x" % c for c in b[:8])


def verify_filter(data, node_keys, held_epoch, now_s, max_bytes):
    """The ``BloomFilter`` in signed filter ``data``, if the board may use it; else ``FilterError``.

    ``node_keys``: ``{kid: (public key, roles)}``, the node keys of the
    board's config; only one with ``wire.ROLE_FILTER`` may sign a filter.
    ``held_epoch``: the epoch of the filter the board holds (-1: none); an
    older one is refused, the same one accepted (a retained message comes
    again after every reconnect). ``now_s``: the board's time, seconds
    since 1970 UTC; a filter is refused once ``now_s > not_after``.
    ``max_bytes``: the board's limit on the whole signed object.

    In order: size; CBOR, tag, structure; protected header (alg, content
    type, kid) and an empty unprotected header; signer and role; the
    signature; the filter layout; epoch; not-after.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data: bytes expected")
    if len(data) > max_bytes:
        raise FilterError(R_OVERSIZED, "%d bytes, this board takes %d" % (len(data), max_bytes))
    try:
        obj = cbor.loads(data, tag_depth=0, max_bytes=max_bytes)
        tag, pb, unprotected, payload, sig = cose.parts(obj, False)
        obj = None
        cose.check_tag(tag)
        header = cbor.loads(pb)
        cose.check_alg(header)
    except WireError as e:
        raise FilterError(e.reason, e.detail)
    if header.get(wire.H_CTY) != wire.CTY_FILTER:
        raise FilterError(R_CONTENT_TYPE, "content type %r, not a filter" % (header.get(wire.H_CTY),))
    kid = header.get(wire.H_KID)
    if type(kid) is not bytes or len(header) != len(_LABELS) or unprotected:
        raise FilterError(R_PROTECTED, "not exactly {1: alg, 3: cty, 4: kid} and an empty unprotected map")
    public = _key_of(node_keys, kid)
    # The Sig_structure made with one copy of the payload, and the decoded
    # payload dropped before the signature is checked: on a board the
    # filter is the largest thing in the heap (docs/bloom.md, the board rule).
    prefix = _sig_prefix(pb, len(payload))
    tbs = prefix + payload
    payload = None
    try:
        cose.check_signature(cose.check_key(public), tbs, sig)
    except WireError as e:
        raise FilterError(e.reason, e.detail)
    body = memoryview(tbs)[len(prefix):]
    bits, hashes, epoch, not_after, items, salt = read_header(body)
    if epoch < held_epoch:
        raise FilterError(R_EPOCH, "epoch %d, the board holds %d" % (epoch, held_epoch))
    if now_s > not_after:
        raise FilterError(R_EXPIRED, "not after %d, now %d" % (not_after, now_s))
    return BloomFilter.from_bytes(body)


def _sig_prefix(pb, n):
    """``["Signature1", protected, h'', payload]`` up to the payload's bytes (RFC 9052 4.4)."""
    if n < 24:
        head = bytes((0x40 | n,))
    elif n < 0x100:
        head = bytes((0x58, n))
    elif n < 0x10000:
        head = bytes((0x59, n >> 8, n & 0xFF))
    else:
        head = bytes((0x5A, n >> 24, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))
    return b"\x84" + cbor.dumps("Signature1") + cbor.dumps(pb) + b"\x40" + head
