"""``lightnode registry|device|operator``: the registry from the command line.

Every change is a registry transaction signed by an admin: by default the
admin ``registry init`` made (its name and key file are kept beside the
registry, in ``<registry>.admin.json``), or whoever ``--as NAME
--key-file PATH`` names. Opening the registry replays and verifies every
transaction, so each command reads a registry whose chain holds.

    lightnode registry init --admin alice --key-file alice.seed
    lightnode operator add bob --role operator --generate bob.seed
    lightnode device list --segment feeder-7
    lightnode device revoke 4c4e0001a5c3e701 --reason "stolen from the substation"
    lightnode registry show --json
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from lightnode import keys, registry
from lightnode.errors import LightnodeError
from lightnode.firmware.ln import wire as spec
from rich.console import Console
from rich.table import Table

DEFAULT_REGISTRY = "lightnode-registry.db"
ENV_REGISTRY = "LIGHTNODE_REGISTRY"
ADMIN_SUFFIX = ".admin.json"


def admin_file(path: str | Path) -> Path:
    """Where ``registry init`` notes the admin who signs by default."""
    return Path(str(path) + ADMIN_SUFFIX)


def _console() -> Console:
    # piped or captured: wide enough that a row stays one line
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _when(us: int) -> str:
    t = _dt.datetime.fromtimestamp(us / 1e6, tz=_dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _registry_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--registry",
        "registry_path",
        envvar=ENV_REGISTRY,
        default=DEFAULT_REGISTRY,
        show_default=True,
        type=click.Path(dir_okay=False),
        help=f"The registry file (default: ${ENV_REGISTRY}, else ./{DEFAULT_REGISTRY}).",
    )(f)


def _signer_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--key-file",
        type=click.Path(dir_okay=False),
        help="The signer's key seed (hex file).",
    )(f)
    return click.option(
        "--as", "as_name", metavar="NAME", help="Sign as this admin (default: the one init made)."
    )(f)


def _refusals(f: Callable[..., Any]) -> Callable[..., Any]:
    """A refusal or a caller's mistake is one line and a non-zero exit, not a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (LightnodeError, ValueError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def _open(path: str, must_exist: bool = True) -> registry.Registry:
    if must_exist and not Path(path).exists():
        raise click.ClickException(
            f"no registry at {path}: run `lightnode registry init` or give --registry"
        )
    return registry.open_registry(path)


def _signer(reg: registry.Registry, path: str, as_name: str | None, key_file: str | None) -> Any:
    if as_name is None and key_file is None:
        note = admin_file(path)
        try:
            d = json.loads(note.read_text())
            as_name, key_file = d["name"], d["key_file"]
        except (OSError, ValueError, KeyError, TypeError):
            raise click.ClickException(
                f"who signs? give --as NAME --key-file PATH ({note} names no admin)"
            ) from None
    if as_name is None or key_file is None:
        raise click.UsageError("--as and --key-file go together")
    return reg.as_operator(as_name, keys.read_seed(key_file))


def _device_id(text: str) -> bytes:
    s = text.strip().lower()
    if s.startswith("0x"):
        s = s[2:]
    try:
        b = bytes.fromhex(s)
    except ValueError:
        raise click.BadParameter(f"{text!r}: a device id in hex expected") from None
    if not b:
        raise click.BadParameter("an empty device id")
    return b


def _revoked(r: tuple[str, int] | None) -> str:
    return "" if r is None else f"revoked {_when(r[1])}: {r[0]}"


# -- registry ---------------------------------------------------------------------------------


@click.group("registry")
def registry_group() -> None:
    """Make the registry, and show its chain of signed changes."""


@registry_group.command("init")
@click.option("--admin", "name", required=True, help="The first admin's name.")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The admin's key seed: made here if missing, used if it exists.",
)
@_registry_option
@_refusals
def init(name: str, key_file: str, registry_path: str) -> None:
    """Make the registry's genesis: the first admin, self-signed."""
    reg = _open(registry_path, must_exist=False)
    try:
        if len(reg):
            raise click.ClickException(f"{registry_path} already has its genesis")
        made = not Path(key_file).exists()
        if made:
            keys.write_seed(key_file, keys.generate_seed())
        seed = keys.read_seed(key_file)
        op = reg.init_admin(name, keys.public_key(seed), seed)
    finally:
        reg.close()
    admin_file(registry_path).write_text(
        json.dumps({"name": name, "key_file": str(Path(key_file).resolve())}) + "\n"
    )
    c = _console()
    c.print(f"registry [bold]{registry_path}[/bold]: genesis, admin [bold]{name}[/bold]")
    c.print(f"  public key {op.public_key.hex()}")
    c.print(f"  key {'made in' if made else 'read from'} {key_file}")


