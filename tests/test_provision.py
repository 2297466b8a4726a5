"""Provisioning a unix-port board end to end from the CLI, in a clean directory.

``lightnode board unix init``, a registry with its first admin, ``lightnode
device provision``; then the registry holds the device, the board loads its
config inside the unix port, and the device's private key (raw, hex,
base64, expanded) is in no file outside the board's key file and in no
output or log. The mpremote path is checked by the command lines it runs
(no board here).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from lightnode import broker, keys, registry, registrycli
from lightnode import micropython as mp
from lightnode import provision as prov
from lightnode.errors import HarnessError
from lightnode.firmware.ln import keystore
from lightnode.provisioncli import board, provision

MAPS = Path(__file__).resolve().parents[1] / "drivers" / "maps"
pytestmark = pytest.mark.micropython


def _cli() -> click.Group:
    """The lightnode command, with board, registry and device provision as sdk/cli.py registers them."""
    from lightnode import registrycli
    from lightnode.cli import main

    dev = main.commands.get("device")
    if "board" in main.commands and isinstance(dev, click.Group) and "provision" in dev.commands:
        return main
    # Until sdk/cli.py registers them: the same groups, copied so nothing global changes.
    group = click.Group("lightnode", commands=dict(main.commands))
    group.add_command(board)
    group.add_command(registrycli.registry_group)
    devices = dev if isinstance(dev, click.Group) else registrycli.device
    device = click.Group("device", commands=dict(devices.commands))
    device.add_command(provision)
    group.add_command(device)
    return group


class Site:
    """A clean working directory with a registry, its admin, a point map, and everything printed."""

    def __init__(self, root: Path) -> None:
        try:
            mp.find_micropython()
        except HarnessError as e:
            pytest.skip(str(e))
        self.root = root
        self.cli = _cli()
        self.runner = CliRunner()
        self.printed: list[str] = []
        (root / "meter.json").write_bytes((MAPS / "meter_modbus.json").read_bytes())
        self.run("registry", "init", "--admin", "alice", "--key-file", "alice.seed")
        self.admin_seed = keys.read_seed(root / "alice.seed")
        reg = self.registry()
        self.node_key = keys.public_key(keys.generate_seed())
        reg.add_node_key("node-feeder-7", "ack", self.node_key, reg.as_operator("alice", self.admin_seed))
        reg.close()

    def run(self, *args: str, ok: bool = True) -> str:
        res = self.runner.invoke(self.cli, list(args))
        self.printed.append(res.output)
        if ok:
            assert res.exit_code == 0, res.output
        else:
            assert res.exit_code != 0, res.output
        return res.output

    def provision(self, board_dir: str = "board", segment: str = "feeder-7", ok: bool = True,
                  *extra: str) -> str:
        return self.run("device", "provision", board_dir, "--segment", segment,
                        "--pointmap", "meter.json", "--broker", "mqtt://127.0.0.1:1883",
                        *extra, ok=ok)

    def registry(self) -> registry.Registry:
        return registry.open_registry(self.root / registrycli.DEFAULT_REGISTRY)

    def key_file(self, board_dir: str = "board") -> Path:
        return self.root / board_dir / "lightnode" / keystore.KEY_FILE

    def config(self, board_dir: str = "board") -> dict:
        return json.loads((self.root / board_dir / "lightnode" / keystore.CONFIG_FILE).read_text())


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Site(tmp_path)


def _secret_forms(seed: bytes) -> list[bytes]:
    """Every spelling of a device's private key worth looking for."""
    from nacl.signing import SigningKey

    expanded = hashlib.sha512(seed).digest()  # RFC 8032: scalar half, then prefix half
    nacl_secret = bytes(SigningKey(seed)._signing_key)  # seed || public, libsodium's form
    forms = []
    for raw in (seed, expanded, expanded[:32], expanded[32:], nacl_secret):
        forms += [raw, raw.hex().encode(), raw.hex().upper().encode(),
                  base64.b64encode(raw), base64.urlsafe_b64encode(raw),
                  base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"=")]
    return forms


def _files(root: Path):
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            yield Path(dirpath) / n


def _leaks(root: Path, forms: list[bytes], skip: tuple) -> list[Path]:
    found = []
    for path in _files(root):
        data = path.read_bytes()
        if path not in skip and any(f in data or f.lower() in data.lower() for f in forms):
            found.append(path)
    return found


