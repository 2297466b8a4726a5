"""The device's key, its identity, and the configuration provisioning gives it.

On the first boot the device makes its Ed25519 key (``ln.ed25519.
generate_seed``, entropy per board in docs/threat-model.md) and keeps the
seed in ``/lightnode/key.bin``; nothing here prints or returns it. What
provisioning reads is ``/lightnode/identity.json``: public key, device id,
board, firmware. Provisioning writes ``/lightnode/config.json`` back (and
the point map beside it, named by its digest); ``load_config`` checks it.

Paths are under the board's root: ``""`` on a board, the working directory
under the unix port (a unix-port board is a host directory standing for
the board's flash).

    from ln import keystore
    ident = keystore.boot("pico_w", "0.1.0")   # makes the key on first boot only
    key = keystore.signing_key()                # an ln.ed25519.SigningKey
    cfg = keystore.load_config()                # after provisioning
    cfg.segment, cfg.broker_host, cfg.nodes["ack"]
"""

import binascii
import hashlib
import json
import os

from . import ed25519, wire
from .fs import TMP, default_root, write_atomic
from .fs import exists as _exists
from .fs import read_limited as _read
from .fs import remove as _remove
from .fs import rename_over as _rename

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


FORMAT = 1
DIR = "/lightnode"
KEY_FILE = "key.bin"
IDENTITY_FILE = "identity.json"
CONFIG_FILE = "config.json"
MAP_FILE = "map-%s.json"  # % first 16 hex digits of the map's digest
DEVICE_ID_BYTES = 8  # the first 8 bytes of SHA-256 of the device's first public key
MAX_CONFIG_BYTES = 8192
_MAX_NODE_KEYS = const(32)
_MAX_PASSWORD = const(128)
_MAX_HOST = const(253)
BROKER_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
_HEX = "0123456789abcdef"
_SEGMENT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"


class KeyStoreError(Exception):
    """The board's key or identity is unusable; the device cannot sign."""


class ConfigError(ValueError):
    """The provisioned configuration is refused; ``field`` names what is wrong."""

    def __init__(self, field, reason):
        self.field = field
        self.reason = reason
        super().__init__("%s: %s" % (field, reason))




def _dir(root):
    return (default_root() if root is None else root) + DIR












def _hex(b):
    return binascii.hexlify(b).decode()


def _unhex(text, size, field):
    if not isinstance(text, str) or len(text) != 2 * size:
        raise ConfigError(field, "%d lowercase hex digits expected" % (2 * size))
    for c in text:
        if c not in _HEX:
            raise ConfigError(field, "%d lowercase hex digits expected" % (2 * size))
    return binascii.unhexlify(text)


def device_id(public):
    """The device id of a device whose first public key is ``public``."""
    return hashlib.sha256(bytes(public)).digest()[:DEVICE_ID_BYTES]


def _read_seed(d):
    path = d + "/" + KEY_FILE
    if not _exists(path):
        return None
    seed = _read(path, 64)
    if len(seed) != wire.ED25519_KEY_BYTES:
        # Never replaced silently: a new key is a new identity to the registry.
        raise KeyStoreError("%s is %d bytes, not %d: the device key is damaged"
                            % (path, len(seed), wire.ED25519_KEY_BYTES))
    return seed


def read_identity(root=None):
    """The identity the board keeps (a dict), or None before the first boot."""
    path = _dir(root) + "/" + IDENTITY_FILE
    if not _exists(path):
        return None
    try:
        ident = json.loads(_read(path, 1024))
    except ValueError:
        return None
    if not isinstance(ident, dict) or ident.get("format") != FORMAT:
        return None
    return ident


def boot(board, firmware, root=None, stands_in_for=None):
    """Make the device key if the board has none; (re)write identity.json; return the identity.

    Later boots keep the key. The device id is kept from identity.json when
    there is one (it stays when keys rotate); otherwise it comes from the
    public key. identity.json always shows the public key of the key the
    board holds, so provisioning sees a replaced key file.
    """
    d = _dir(root)
    if not _exists(d):
        os.mkdir(d)
    for name in (KEY_FILE, IDENTITY_FILE, CONFIG_FILE):
        _remove(d + "/" + name + TMP)  # a write cut short by a power loss
    seed = _read_seed(d)
    if seed is None:
        seed = ed25519.generate_seed()
        write_atomic(d + "/" + KEY_FILE, (seed,), private=True)
    public = ed25519.public_key(seed)
    seed = None
    old = read_identity(root)
    dev = None
    if old is not None:
        dev = old.get("device")
        if not isinstance(dev, str) or len(dev) != 2 * DEVICE_ID_BYTES:
            dev = None
    if dev is None:
        dev = _hex(device_id(public))
    ident = {
        "format": FORMAT,
        "device": dev,
        "public_key": _hex(public),
        "board": board,
        "firmware": firmware,
    }
    if stands_in_for:
        ident["stands_in_for"] = stands_in_for
    if ident != old:
        write_atomic(d + "/" + IDENTITY_FILE, (json.dumps(ident).encode(),))
    return ident


