"""Device keys: Ed25519 seeds and public keys, as bytes and as hex files.

A device key is a 32-byte Ed25519 seed; its public key (32 bytes) is what
the registry holds and what ``lightnode tx verify`` checks against. On disk
both are one line of hex (``device.pub``, ``device.seed``). A caller's
mistake (wrong length, not hex, a missing file) is a ``ValueError`` that
says which.

    >>> from lightnode import keys
    >>> seed = keys.generate_seed()
    >>> pub = keys.public_key(seed)
    >>> keys.parse_public_key(pub.hex()) == pub
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from lightnode.firmware.ln import wire as spec
from nacl.signing import SigningKey

SEED_BYTES = 32


def generate_seed() -> bytes:
    """A new device key seed from the operating system's random source."""
    return os.urandom(SEED_BYTES)


def public_key(seed: bytes) -> bytes:
    """The Ed25519 public key of ``seed``."""
    return bytes(SigningKey(_check(seed, SEED_BYTES, "seed")).verify_key)


def _check(b: bytes, size: int, what: str) -> bytes:
    if not isinstance(b, bytes | bytearray):
        raise TypeError(f"{what}: bytes expected, not {type(b).__name__}")
    if len(b) != size:
        raise ValueError(f"{what}: {len(b)} bytes, expected {size}")
    return bytes(b)


def parse_hex(text: str, size: int, what: str = "key") -> bytes:
    """``size`` bytes from hex text (whitespace, a ``0x`` prefix and ``:`` separators allowed)."""
    s = "".join(text.split()).replace(":", "")
    if s[:2].lower() == "0x":
        s = s[2:]
    if len(s) != 2 * size:
        raise ValueError(f"{what}: {len(s)} hex digits, expected {2 * size}")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise ValueError(f"{what}: not hex") from None


def parse_public_key(text: str) -> bytes:
    """An Ed25519 public key from 64 hex digits."""
    return parse_hex(text, spec.ED25519_KEY_BYTES, "public key")


def parse_seed(text: str) -> bytes:
    """A device key seed from 64 hex digits."""
    return parse_hex(text, SEED_BYTES, "seed")


def _read(path: str | os.PathLike[str], what: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise ValueError(f"{what} file {os.fspath(path)}: not found") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} file {os.fspath(path)}: not hex text") from None
    except OSError as e:
        raise ValueError(f"{what} file {os.fspath(path)}: {e.strerror}") from None


def read_public_key(path: str | os.PathLike[str]) -> bytes:
    """A public key from a hex file such as ``device.pub``."""
    try:
        return parse_public_key(_read(path, "public key"))
    except ValueError as e:
        if str(e).startswith("public key file"):
            raise
        raise ValueError(f"{os.fspath(path)}: {e}") from None


def read_seed(path: str | os.PathLike[str]) -> bytes:
    """A seed from a hex file such as ``device.seed``."""
    try:
        return parse_seed(_read(path, "seed"))
    except ValueError as e:
        if str(e).startswith("seed file"):
            raise
        raise ValueError(f"{os.fspath(path)}: {e}") from None


def write_public_key(path: str | os.PathLike[str], key: bytes) -> None:
    """Write ``key`` as one line of hex."""
    Path(path).write_text(_check(key, spec.ED25519_KEY_BYTES, "public key").hex() + "\n")


def write_seed(path: str | os.PathLike[str], seed: bytes) -> None:
    """Write ``seed`` as one line of hex, readable by its owner only; an existing file is not replaced."""
    data = (_check(seed, SEED_BYTES, "seed").hex() + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValueError(f"seed file {os.fspath(path)}: exists, not replaced") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