def test_end_to_end_from_a_clean_directory(site, caplog):
    caplog.set_level(logging.DEBUG)
    out = site.run("board", "unix", "init", "board", "--board", "pico_w")
    ident = json.loads((site.root / "board/lightnode/identity.json").read_text())
    assert ident["device"] in out and ident["public_key"] in out
    seed = site.key_file().read_bytes()
    assert len(seed) == 32 and keys.public_key(seed).hex() == ident["public_key"]
    assert site.key_file().stat().st_mode & 0o077 == 0

    out = site.provision()
    assert "registered" in out and ident["device"] in out

    # The registry holds the device, its key, segment and map digest.
    from lightnode.drivers import pointmap

    digest = pointmap.load((site.root / "meter.json").read_bytes()).digest()
    reg = site.registry()
    dev = reg.device(bytes.fromhex(ident["device"]))
    assert dev is not None and dev.public_key == keys.public_key(seed)
    assert (dev.segment, dev.pointmap_digest, dev.board, dev.firmware) == (
        "feeder-7", digest, "unix", ident["firmware"])
    reg.close()

    # The board's config is there, readable by its owner only, and loads on the device.
    cfg = site.config()
    assert cfg["device"] == ident["device"] and cfg["mqtt"]["username"] == ident["device"]
    assert cfg["nodes"] == [{"role": "ack", "key": site.node_key.hex()}]
    assert (site.root / "board/lightnode/config.json").stat().st_mode & 0o077 == 0
    run = mp.run_unix(code=(
        "from ln import keystore\n"
        "c = keystore.load_config()\n"
        "mp_result({'device': c.device.hex(), 'segment': c.segment, 'host': c.broker_host,\n"
        "           'port': c.broker_port, 'user': c.username, 'pw': len(c.password),\n"
        "           'map': c.pointmap.digest(), 'ack': [k.hex() for k in c.nodes['ack']]})\n"),
        board="pico_w", cwd=site.root / "board").check()
    assert run.results == [{"device": ident["device"], "segment": "feeder-7", "host": "127.0.0.1",
                            "port": 1883, "user": ident["device"], "pw": len(cfg["mqtt"]["password"]),
                            "map": digest, "ack": [site.node_key.hex()]}]

    # The broker gets a hash of the password, and nothing but the board has it: its config,
    # and the boot plan the board derives from that config on its own flash (ln.points).
    creds = broker.read_credentials(site.root / "device-passwords")
    assert broker.check_password(cfg["mqtt"]["password"], creds[ident["device"]])
    assert (site.root / "device-passwords").stat().st_mode & 0o077 == 0
    password = cfg["mqtt"]["password"].encode()
    on_board = {site.root / "board/lightnode/config.json", site.root / "board/lightnode/plan.json"}
    for path in _files(site.root):
        if path not in on_board:
            assert password not in path.read_bytes(), path

    # The private key: in the board's key file and nowhere else.
    forms = _secret_forms(seed)
    assert _leaks(site.root, forms, skip=()) == [site.key_file()]  # the scan finds it there
    assert _leaks(site.root, forms, skip=(site.key_file(),)) == []
    assert len(list(_files(site.root))) >= 7  # key, identity, config, map, registry, credentials, ...
    (site.root / "planted.txt").write_text("seed: " + base64.b64encode(seed).decode())
    assert _leaks(site.root, forms, skip=(site.key_file(),)) == [site.root / "planted.txt"]
    (site.root / "planted.txt").unlink()
    said = "\n".join(site.printed) + "\n" + caplog.text + "\n" + run.stdout + run.stderr
    for f in forms:
        assert f.decode("latin-1") not in said


def test_second_provision_is_idempotent(site):
    site.run("board", "unix", "init", "board")
    site.provision()
    first = site.config()
    reg = site.registry()
    count = len(reg)
    reg.close()
    out = site.provision()
    assert "already registered" in out
    reg = site.registry()
    assert len(reg) == count and len(reg.devices()) == 1
    reg.close()
    again = site.config()
    # Same registration and config, a new password; the broker file has only the new one.
    assert {k: v for k, v in again.items() if k != "mqtt"} == {k: v for k, v in first.items() if k != "mqtt"}
    assert again["mqtt"]["password"] != first["mqtt"]["password"]
    lines = (site.root / "device-passwords").read_text().splitlines()
    assert len(lines) == 1
    assert broker.check_password(again["mqtt"]["password"], lines[0].partition(":")[2])