def signing_key(root=None):
    """The device's ``ln.ed25519.SigningKey`` (the seed itself never leaves this module)."""
    seed = _read_seed(_dir(root))
    if seed is None:
        raise KeyStoreError("no device key: the board has not booted once")
    return ed25519.SigningKey(seed)


# ---------------------------------------------------------------- config


class Config:
    """A checked configuration: where to send, as whom, what to read, whose acks to trust."""

    def __init__(self, device, segment, scheme, host, port, username, password,
                 pointmap, nodes):
        self.device = device  # bytes
        self.segment = segment
        self.broker_scheme = scheme
        self.broker_tls = scheme == "mqtts"
        self.broker_host = host
        self.broker_port = port
        self.username = username
        self.password = password
        self.pointmap = pointmap  # lightnode.drivers.pointmap.PointMap
        self.nodes = nodes  # role -> [32-byte public keys]

    def node_keys(self):
        """``{kid: (public key, roles)}`` of the configured node keys, as signed objects name them."""
        import hashlib

        out = {}
        for role, keys in self.nodes.items():
            for key in keys:
                kid = hashlib.sha256(key).digest()[:wire.KID_BYTES]
                pk, roles = out.get(kid, (key, ()))
                out[kid] = (pk, roles + (role,))
        return out

    def __repr__(self):  # never the password
        return "<Config %s %s %s://%s:%d>" % (
            _hex(self.device), self.segment, self.broker_scheme, self.broker_host, self.broker_port)


def check_segment(segment, field="segment"):
    """A segment name: 1 to wire.MAX_SEGMENT characters of [a-z0-9-]."""
    if not isinstance(segment, str) or not 0 < len(segment) <= wire.MAX_SEGMENT:
        raise ConfigError(field, "1 to %d characters expected" % wire.MAX_SEGMENT)
    for c in segment:
        if c not in _SEGMENT_CHARS:
            raise ConfigError(field, "only a-z, 0-9 and '-' allowed")
    return segment


def parse_broker(url, field="broker"):
    """(scheme, host, port) of ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]``."""
    if not isinstance(url, str):
        raise ConfigError(field, "a URL expected")
    i = url.find("://")
    scheme = url[:i] if i > 0 else ""
    if scheme not in BROKER_SCHEMES:
        raise ConfigError(field, "mqtt://HOST:PORT or mqtts://HOST:PORT expected")
    rest = url[i + 3:]
    if rest.endswith("/"):
        rest = rest[:-1]
    port = BROKER_SCHEMES[scheme]
    if rest.startswith("["):  # an IPv6 literal
        j = rest.find("]")
        if j < 2:
            raise ConfigError(field, "bad IPv6 address")
        host = rest[1:j]
        tail = rest[j + 1:]
        for c in host:
            if c not in "0123456789abcdefABCDEF:.":
                raise ConfigError(field, "bad IPv6 address")
    else:
        j = rest.find(":")
        host = rest if j < 0 else rest[:j]
        tail = "" if j < 0 else rest[j:]
        if not 0 < len(host) <= _MAX_HOST:
            raise ConfigError(field, "no host")
        for c in host:
            if c not in _HOST_CHARS:
                raise ConfigError(field, "bad character %r in the host" % c)
    if tail:
        digits = tail[1:]
        if not tail.startswith(":") or not 0 < len(digits) <= 5 or not digits.isdigit():
            raise ConfigError(field, "bad port")
        port = int(digits)
        if not 0 < port < 65536:
            raise ConfigError(field, "port out of range")
    return scheme, host, port


def _check_nodes(nodes):
    if not isinstance(nodes, list) or len(nodes) > _MAX_NODE_KEYS:
        raise ConfigError("nodes", "a list of at most %d node keys expected" % _MAX_NODE_KEYS)
    out = {}
    for i, n in enumerate(nodes):
        field = "nodes[%d]" % i
        if not isinstance(n, dict) or sorted(n.keys()) != ["key", "role"]:
            raise ConfigError(field, "{\"role\": ..., \"key\": ...} expected")
        if n["role"] not in wire.NODE_ROLES:
            raise ConfigError(field + ".role", "one of %s expected" % ", ".join(wire.NODE_ROLES))
        key = _unhex(n["key"], wire.ED25519_KEY_BYTES, field + ".key")
        keys = out.setdefault(n["role"], [])
        if key in keys:
            raise ConfigError(field, "the same key twice for one role")
        keys.append(key)
    return out


_CONFIG_KEYS = ["broker", "device", "format", "mqtt", "nodes", "pointmap", "segment"]


