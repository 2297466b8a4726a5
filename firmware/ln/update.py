"""Signed application updates, installed into the inactive of two slots.

A bundle is ``MAGIC``, the length of a signed manifest (4 bytes, big
endian), the manifest, then the files' bytes one after another. The
manifest is a tagged COSE_Sign1 with protected header exactly
``{1: -8, 3: wire.CTY_UPDATE, 4: kid}`` whose payload is a deterministic
CBOR map: bundle format, version, board, mpy architecture, and per file
its path, size and SHA-256. Only the manifest is signed (Ed25519 hashes a
few hundred bytes, not the application); every file is checked against
its SHA-256 as it streams to flash. docs/updates.md has the rules.

    from ln import keystore, update
    cfg = keystore.load_config()
    with open("/upload.bin", "rb") as f:
        info = update.install(f, cfg.node_keys(), now_us, board="pico_w", feed=wdt.feed)
    machine.reset()      # ln.boot.decide switches to info["slot"] at the next boot
"""

import hashlib
import os

from . import boot, cbor, cose, fs, wire
from .errors import WireError

MAGIC = b"LNUP"
BUNDLE_FORMAT = 1
# Manifest (COSE payload) keys.
M_FORMAT = 0
M_VERSION = 1
M_BOARD = 2
M_ARCH = 3
M_FILES = 4  # [[path, size, sha256], ...], sorted by path, in the order the bytes follow
MANIFEST_KEYS = (0, 1, 2, 3, 4)
MAX_MANIFEST = 16384  # bytes of the signed manifest
MAX_FILES = 256
MAX_PATH = 96
SLOT_BYTES = 393216  # default room for one slot's files
CHUNK = 2048  # bytes between watchdog feeds and hash updates
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/"

# Why a bundle was refused (UpdateError.reason).
R_BUNDLE = "bad-bundle"  # framing, manifest shape, file sizes or paths
R_CTY = "wrong-content-type"
R_UNKNOWN_KEY = "unknown-key"
R_ROLE = "wrong-role"
R_SIGNATURE = "bad-signature"
R_BOARD = "wrong-board"
R_VERSION = "not-newer"
R_TOO_BIG = "too-big"
R_FILE_HASH = "file-hash"
R_ON_TRIAL = "on-trial"  # the running slot has not been healthy yet