def test_another_segment_is_refused(site):
    site.run("board", "unix", "init", "board")
    site.provision()
    before = site.config()
    out = site.provision("board", "feeder-8", False)
    assert "registered in segment feeder-7" in out and "registry change" in out
    assert site.config() == before


def test_replaced_key_file_is_detected(site):
    site.run("board", "unix", "init", "board")
    site.provision()
    before = site.config()
    old_public = json.loads((site.root / "board/lightnode/identity.json").read_text())["public_key"]
    site.key_file().write_bytes(os.urandom(32))
    site.run("board", "unix", "boot", "board")
    out = site.provision(ok=False)
    assert "differs from the registry" in out and "replaced" in out
    assert old_public in out
    assert site.config() == before
    reg = site.registry()
    assert reg.devices()[0].public_key.hex() == old_public
    reg.close()


def test_altered_identity_of_a_new_board_is_refused(site):
    site.run("board", "unix", "init", "board")
    path = site.root / "board/lightnode/identity.json"
    ident = json.loads(path.read_text())
    ident["device"] = "00" * 8
    path.write_text(json.dumps(ident))
    out = site.provision(ok=False)
    assert "not derived from its public key" in out
    reg = site.registry()
    assert reg.devices() == []
    reg.close()


def test_refusals_change_nothing(site):
    site.run("board", "unix", "init", "board")
    (site.root / "bad.json").write_text('{"format": 1}')
    out = site.run("device", "provision", "board", "--segment", "feeder-7", "--pointmap", "bad.json",
                   "--broker", "mqtt://127.0.0.1:1883", ok=False)
    assert "bad.json: refused" in out
    out = site.run("device", "provision", "board", "--segment", "Feeder 7", "--pointmap", "meter.json",
                   "--broker", "mqtt://127.0.0.1:1883", ok=False)
    assert "segment" in out
    out = site.run("device", "provision", "board", "--segment", "feeder-7", "--pointmap", "meter.json",
                   "--broker", "http://x", ok=False)
    assert "broker" in out
    out = site.run("device", "provision", "nowhere", "--segment", "feeder-7", "--pointmap", "meter.json",
                   "--broker", "mqtt://h:1", ok=False)
    assert "never booted" in out
    out = site.run("device", "provision", "board", "--segment", "feeder-7", "--pointmap", "meter.json",
                   "--broker", "mqtt://h:1", "--as", "bob", "--key-file", "alice.seed", ok=False)
    assert "unknown-operator" in out
    reg = site.registry()
    assert reg.devices() == []
    reg.close()
    assert not (site.root / "board/lightnode/config.json").exists()
    assert not (site.root / "device-passwords").exists()


def test_init_wants_an_empty_directory(site):
    site.run("board", "unix", "init", "board")
    out = site.run("board", "unix", "init", "board", ok=False)
    assert "not an empty directory" in out


# ---------------------------------------------------------------- mpremote (no board here)

PORT = "/dev/ttyACM0"


class FakeMpremote:
    """Answers mpremote command lines as a provisioned-to-be Pico W would; records them."""

    def __init__(self, identity: dict, fail: str | None = None) -> None:
        self.identity = identity
        self.fail = fail
        self.calls: list[list[str]] = []
        self.files: dict[str, tuple[int, bytes]] = {}

    def __call__(self, argv, capture_output, text, timeout):
        assert capture_output and text and timeout > 0
        self.calls.append(list(argv))
        if self.fail:
            return subprocess.CompletedProcess(argv, 1, "", self.fail)
        if argv[3:5] == ["fs", "cat"]:
            return subprocess.CompletedProcess(argv, 0, json.dumps(self.identity), "")
        for i, a in enumerate(argv):
            if a == "cp":  # the local files exist while mpremote runs; note them
                st = os.stat(argv[i + 1])
                self.files[argv[i + 2]] = (st.st_mode & 0o777, Path(argv[i + 1]).read_bytes())
        cfg = json.loads(self.files[":/lightnode/config.json.tmp"][1])
        summary = {"device": cfg["device"], "segment": cfg["segment"],
                   "pointmap": cfg["pointmap"]["digest"], "nodes": len(cfg["nodes"])}
        return subprocess.CompletedProcess(argv, 0, "@@LN " + json.dumps(summary) + "\n", "")


def _pico_identity() -> dict:
    pub = keys.public_key(keys.generate_seed())
    return {"format": 1, "device": hashlib.sha256(pub).digest()[:8].hex(), "public_key": pub.hex(),
            "board": "pico_w", "firmware": "0.1.0"}