@registry_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_registry_option
@_refusals
def show(as_json: bool, registry_path: str) -> None:
    """Replay and verify every change; print the chain's summary and its history."""
    reg = _open(registry_path)
    summary = reg.summary()
    history = reg.history()
    reg.close()
    if as_json:
        out = dict(summary, verified=True, history=[c.to_json() for c in history])
        click.echo(json.dumps(out, indent=2))
        return
    c = _console()
    c.print(
        f"registry [bold]{registry_path}[/bold]: {summary['transactions']} changes, "
        "[green]chain and signatures verified[/green]"
    )
    c.print(f"  head {summary['head']}")
    c.print(f"  genesis admin {summary['genesis_admin']}")
    c.print(
        f"  devices {summary['devices']} (revoked {summary['devices_revoked']}, "
        f"quarantined {summary['devices_quarantined']}), "
        f"segments {', '.join(summary['segments']) or '-'}"
    )
    c.print(
        f"  operators {summary['operators']} (revoked {summary['operators_revoked']}), "
        f"node keys {summary['node_keys']}, rejections recorded {summary['rejections']}"
    )
    t = Table("seq", "time (UTC)", "change", "signed by", "subject", "id")
    for ch in history:
        t.add_row(str(ch.seq), _when(ch.time), ch.action, ch.signer, ch.subject, ch.id.hex()[:16])
    c.print(t)


# -- device -----------------------------------------------------------------------------------


@registry_group.command("node-key")
@click.argument("node")
@click.argument("role", type=click.Choice(spec.NODE_ROLES))
@click.argument("public_key", metavar="KEY")
@_registry_option
@_signer_options
@_refusals
def node_key(
    node: str, role: str, public_key: str, registry_path: str, as_name: str | None,
    key_file: str | None
) -> None:
    """Register a full node's public KEY (hex) for ROLE; `lightnode node --new-keys` prints them.

    A node refuses to start with keys the registry does not hold for it;
    devices learn the keys by role at provisioning.
    """
    try:
        key = keys.parse_public_key(public_key)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="KEY") from e
    reg = _open(registry_path)
    try:
        nk = reg.add_node_key(node, role, key, _signer(reg, registry_path, as_name, key_file))
    finally:
        reg.close()
    _console().print(f"node {nk.node}: {role} key {key.hex()} (kid {registry.key_id(key).hex()})")


@click.group("device")
def device() -> None:
    """Devices: provision a board, list, show, revoke."""


