"""Errors for what the remote side or the link did to a transaction.

One family: every refusal is a ``WireError`` (a ``ValueError``) that
carries one reason of ``ln.wire`` (``wire.R_*``) in ``.reason``. A
caller's own mistake (a bad argument to an encoder) is a plain
``ValueError`` or ``TypeError`` instead.

    from ln import cbor, errors
    try:
        cbor.loads(data)
    except errors.WireError as e:
        log(e.reason)
"""


class WireError(ValueError):
    """Bytes from outside refused, for ``reason`` (one of wire.REASONS)."""

    def __init__(self, reason, detail=""):
        if detail:
            super().__init__("%s: %s" % (reason, detail))
        else:
            super().__init__(reason)
        self.reason = reason
        self.detail = detail


class CBORError(WireError):
    """Not the deterministic CBOR subset of docs/wire-format.md."""


class CoseError(WireError):
    """Not an acceptable COSE_Sign1 (tag, algorithm, headers, signature)."""


class TxError(WireError):
    """Not an acceptable transaction (shape, payload hash, payload fields)."""
