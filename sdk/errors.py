"""The SDK's errors: one family, so callers catch ``LightnodeError`` and nothing else.

    >>> from lightnode import errors
    >>> try:
    ...     wire.decode(b"junk")
    ... except errors.WireError as e:
    ...     print(e.reason)
    malformed
"""

from lightnode.firmware.ln import wire as _wire


class LightnodeError(Exception):
    """Anything lightnode refuses or cannot do."""


class WireError(LightnodeError):
    """A transaction or COSE object was refused; ``reason`` is one of ``wire.REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in _wire.REASONS:
            raise ValueError("unknown wire reason %r" % (reason,))
        self.reason = reason
        self.detail = detail
        super().__init__("%s: %s" % (reason, detail) if detail else reason)


class DecodeError(WireError):
    """The bytes are not an acceptable encoding (malformed, oversized, non-canonical, wrong shape)."""


class VerifyError(WireError):
    """The object decodes but is not authentic (signature, payload hash, kid)."""


class HarnessError(LightnodeError):
    """MicroPython or node could not be found, or a run inside them failed or timed out."""