def _registry(tmp_path):
    seed = keys.generate_seed()
    reg = registry.open_registry(tmp_path / "registry.db")
    reg.init_admin("alice", keys.public_key(seed), seed)
    return reg, reg.as_operator("alice", seed)


def test_mpremote_command_lines(tmp_path):
    ident = _pico_identity()
    fake = FakeMpremote(ident)
    target = prov.MpremoteBoard(PORT, run=fake, mpremote="mpremote")
    reg, signer = _registry(tmp_path)
    done = prov.provision(target, reg, signer, "feeder-7", MAPS / "meter_modbus.json",
                          "mqtts://broker.grid.example:8883", tmp_path / "device-passwords")
    assert done.registered and done.device_id == ident["device"] and done.target == "mpremote:" + PORT
    digest = done.pointmap_digest
    map_name = "map-%s.json" % digest[:16]
    assert fake.calls[0] == ["mpremote", "connect", PORT, "fs", "cat", ":/lightnode/identity.json"]
    write = fake.calls[1]
    assert len(fake.calls) == 2
    assert write[:3] == ["mpremote", "connect", PORT]
    assert write[3:6] == ["fs", "cp", write[5]] and write[6] == ":/lightnode/" + map_name
    assert write[7:10] == ["+", "fs", "cp"] and write[11] == ":/lightnode/config.json.tmp"
    assert write[12:14] == ["+", "exec"] and write[14] == prov.INSTALL_CODE and len(write) == 15
    # The files it copied: the map as given, the config private and valid for the board;
    # both gone from this host afterwards.
    assert fake.files[":/lightnode/" + map_name][1] == (MAPS / "meter_modbus.json").read_bytes()
    mode, cfg_bytes = fake.files[":/lightnode/config.json.tmp"]
    assert mode == 0o600
    cfg = json.loads(cfg_bytes)
    keystore.check_config(cfg, ident["device"], (MAPS / "meter_modbus.json").read_bytes())
    assert not os.path.exists(write[4]) and not os.path.exists(write[10])
    assert reg.device(bytes.fromhex(ident["device"])).pointmap_digest == digest
    creds = broker.read_credentials(tmp_path / "device-passwords")
    assert broker.check_password(cfg["mqtt"]["password"], creds[ident["device"]])


def test_mpremote_failure_is_reported(tmp_path):
    fake = FakeMpremote(_pico_identity(), fail="mpremote: no device found")
    reg, signer = _registry(tmp_path)
    with pytest.raises(prov.ProvisionError, match="no device found"):
        prov.provision(prov.MpremoteBoard(PORT, run=fake), reg, signer, "feeder-7",
                       MAPS / "meter_modbus.json", "mqtt://h:1883", tmp_path / "device-passwords")
    assert reg.devices() == []


def test_open_board():
    assert isinstance(prov.open_board("mpremote:/dev/ttyACM1"), prov.MpremoteBoard)
    assert prov.open_board("mpremote:COM3").port == "COM3"
    assert isinstance(prov.open_board("boards/n1"), prov.UnixBoard)
    with pytest.raises(ValueError):
        prov.open_board("mpremote:")


def test_install_code_is_what_the_unix_board_runs(site):
    """The code mpremote execs on a Pico W installs a config on a unix-port board too."""
    site.run("board", "unix", "init", "board")
    ident = prov.UnixBoard(site.root / "board").read_identity()
    map_bytes = (site.root / "meter.json").read_bytes()
    from lightnode.drivers import pointmap

    digest = pointmap.load(map_bytes).digest()
    cfg = {"format": 1, "device": ident.device_hex, "segment": "feeder-7",
           "broker": "mqtt://127.0.0.1:1883",
           "mqtt": {"username": ident.device_hex, "password": broker.new_password()},
           "pointmap": {"digest": digest}, "nodes": []}
    d = site.root / "board/lightnode"
    (d / keystore.map_file(digest)).write_bytes(map_bytes)
    (d / "config.json.tmp").write_text(json.dumps(cfg))
    run = mp.run_unix(code=prov.INSTALL_CODE, board="pico_w", cwd=site.root / "board").check()
    assert run.results == [{"device": ident.device_hex, "segment": "feeder-7", "pointmap": digest,
                            "nodes": 0}]
    assert json.loads((d / "config.json").read_text()) == cfg
