"""Provisioning: read a board's public identity, register it, give the board its config.

A board makes its own key on first boot (``ln.keystore``) and keeps it;
provisioning reads only ``/lightnode/identity.json`` (public key, device
id, board, firmware), registers the device, makes its MQTT credential and
writes ``/lightnode/config.json`` (segment, broker, credential, point map
digest, node public keys) and the point map back. The board checks the new
config with its own checker before it switches to it. A board is a
unix-port board directory (``lightnode board unix init DIR``) or a board
on a serial port reached with mpremote (``mpremote:/dev/ttyACM0``).

The MQTT password goes to the board and, as a Mosquitto ``$7$`` hash only,
into the credentials file that ``lightnode broker config --credentials``
reads (``user:hash`` lines, mode 0600).

    >>> from lightnode import provision, registry
    >>> reg = registry.open_registry("registry.db")
    >>> signer = reg.as_operator("alice", admin_seed)
    >>> done = provision.provision("board-dir", reg, signer, segment="feeder-7",
    ...                            pointmap_path="meter.json", broker="mqtt://127.0.0.1:1883",
    ...                            credentials_path="device-passwords")
    >>> done.device_id, done.registered
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightnode import __version__, boards, broker, keys
from lightnode import micropython as mp
from lightnode.drivers import pointmap
from lightnode.errors import LightnodeError
from lightnode.firmware.ln import keystore
from lightnode.firmware.ln import wire as spec
from lightnode.registry import Registry, RegistrySigner
from nacl.signing import VerifyKey

SCRIPTS = Path(__file__).resolve().parent / "device_scripts"
MPREMOTE_PREFIX = "mpremote:"
IDENTITY_PATH = keystore.DIR + "/" + keystore.IDENTITY_FILE
CONFIG_TMP_PATH = keystore.DIR + "/" + keystore.CONFIG_FILE + keystore.TMP
# What the board runs over mpremote to switch to the new config; the same
# code as sdk/device_scripts/install_config.py.
INSTALL_CODE = (
    "import json\nfrom ln import keystore\n"
    "print(%r + json.dumps(keystore.install_config()))\n" % mp.RESULT_MARK
)


class ProvisionError(LightnodeError):
    """A board cannot be provisioned: unreadable identity, key or registry mismatch, refused config."""


# ---------------------------------------------------------------- identity


@dataclass(frozen=True)
class Identity:
    """What a board says about itself: all public."""

    device_id: bytes
    public_key: bytes
    board: str
    firmware: str

    @property
    def device_hex(self) -> str:
        return self.device_id.hex()


def parse_identity(text: str | bytes, where: str) -> Identity:
    """An ``Identity`` from identity.json's text, checked; ProvisionError says what is wrong."""
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ProvisionError("%s: identity.json is not JSON (%s)" % (where, e)) from None
    if not isinstance(d, dict) or d.get("format") != keystore.FORMAT:
        raise ProvisionError("%s: identity.json of format %d expected" % (where, keystore.FORMAT))
    try:
        dev = keys.parse_hex(str(d.get("device", "")), keystore.DEVICE_ID_BYTES, "device id")
        pub = keys.parse_public_key(str(d.get("public_key", "")))
        VerifyKey(pub)
    except (ValueError, TypeError) as e:
        raise ProvisionError("%s: identity.json: %s" % (where, e)) from None
    for name in ("board", "firmware"):
        if not isinstance(d.get(name), str) or not 0 < len(d[name]) <= 64:
            raise ProvisionError("%s: identity.json: %s missing" % (where, name))
    return Identity(dev, pub, d["board"], d["firmware"])