class UpdateError(ValueError):
    """A bundle refused, for ``reason`` (one of the ``R_*`` above)."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_version(v):
    """``"1.2.3"`` as ``(1, 2, 3)``; ``UpdateError(bad-bundle)`` for anything else."""
    if not isinstance(v, str) or not 0 < len(v) <= 32:
        raise UpdateError(R_BUNDLE, "version not text")
    out = []
    for part in v.split("."):
        if not part or not part.isdigit() or len(part) > 9:
            raise UpdateError(R_BUNDLE, "version %r not N.N.N" % v)
        out.append(int(part))
    if len(out) != 3:
        raise UpdateError(R_BUNDLE, "version %r not N.N.N" % v)
    return tuple(out)


class _Source:
    """Bytes (read in place through a memoryview) or a stream."""

    def __init__(self, src):
        if isinstance(src, (bytes, bytearray, memoryview)):
            self.mv = memoryview(src)
            self.f = None
        else:
            self.mv = None
            self.f = src
        self.pos = 0

    def read(self, n, buf=None):
        """Exactly ``n`` bytes (a memoryview when in place or into ``buf``)."""
        if self.mv is not None:
            if self.pos + n > len(self.mv):
                raise UpdateError(R_BUNDLE, "truncated")
            out = self.mv[self.pos:self.pos + n]
            self.pos += n
            return out
        if buf is None:
            buf = bytearray(n)
        mv = memoryview(buf)[:n]
        got = 0
        while got < n:
            k = self.f.readinto(mv[got:])
            if not k:
                raise UpdateError(R_BUNDLE, "truncated")
            got += k
        self.pos += n
        return mv

    def at_end(self):
        if self.mv is not None:
            return self.pos == len(self.mv)
        return not self.f.read(1)


def _check_path(p):
    if not isinstance(p, str) or not 0 < len(p) <= MAX_PATH:
        raise UpdateError(R_BUNDLE, "file path not 1-%d characters" % MAX_PATH)
    for c in p:
        if c not in _PATH_CHARS:
            raise UpdateError(R_BUNDLE, "file path %r" % p)
    for part in p.split("/"):
        if part in ("", ".", "..") or part.startswith("."):
            raise UpdateError(R_BUNDLE, "file path %r" % p)


def check_manifest(payload):
    """The decoded manifest (a dict), shape checked; ``UpdateError(bad-bundle)`` otherwise."""
    try:
        m = cbor.loads(payload, max_bytes=MAX_MANIFEST)
    except WireError as e:
        raise UpdateError(R_BUNDLE, "manifest: %s" % e)
    if type(m) is not dict or tuple(sorted(m.keys())) != MANIFEST_KEYS:
        raise UpdateError(R_BUNDLE, "manifest keys not 0..4")
    if m[M_FORMAT] != BUNDLE_FORMAT:
        raise UpdateError(R_BUNDLE, "bundle format %r" % (m[M_FORMAT],))
    parse_version(m[M_VERSION])
    if type(m[M_BOARD]) is not str or type(m[M_ARCH]) is not str:
        raise UpdateError(R_BUNDLE, "board or arch not text")
    files = m[M_FILES]
    if type(files) is not list or not 0 < len(files) <= MAX_FILES:
        raise UpdateError(R_BUNDLE, "1 to %d files expected" % MAX_FILES)
    last = ""
    for f in files:
        if type(f) is not list or len(f) != 3:
            raise UpdateError(R_BUNDLE, "a file entry is not [path, size, sha256]")
        path, size, digest = f
        _check_path(path)
        if path <= last:
            raise UpdateError(R_BUNDLE, "file paths not sorted and unique")
        last = path
        if type(size) is not int or size < 0:
            raise UpdateError(R_BUNDLE, "file size of %s" % path)
        if type(digest) is not bytes or len(digest) != wire.HASH_BYTES:
            raise UpdateError(R_BUNDLE, "sha256 of %s" % path)
    return m


def verify_manifest(data, node_keys):
    """The manifest of a signed manifest ``data``, if an update-role key in ``node_keys`` signed it.

    ``node_keys`` is ``{kid: (public key, roles)}`` (``Config.node_keys()``).
    Order: COSE structure, content type, key, role, signature, manifest.
    """
    try:
        msg = cose.decode1(bytes(data))
    except WireError as e:
        raise UpdateError(R_BUNDLE, "manifest envelope: %s" % e)
    h = msg.protected
    if h.get(wire.H_CTY) != wire.CTY_UPDATE:
        raise UpdateError(R_CTY, "content type %r" % (h.get(wire.H_CTY),))
    if sorted(h.keys()) != [wire.H_ALG, wire.H_CTY, wire.H_KID] or h[wire.H_ALG] != wire.ALG_EDDSA:
        raise UpdateError(R_BUNDLE, "protected header not {1: -8, 3: update, 4: kid}")
    if msg.unprotected:
        raise UpdateError(R_BUNDLE, "unprotected header not empty")
    kid = h[wire.H_KID]
    if type(kid) is not bytes or kid not in node_keys:
        raise UpdateError(R_UNKNOWN_KEY, "kid %r" % (kid,))
    key, roles = node_keys[kid]
    if wire.ROLE_UPDATE not in roles:
        raise UpdateError(R_ROLE, "key %r has roles %s, not update" % (kid, ",".join(roles)))
    if msg.payload is None:
        raise UpdateError(R_BUNDLE, "detached payload")
    try:
        cose.verify1(bytes(data), key)
    except WireError as e:
        raise UpdateError(R_SIGNATURE, str(e))
    return check_manifest(msg.payload)


def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def remove_tree(path):
    """Remove a folder and everything in it; nothing if it is not there."""
    if not _is_dir(path):
        fs.remove(path)
        return
    for name in os.listdir(path):
        remove_tree(path + "/" + name)
    os.rmdir(path)


def _makedirs(base, rel):
    d = base
    for part in rel.split("/")[:-1]:
        d = d + "/" + part
        if not _is_dir(d):
            os.mkdir(d)


def inactive_slot(st):
    """The slot an update goes to: the one not running."""
    return "b" if st["active"] == "a" else "a"


def install(bundle, node_keys, now, root=None, board=None, current=None,
            slot_bytes=SLOT_BYTES, feed=None):
    """Verify ``bundle`` (bytes or a stream) and install it into the inactive slot, marked pending.

    ``now`` (us since 1970, or None) is recorded; ``board`` if given must
    match the manifest's; ``current`` is the running version (default:
    ``boot.running_version``); the new one must be newer. ``feed`` is
    called between chunks (the watchdog). The files go to a temporary
    folder that is renamed into place once every file matched its SHA-256;
    the boot state names it pending last, so a power cut at any step
    leaves the running slot and the state as they were. Returns
    ``{"slot", "version", "files", "bytes"}``; refusals are ``UpdateError``.
    """
    feed = feed or (lambda: None)
    src = _Source(bundle)
    if bytes(src.read(len(MAGIC))) != MAGIC:
        raise UpdateError(R_BUNDLE, "not a lightnode update bundle")
    hdr = src.read(4)
    n = (hdr[0] << 24) | (hdr[1] << 16) | (hdr[2] << 8) | hdr[3]
    if not 0 < n <= MAX_MANIFEST:
        raise UpdateError(R_BUNDLE, "manifest of %d bytes" % n)
    signed = bytes(src.read(n))
    m = verify_manifest(signed, node_keys)
    feed()
    if board is not None and m[M_BOARD] != board:
        raise UpdateError(R_BOARD, "built for %s, this is %s" % (m[M_BOARD], board))
    st = boot.load(root)
    if st["trial"]:
        raise UpdateError(R_ON_TRIAL, "slot %s has not been healthy yet" % st["active"])
    if current is None:
        current = boot.running_version(root)
    if parse_version(m[M_VERSION]) <= parse_version(current):
        raise UpdateError(R_VERSION, "%s is not newer than %s" % (m[M_VERSION], current))
    total = 0
    for f in m[M_FILES]:
        total += f[1]
    if total + n > slot_bytes:
        raise UpdateError(R_TOO_BIG, "%d bytes, the slot holds %d" % (total + n, slot_bytes))
    slot = inactive_slot(st)
    if st["pending"] is not None:  # an earlier install not yet booted: it is replaced
        st["pending"] = None
        boot.save(st, root)
    final = boot.slot_dir(slot, root)
    tmp = final + boot.TMP
    remove_tree(tmp)  # what a power cut left
    feed()
    os.mkdir(tmp)
    buf = bytearray(CHUNK) if src.f is not None else None
    try:
        for path, size, digest in m[M_FILES]:
            _makedirs(tmp, path)
            h = hashlib.sha256()
            with open(tmp + "/" + path, "wb") as out:
                left = size
                while left:
                    k = CHUNK if left > CHUNK else left
                    chunk = src.read(k, buf)
                    h.update(chunk)
                    out.write(chunk)
                    left -= k
                    feed()
            if h.digest() != digest:
                raise UpdateError(R_FILE_HASH, path)
        if not src.at_end():
            raise UpdateError(R_BUNDLE, "bytes after the last file")
        with open(tmp + "/" + boot.MANIFEST, "wb") as out:  # last: marks the slot complete
            out.write(signed)
    except BaseException:
        remove_tree(tmp)
        raise
    remove_tree(final)
    feed()
    os.rename(tmp, final)
    st["pending"] = slot
    st["versions"][slot] = m[M_VERSION]
    st["installed"] = now
    boot.save(st, root)
    boot.log("update %s installed in slot %s, pending" % (m[M_VERSION], slot), root)
    return {"slot": slot, "version": m[M_VERSION], "files": len(m[M_FILES]), "bytes": total}
