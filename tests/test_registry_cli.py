"""``lightnode registry|device|operator`` through click's CliRunner, in a temporary directory."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from lightnode import keys, registry
from lightnode.registrycli import device, operator, registry_group


@click.group()
def cli() -> None:
    pass


cli.add_command(registry_group)
cli.add_command(device)
cli.add_command(operator)

DEV = bytes.fromhex("4c4e0001a5c3e701")


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIGHTNODE_REGISTRY", raising=False)
    return CliRunner()


def run(runner: CliRunner, *args: str, ok: bool = True) -> Result:
    r = runner.invoke(cli, list(args), catch_exceptions=False)
    assert (r.exit_code == 0) == ok, r.output
    return r


def initialised(runner: CliRunner) -> None:
    run(runner, "registry", "init", "--admin", "alice", "--key-file", "alice.seed")
    reg = registry.open_registry("lightnode-registry.db")
    seed = keys.read_seed("alice.seed")
    reg.add_device(
        DEV, keys.public_key(bytes(32)), "feeder-7", "pico_w", "0.1.0", "ab" * 32, ("alice", seed)
    )
    reg.add_device(
        b"\x02" * 8,
        keys.public_key(bytes([2]) * 32),
        "feeder-8",
        "esp32",
        "0.1.0",
        "cd" * 32,
        ("alice", seed),
    )
    reg.close()


def test_init_makes_the_admin_key_and_the_genesis(runner: CliRunner, tmp_path: Path) -> None:
    r = run(runner, "registry", "init", "--admin", "alice", "--key-file", "alice.seed")
    assert "genesis, admin alice" in r.output
    assert (tmp_path / "alice.seed").stat().st_mode & 0o777 == 0o600
    note = json.loads((tmp_path / "lightnode-registry.db.admin.json").read_text())
    assert note == {"name": "alice", "key_file": str(tmp_path / "alice.seed")}
    r = run(runner, "registry", "init", "--admin", "alice", "--key-file", "alice.seed", ok=False)
    assert "already has its genesis" in r.output


def test_init_with_an_existing_key(runner: CliRunner, tmp_path: Path) -> None:
    keys.write_seed(tmp_path / "k.seed", bytes([7]) * 32)
    run(
        runner,
        "registry",
        "init",
        "--admin",
        "root",
        "--key-file",
        "k.seed",
        "--registry",
        "other.db",
    )
    op = registry.open_registry("other.db").operator("root")
    assert op is not None and op.public_key == keys.public_key(bytes([7]) * 32)


def test_registry_env_var(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIGHTNODE_REGISTRY", str(tmp_path / "env.db"))
    run(runner, "registry", "init", "--admin", "alice", "--key-file", "a.seed")
    assert (tmp_path / "env.db").exists() and not (tmp_path / "lightnode-registry.db").exists()
    assert json.loads(run(runner, "operator", "list", "--json").output)[0]["name"] == "alice"


def test_no_registry(runner: CliRunner) -> None:
    r = run(runner, "device", "list", ok=False)
    assert "no registry at lightnode-registry.db" in r.output


def test_device_list_and_show(runner: CliRunner) -> None:
    initialised(runner)
    r = run(runner, "device", "list")
    assert DEV.hex() in r.output and "feeder-8" in r.output and "2 devices" in r.output
    r = run(runner, "device", "list", "--segment", "feeder-7", "--json")
    (d,) = json.loads(r.output)
    assert d["device_id"] == DEV.hex() and d["segment"] == "feeder-7"
    assert d["registered_by"] == "alice" and d["pointmap_digest"] == "ab" * 32
    r = run(runner, "device", "show", DEV.hex())
    assert "registered by alice" in r.output and "seq 0 on" in r.output
    assert (
        json.loads(run(runner, "device", "show", DEV.hex(), "--json").output)["board"] == "pico_w"
    )
    assert "no device" in run(runner, "device", "show", "ff" * 8, ok=False).output
    assert "hex" in run(runner, "device", "show", "zz", ok=False).output


def test_device_revoke(runner: CliRunner) -> None:
    initialised(runner)
    r = run(runner, "device", "revoke", DEV.hex(), "--reason", "stolen")
    assert "revoked: stolen" in r.output
    assert len(json.loads(run(runner, "device", "list", "--json").output)) == 1
    devs = json.loads(run(runner, "device", "list", "--all", "--json").output)
    assert {d["device_id"]: d["revoked"] is not None for d in devs} == {
        DEV.hex(): True,
        "02" * 8: False,
    }
    r = run(runner, "device", "revoke", DEV.hex(), "--reason", "again", ok=False)
    assert "revoked" in r.output


def test_operator_add_list_revoke(runner: CliRunner, tmp_path: Path) -> None:
    initialised(runner)
    r = run(runner, "operator", "add", "bob", "--role", "operator", "--generate", "bob.seed")
    assert "operator bob (operator) added" in r.output
    bob = keys.read_seed(tmp_path / "bob.seed")
    assert keys.read_public_key(tmp_path / "bob.seed.pub") == keys.public_key(bob)
    pub = keys.public_key(bytes([9]) * 32).hex()
    run(runner, "operator", "add", "audrey", "--role", "auditor", "--key", pub)
    ops = {o["name"]: o for o in json.loads(run(runner, "operator", "list", "--json").output)}
    assert set(ops) == {"alice", "bob", "audrey"}
    assert (
        ops["audrey"]["public_key"] == pub and ops["bob"]["id"] == registry.operator_id("bob").hex()
    )
    assert "audrey" in run(runner, "operator", "list").output
    run(runner, "operator", "revoke", "audrey", "--reason", "contract ended")
    assert "audrey" not in run(runner, "operator", "list").output
    assert "contract ended" in run(runner, "operator", "list", "--all").output
    # the registry behind agrees, and bob's key makes actions that pass
    reg = registry.open_registry("lightnode-registry.db")
    tx = registry.operator_action(bob, "bob", "feeder-7", 0, bytes(32), 1, "login", "hmi", {})
    assert reg.check_operator_action(tx)[0].name == "bob"


def test_operator_add_refusals(runner: CliRunner, tmp_path: Path) -> None:
    initialised(runner)
    assert (
        "exactly one"
        in run(runner, "operator", "add", "bob", "--role", "operator", ok=False).output
    )
    assert (
        run(
            runner, "operator", "add", "bob", "--role", "root", "--key", "00" * 32, ok=False
        ).exit_code
        == 2
    )
    assert (
        "hex digits"
        in run(
            runner, "operator", "add", "bob", "--role", "operator", "--key", "abc", ok=False
        ).output
    )
    run(runner, "operator", "add", "bob", "--role", "operator", "--generate", "bob.seed")
    # a refused add leaves no key file behind
    r = run(
        runner, "operator", "add", "bob", "--role", "auditor", "--generate", "b2.seed", ok=False
    )
    assert "exists" in r.output and not (tmp_path / "b2.seed").exists()


def test_signing_as_someone_else(runner: CliRunner, tmp_path: Path) -> None:
    initialised(runner)
    run(runner, "operator", "add", "bob", "--role", "operator", "--generate", "bob.seed")
    r = run(
        runner,
        "device",
        "revoke",
        DEV.hex(),
        "--reason",
        "x",
        "--as",
        "bob",
        "--key-file",
        "bob.seed",
        ok=False,
    )
    assert "not-admin" in r.output
    run(runner, "operator", "add", "carol", "--role", "admin", "--generate", "carol.seed")
    run(
        runner,
        "device",
        "revoke",
        DEV.hex(),
        "--reason",
        "x",
        "--as",
        "carol",
        "--key-file",
        "carol.seed",
    )
    assert registry.open_registry("lightnode-registry.db").history()[-1].signer == "carol"
    r = run(runner, "device", "revoke", "02" * 8, "--reason", "x", "--as", "carol", ok=False)
    assert "go together" in r.output
    (tmp_path / "lightnode-registry.db.admin.json").unlink()
    r = run(runner, "device", "revoke", "02" * 8, "--reason", "x", ok=False)
    assert "who signs" in r.output


def test_registry_show(runner: CliRunner) -> None:
    initialised(runner)
    r = run(runner, "registry", "show")
    assert "3 changes" in r.output and "verified" in r.output and "device-add" in r.output
    d = json.loads(run(runner, "registry", "show", "--json").output)
    assert d["verified"] and d["transactions"] == 3 and d["genesis_admin"] == "alice"
    assert [h["action"] for h in d["history"]] == ["operator-add", "device-add", "device-add"]
    assert d["segments"] == ["feeder-7", "feeder-8"]


def test_registry_show_refuses_a_tampered_registry(runner: CliRunner) -> None:
    initialised(runner)
    with sqlite3.connect("lightnode-registry.db") as db:
        db.execute("DELETE FROM registry_tx WHERE idx = 1")
    r = run(runner, "registry", "show", ok=False)
    assert "broken-chain" in r.output and "Traceback" not in r.output
    assert run(runner, "device", "list", ok=False).exit_code == 1