# ---------------------------------------------------------------- boards

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class UnixBoard:
    """A unix-port board: a directory standing for the board's flash, run in the unix port."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.dir = self.root / keystore.DIR.lstrip("/")

    def __str__(self) -> str:
        return str(self.root)

    def heap_board(self) -> str:
        try:
            d = json.loads((self.dir / keystore.IDENTITY_FILE).read_text())
            name = d.get("stands_in_for") or "unix"
            boards.load(name)
            return str(name)
        except (OSError, ValueError, AttributeError):
            return "unix"

    def read_identity(self) -> Identity:
        try:
            text = (self.dir / keystore.IDENTITY_FILE).read_bytes()
        except FileNotFoundError:
            raise ProvisionError(
                "%s: no %s: not a unix-port board, or it has never booted "
                "(lightnode board unix init %s)" % (self, IDENTITY_PATH, self)) from None
        return parse_identity(text, str(self))

    def write_config(self, map_name: str, map_bytes: bytes, config_bytes: bytes) -> dict[str, Any]:
        """Put the map and config.json.tmp on the board; the board checks and installs them."""
        keystore.write_atomic(str(self.dir / map_name), (map_bytes,))
        _write_private(self.dir / (keystore.CONFIG_FILE + keystore.TMP), config_bytes)
        run = mp.run_unix(SCRIPTS / "install_config.py", board=self.heap_board(), cwd=self.root)
        found = [r for r in run.results if "installed" in r or "error" in r]
        if not run.ok or not found:
            raise ProvisionError("%s: the board did not install its config:\n%s"
                                 % (self, (run.stdout + run.stderr)[-2000:]))
        if "error" in found[0]:
            raise ProvisionError("%s: the board refused its config: %s" % (self, found[0]["error"]))
        return dict(found[0]["installed"])


def find_mpremote() -> str:
    """mpremote beside this Python, then on PATH."""
    here = Path(sys.executable).parent / "mpremote"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("mpremote") or "mpremote"


class MpremoteBoard:
    """A board on a serial port, reached with mpremote (``fs cat``, ``fs cp``, ``exec``)."""

    def __init__(self, port: str, run: Runner = subprocess.run, mpremote: str | None = None,
                 timeout: float = 60) -> None:
        if not port:
            raise ValueError("mpremote:PORT: a serial port is needed (mpremote:/dev/ttyACM0)")
        self.port = port
        self._run = run
        self.mpremote = mpremote or find_mpremote()
        self.timeout = timeout

    def __str__(self) -> str:
        return MPREMOTE_PREFIX + self.port

    def read_command(self) -> list[str]:
        return [self.mpremote, "connect", self.port, "fs", "cat", ":" + IDENTITY_PATH]

    def write_command(self, map_local: str, map_name: str, config_local: str) -> list[str]:
        return [self.mpremote, "connect", self.port,
                "fs", "cp", map_local, ":%s/%s" % (keystore.DIR, map_name), "+",
                "fs", "cp", config_local, ":" + CONFIG_TMP_PATH, "+",
                "exec", INSTALL_CODE]

    def _call(self, argv: list[str], what: str) -> str:
        try:
            proc = self._run(argv, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise ProvisionError("mpremote is not installed (pip install mpremote)") from None
        except subprocess.TimeoutExpired:
            raise ProvisionError("%s: no answer in %ss while %s" % (self, self.timeout, what)) from None
        if proc.returncode != 0:
            tail = ((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()[-3:]
            raise ProvisionError("%s: %s failed: %s" % (self, what, " / ".join(tail) or "no output"))
        return str(proc.stdout)

    def read_identity(self) -> Identity:
        out = self._call(self.read_command(), "reading " + IDENTITY_PATH)
        return parse_identity(out, str(self))

    def write_config(self, map_name: str, map_bytes: bytes, config_bytes: bytes) -> dict[str, Any]:
        # The files pass through a private temporary folder on this host,
        # removed at once: mpremote copies files, not bytes.
        with tempfile.TemporaryDirectory(prefix="lightnode-provision-") as tmp:
            m = Path(tmp) / map_name
            c = Path(tmp) / keystore.CONFIG_FILE
            m.write_bytes(map_bytes)
            _write_private(c, config_bytes)
            out = self._call(self.write_command(str(m), map_name, str(c)), "writing the config")
        for line in out.splitlines():
            if line.startswith(mp.RESULT_MARK):
                return dict(json.loads(line[len(mp.RESULT_MARK):]))
        raise ProvisionError("%s: the board did not confirm its new config" % self)


Board = UnixBoard | MpremoteBoard


def open_board(spec_text: str, run: Runner = subprocess.run) -> Board:
    """``mpremote:PORT`` or a unix-port board directory."""
    if spec_text.startswith(MPREMOTE_PREFIX):
        return MpremoteBoard(spec_text[len(MPREMOTE_PREFIX):], run=run)
    return UnixBoard(spec_text)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- unix-port boards


def init_unix_board(root: str | os.PathLike[str], board: str = "pico_w") -> Identity:
    """Make a unix-port board in ``root`` (new or empty) and boot it once: it makes its key."""
    boards.load(board)
    r = Path(root)
    if r.exists() and (not r.is_dir() or any(r.iterdir())):
        raise ProvisionError("%s: exists and is not an empty directory" % r)
    r.mkdir(parents=True, exist_ok=True)
    return boot_unix_board(r, board)


def boot_unix_board(root: str | os.PathLike[str], board: str | None = None) -> Identity:
    """Boot a unix-port board once, as a power cycle does: a first boot makes the key."""
    b = UnixBoard(root)
    if not b.root.is_dir():
        raise ProvisionError("%s: no such board directory" % b)
    board = board or b.heap_board()
    run = mp.run_unix(SCRIPTS / "first_boot.py", board=board, cwd=b.root,
                      args=("unix", __version__, board))
    found = [r["identity"] for r in run.results if "identity" in r]
    if not run.ok or not found:
        raise ProvisionError("%s: the board did not boot:\n%s" % (b, (run.stdout + run.stderr)[-2000:]))
    # The unix port has no chmod; a board's flash has no other reader.
    os.chmod(b.dir, 0o700)
    os.chmod(b.dir / keystore.KEY_FILE, 0o600)
    return parse_identity(json.dumps(found[0]), str(b))


# ---------------------------------------------------------------- credentials


def write_credential(path: str | os.PathLike[str], user: str, password: str) -> None:
    """Set ``user``'s ``$7$`` hash in a ``user:hash`` file (mode 0600), keeping the other lines."""
    p = Path(path)
    lines = []
    if p.exists():
        for line in p.read_text().splitlines():
            if line.partition(":")[0] != user:
                lines.append(line)
    lines.append("%s:%s" % (user, broker.hash_password(password)))
    tmp = p.with_name(p.name + ".tmp")
    _write_private(tmp, ("\n".join(lines) + "\n").encode())
    os.replace(tmp, p)