def map_file(digest):
    """The file name a point map of this digest has on the board."""
    return MAP_FILE % digest[:16]


def check_config(cfg, device, map_src):
    """A ``Config`` from the config's JSON data, for the device with id ``device`` (hex).

    ``map_src`` is the point map (a stream, text or bytes) whose digest the
    config names; it is checked with ``lightnode.drivers.pointmap``.
    """
    if not isinstance(cfg, dict):
        raise ConfigError("config", "a JSON object expected")
    keys = sorted(cfg.keys())
    if keys != _CONFIG_KEYS:
        raise ConfigError("config", "keys %s expected, found %s" % (", ".join(_CONFIG_KEYS), ", ".join(keys)))
    if cfg["format"] != FORMAT:
        raise ConfigError("format", "format %d expected" % FORMAT)
    if cfg["device"] != device:
        raise ConfigError("device", "written for device %r, this is %s" % (cfg["device"], device))
    dev = _unhex(device, DEVICE_ID_BYTES, "device")
    segment = check_segment(cfg["segment"])
    scheme, host, port = parse_broker(cfg["broker"])
    mqtt = cfg["mqtt"]
    if not isinstance(mqtt, dict) or sorted(mqtt.keys()) != ["password", "username"]:
        raise ConfigError("mqtt", "{\"username\": ..., \"password\": ...} expected")
    if mqtt["username"] != device:
        raise ConfigError("mqtt.username", "the device id expected")
    pw = mqtt["password"]
    if not isinstance(pw, str) or not 16 <= len(pw) <= _MAX_PASSWORD:
        raise ConfigError("mqtt.password", "16 to %d characters expected" % _MAX_PASSWORD)
    for c in pw:
        if not " " < c <= "~":
            raise ConfigError("mqtt.password", "printable ASCII expected")
    pm = cfg["pointmap"]
    if not isinstance(pm, dict) or sorted(pm.keys()) != ["digest"]:
        raise ConfigError("pointmap", "{\"digest\": ...} expected")
    _unhex(pm["digest"], wire.HASH_BYTES, "pointmap.digest")
    nodes = _check_nodes(cfg["nodes"])
    import gc

    gc.collect()
    from lightnode.drivers import pointmap

    try:
        m = pointmap.load(map_src)
    except pointmap.PointMapError as e:
        raise ConfigError("pointmap", str(e))
    if m.digest() != pm["digest"]:
        raise ConfigError("pointmap.digest", "the map on the board has digest %s" % m.digest())
    return Config(dev, segment, scheme, host, port, mqtt["username"], pw, m, nodes)


def _identity_device(root):
    ident = read_identity(root)
    if ident is None or not isinstance(ident.get("device"), str):
        raise KeyStoreError("no identity: the board has not booted once")
    return ident["device"]


def _load(root, name):
    d = _dir(root)
    try:
        cfg = json.loads(_read(d + "/" + name, MAX_CONFIG_BYTES))
    except OSError:
        raise ConfigError("config", "no %s/%s: the board is not provisioned" % (DIR, name))
    except ValueError as e:
        raise ConfigError("config", "not JSON (%s)" % e)
    digest = cfg.get("pointmap", {}).get("digest", "") if isinstance(cfg, dict) else ""
    if not isinstance(digest, str) or len(digest) != 2 * wire.HASH_BYTES:
        return check_config(cfg, _identity_device(root), b"")  # raises on the digest
    try:
        f = open(d + "/" + map_file(digest), "rb")
    except OSError:
        raise ConfigError("pointmap", "no %s on the board" % map_file(digest))
    with f:
        return check_config(cfg, _identity_device(root), f)


def load_config(root=None):
    """The board's checked ``Config``; ``ConfigError`` if it is missing or refused."""
    return _load(root, CONFIG_FILE)


def install_config(root=None):
    """Check the config provisioning left in ``config.json.tmp`` and put it in place.

    Provisioning writes the point map under its digest's name first, then
    the config as ``config.json.tmp``; the rename here is the one step that
    switches the board over. Maps no config names any more are removed.
    Returns a summary without the password.
    """
    from . import points  # before the map's parse fragments the heap

    d = _dir(root)
    try:
        cfg = _load(root, CONFIG_FILE + TMP)
    except ConfigError:
        _remove(d + "/" + CONFIG_FILE + TMP)
        raise
    _rename(d + "/" + CONFIG_FILE + TMP, d + "/" + CONFIG_FILE)
    keep = map_file(cfg.pointmap.digest())
    for name in os.listdir(d):
        if name.startswith("map-") and name != keep:
            _remove(d + "/" + name)
    # what the application keeps of this config, so its boots skip the map's parser
    points.save_plan(d, points.plan(cfg))
    return {"device": _hex(cfg.device), "segment": cfg.segment,
            "pointmap": cfg.pointmap.digest(), "nodes": sum(len(v) for v in cfg.nodes.values())}