@device.command("list")
@click.option("--segment", help="Only this segment's devices.")
@click.option("--all", "include_revoked", is_flag=True, help="Revoked devices too.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
@_registry_option
@_refusals
def device_list(
    segment: str | None, include_revoked: bool, as_json: bool, registry_path: str
) -> None:
    """The registered devices, by segment."""
    reg = _open(registry_path)
    devs = sorted(
        reg.devices(segment=segment, include_revoked=include_revoked),
        key=lambda d: (d.segment, d.device_id),
    )
    reg.close()
    if as_json:
        click.echo(json.dumps([d.to_json() for d in devs], indent=2))
        return
    t = Table("device", "segment", "board", "firmware", "public key", "state")
    for d in devs:
        state = _revoked(d.revoked) or ("quarantined" if d.quarantined else "active")
        t.add_row(d.device_id.hex(), d.segment, d.board, d.firmware, d.public_key.hex()[:16], state)
    c = _console()
    c.print(t)
    c.print(f"{len(devs)} device{'s' if len(devs) != 1 else ''}")


def _device_or_fail(reg: registry.Registry, device_id: bytes) -> registry.Device:
    d = reg.device(device_id)
    if d is None:
        raise click.ClickException(f"no device {device_id.hex()} in the registry")
    return d


@device.command("show")
@click.argument("device_id", metavar="DEVICE")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_registry_option
@_refusals
def device_show(device_id: str, as_json: bool, registry_path: str) -> None:
    """One device (its id in hex): its record and its keys with their validity."""
    reg = _open(registry_path)
    d = _device_or_fail(reg, _device_id(device_id))
    reg.close()
    if as_json:
        click.echo(json.dumps(d.to_json(), indent=2))
        return
    c = _console()
    c.print(f"device [bold]{d.device_id.hex()}[/bold]")
    c.print(f"  segment {d.segment}, board {d.board}, firmware {d.firmware}")
    c.print(f"  point map digest {d.pointmap_digest}")
    c.print(f"  registered by {d.registered_by} at {_when(d.registered_at)}")
    if d.revoked:
        c.print(f"  [red]{_revoked(d.revoked)}[/red]")
    if d.quarantined:
        at, evidence = d.quarantined
        c.print(f"  [red]quarantined: compromised at {_when(at)}[/red]")
        for e in evidence:
            c.print(f"    evidence {e.hex()}")
    for k in d.keys:
        upto = "on" if k.below is None else f"below {k.below}"
        c.print(f"  key {k.public_key.hex()}: seq {k.from_seq} {upto}")


@device.command("revoke")
@click.argument("device_id", metavar="DEVICE")
@click.option("--reason", required=True, help="Why, kept in the registry.")
@_registry_option
@_signer_options
@_refusals
def device_revoke(
    device_id: str, reason: str, registry_path: str, as_name: str | None, key_file: str | None
) -> None:
    """Revoke a device: the full node refuses what it signs from now on."""
    reg = _open(registry_path)
    try:
        did = _device_id(device_id)
        _device_or_fail(reg, did)
        d = reg.revoke_device(did, reason, _signer(reg, registry_path, as_name, key_file))
    finally:
        reg.close()
    _console().print(f"device {d.device_id.hex()} revoked: {reason}")


# -- operator ---------------------------------------------------------------------------------


@click.group("operator")
def operator() -> None:
    """Operators: who may log in, shut down or control, and who may change the registry."""


@operator.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(sorted(registry.ROLES)))
@click.option("--key", "key_hex", help="The operator's public key, 64 hex digits.")
@click.option(
    "--generate",
    "generate",
    type=click.Path(dir_okay=False),
    metavar="KEYFILE",
    help="Make the operator's key; write its seed here (and the public key to KEYFILE.pub).",
)
@_registry_option
@_signer_options
@_refusals
def operator_add(
    name: str,
    role: str,
    key_hex: str | None,
    generate: str | None,
    registry_path: str,
    as_name: str | None,
    key_file: str | None,
) -> None:
    """Add an operator with a role and a public key (given, or made here)."""
    if (key_hex is None) == (generate is None):
        raise click.UsageError("give exactly one of --key HEX and --generate KEYFILE")
    reg = _open(registry_path)
    try:
        signer = _signer(reg, registry_path, as_name, key_file)
        seed = None
        if generate is not None:
            if os.path.exists(generate):
                raise click.ClickException(f"{generate} exists, not replaced")
            seed = keys.generate_seed()
            pub = keys.public_key(seed)
        else:
            pub = keys.parse_public_key(key_hex or "")
        op = reg.add_operator(name, role, pub, signer)
        if generate is not None and seed is not None:
            # Written once the registry took the key: a refused add leaves no stray key.
            keys.write_seed(generate, seed)
            keys.write_public_key(generate + ".pub", pub)
    finally:
        reg.close()
    c = _console()
    c.print(f"operator [bold]{op.name}[/bold] ({op.role}) added, id {op.id.hex()}")
    c.print(f"  public key {op.public_key.hex()}")
    if generate is not None:
        c.print(f"  key seed written to {generate}")


@operator.command("revoke")
@click.argument("name")
@click.option("--reason", required=True, help="Why, kept in the registry.")
@_registry_option
@_signer_options
@_refusals
def operator_revoke(
    name: str, reason: str, registry_path: str, as_name: str | None, key_file: str | None
) -> None:
    """Revoke an operator: their actions are refused and recorded from now on."""
    reg = _open(registry_path)
    try:
        op = reg.revoke_operator(name, reason, _signer(reg, registry_path, as_name, key_file))
    finally:
        reg.close()
    _console().print(f"operator {op.name} revoked: {reason}")


@operator.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Revoked operators too.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
@_registry_option
@_refusals
def operator_list(include_revoked: bool, as_json: bool, registry_path: str) -> None:
    """The operators, their roles and keys."""
    reg = _open(registry_path)
    ops = sorted(reg.operators(include_revoked=include_revoked), key=lambda o: o.name)
    reg.close()
    if as_json:
        click.echo(json.dumps([o.to_json() for o in ops], indent=2))
        return
    t = Table("operator", "role", "id", "public key", "added by", "state")
    for o in ops:
        t.add_row(
            o.name,
            o.role,
            o.id.hex(),
            o.public_key.hex()[:16],
            o.added_by,
            _revoked(o.revoked) or "active",
        )
    c = _console()
    c.print(t)
    c.print(f"{len(ops)} operator{'s' if len(ops) != 1 else ''}")