def default_credentials(registry_path: str | os.PathLike[str]) -> Path:
    """Where provisioning keeps the device credentials: beside the registry."""
    s = str(registry_path)
    if s.startswith("sqlite://"):
        s = s[len("sqlite://"):]
    return Path(s).resolve().parent / "device-passwords"


# ---------------------------------------------------------------- provisioning


@dataclass(frozen=True)
class Provisioned:
    """What provisioning did (no secret in it)."""

    device_id: str
    public_key: str
    segment: str
    pointmap_digest: str
    board: str
    firmware: str
    registered: bool  # False: the device was registered before, exactly so
    node_keys: int
    credentials: str
    target: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_node_keys(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Node keys from a JSON file: ``[{"role": "ack", "key": "64 hex digits"}, ...]``."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ProvisionError("%s: %s" % (path, e.strerror or e)) from None
    except ValueError as e:
        raise ProvisionError("%s: not JSON (%s)" % (path, e)) from None
    if not isinstance(data, list):
        raise ProvisionError('%s: a list of {"role": ..., "key": ...} expected' % path)
    return [dict(n) if isinstance(n, dict) else n for n in data]


def registry_node_keys(reg: Registry) -> list[dict[str, str]]:
    """The registry's live node keys for the roles a device checks."""
    out: list[dict[str, str]] = []
    for k in reg.node_keys():
        n = {"role": k.role, "key": k.public_key.hex()}
        if k.role in spec.NODE_ROLES and n not in out:
            out.append(n)
    return out


def _check_registered(reg: Registry, ident: Identity, segment: str, digest: str) -> bool:
    """True if the device must still be added; False if it is registered exactly so."""
    dev = reg.device(ident.device_id)
    if dev is None:
        if hashlib.sha256(ident.public_key).digest()[:keystore.DEVICE_ID_BYTES] != ident.device_id:
            raise ProvisionError(
                "device %s is not registered, and its id is not derived from its public key %s: "
                "the board's identity was altered" % (ident.device_hex, ident.public_key.hex()))
        return True
    if dev.revoked is not None:
        raise ProvisionError("device %s is revoked (%s): it cannot be provisioned again"
                             % (ident.device_hex, dev.revoked[0]))
    if dev.quarantined is not None:
        raise ProvisionError("device %s is quarantined: its key was cloned" % ident.device_hex)
    if dev.public_key != ident.public_key:
        raise ProvisionError(
            "device %s: the board's public key %s differs from the registry's %s: the key on "
            "the board was replaced. Revoke the device and provision the board as new "
            "(wipe its /lightnode), or restore its key" % (
                ident.device_hex, ident.public_key.hex(), dev.public_key.hex()))
    if dev.segment != segment or dev.pointmap_digest != digest:
        raise ProvisionError(
            "device %s is registered in segment %s with point map %s; asked for %s with %s. "
            "Moving a device or changing its map is a registry change, not provisioning" % (
                ident.device_hex, dev.segment, dev.pointmap_digest[:16], segment, digest[:16]))
    return False


def provision(
    board: Board | str,
    reg: Registry,
    signer: RegistrySigner | tuple[str, bytes],
    segment: str,
    pointmap_path: str | os.PathLike[str],
    broker_url: str,
    credentials_path: str | os.PathLike[str],
    node_keys: Sequence[dict[str, str]] | None = None,
) -> Provisioned:
    """Register the board's device and write its config; see the module docstring.

    A second provisioning of a board registered with the same key, segment
    and point map leaves the registry as it is and writes the config again
    with a new MQTT password (the old one stops working once the broker's
    password file is made again).
    """
    b = open_board(board) if isinstance(board, str) else board
    try:
        keystore.check_segment(segment)
        keystore.parse_broker(broker_url)
    except keystore.ConfigError as e:
        raise ProvisionError(str(e)) from None
    try:
        map_bytes = Path(pointmap_path).read_bytes()
    except OSError as e:
        raise ProvisionError("%s: %s" % (pointmap_path, e.strerror or e)) from None
    try:
        digest = pointmap.load(map_bytes).digest()
    except pointmap.PointMapError as e:
        raise ProvisionError("%s: refused: %s" % (pointmap_path, e)) from None
    ident = b.read_identity()
    nodes = list(node_keys) if node_keys is not None else registry_node_keys(reg)
    password = broker.new_password()
    config = {
        "format": keystore.FORMAT,
        "device": ident.device_hex,
        "segment": segment,
        "broker": broker_url,
        "mqtt": {"username": ident.device_hex, "password": password},
        "pointmap": {"digest": digest},
        "nodes": nodes,
    }
    try:  # the board's own checker, before anything is changed
        keystore.check_config(config, ident.device_hex, map_bytes)
    except keystore.ConfigError as e:
        raise ProvisionError("config refused: %s" % e) from None
    register = _check_registered(reg, ident, segment, digest)
    if register:
        reg.add_device(ident.device_id, ident.public_key, segment, ident.board, ident.firmware,
                       digest, signer)
    installed = b.write_config(keystore.map_file(digest),
                               map_bytes, json.dumps(config, indent=1).encode())
    if installed.get("device") != ident.device_hex or installed.get("pointmap") != digest:
        raise ProvisionError("%s: the board installed a different config: %r" % (b, installed))
    write_credential(credentials_path, ident.device_hex, password)
    return Provisioned(ident.device_hex, ident.public_key.hex(), segment, digest, ident.board,
                       ident.firmware, register, len(nodes), str(credentials_path), str(b))

