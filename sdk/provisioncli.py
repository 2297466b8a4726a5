"""``lightnode board`` and ``lightnode device provision``: make unix-port boards, provision boards.

    lightnode board unix init boards/n1 --board pico_w
    lightnode registry init --admin alice --key-file alice.seed
    lightnode device provision boards/n1 --segment feeder-7 --pointmap meter.json \\
        --broker mqtt://127.0.0.1:1883
    lightnode device provision mpremote:/dev/ttyACM0 --segment feeder-7 ...

``board`` is a group of its own; ``provision`` is a command for the
``device`` group (``lightnode.registrycli``), whose registry and signer
options it shares.
"""

from __future__ import annotations

import json

import click
from lightnode import boards
from lightnode.errors import LightnodeError

# The registry CLI's own options and helpers: one --registry, one way to say who signs.
from lightnode.registrycli import _open, _registry_option, _signer, _signer_options


@click.group("board")
def board() -> None:
    """Boards that stand in for real ones."""


@board.group("unix")
def unix() -> None:
    """Unix-port boards: a directory stands for the board's flash, the unix port runs its code."""


@unix.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--board", "board_name", default="pico_w", show_default=True,
              type=click.Choice([n for n in boards.names() if n != "unix"]),
              help="The board this one stands in for (its heap budget).")
def unix_init(directory: str, board_name: str) -> None:
    """Make a unix-port board in DIRECTORY (new or empty) and boot it once: it makes its key.

    The private key stays in DIRECTORY/lightnode/key.bin; this prints the
    board's public identity.
    """
    from lightnode import provision as prov

    try:
        ident = prov.init_unix_board(directory, board_name)
    except (ValueError, LightnodeError) as e:
        raise click.ClickException(str(e)) from e
    _echo_identity(directory, ident)


@unix.command("boot")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
def unix_boot(directory: str) -> None:
    """Boot the unix-port board in DIRECTORY once, as a power cycle does (the key stays)."""
    from lightnode import provision as prov

    try:
        ident = prov.boot_unix_board(directory)
    except (ValueError, LightnodeError) as e:
        raise click.ClickException(str(e)) from e
    _echo_identity(directory, ident)


def _echo_identity(directory: str, ident: object) -> None:
    click.echo("board %s: device %s, public key %s, board %s, firmware %s" % (
        directory, ident.device_hex, ident.public_key.hex(),  # type: ignore[attr-defined]
        ident.board, ident.firmware))  # type: ignore[attr-defined]


@click.command("provision")
@click.argument("target", metavar="BOARD")
@click.option("--segment", required=True, help="Network segment the device reports to.")
@click.option("--pointmap", "pointmap_path", required=True, type=click.Path(dir_okay=False),
              help="The device's point map (checked; its digest is registered).")
@click.option("--broker", "broker_url", required=True, metavar="mqtt://HOST:PORT",
              help="The MQTT broker the device connects to (mqtts:// for TLS).")
@click.option("--node-keys", "node_keys_path", type=click.Path(dir_okay=False),
              help='Node public keys as JSON [{"role": ..., "key": ...}] (default: the registry\'s).')
@click.option("--credentials", "credentials_path", type=click.Path(dir_okay=False),
              help="user:hash file for `lightnode broker config` "
                   "(default: device-passwords beside the registry).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@_registry_option
@_signer_options
def provision(target: str, segment: str, pointmap_path: str, broker_url: str,
              node_keys_path: str | None, credentials_path: str | None, as_json: bool,
              registry_path: str, as_name: str | None, key_file: str | None) -> None:
    """Register the board's device and write its config back to it.

    BOARD is a unix-port board directory or mpremote:PORT (a board on a
    serial port). Only the board's public identity is read. The
    registration is signed by the admin `registry init` made, or by --as
    NAME --key-file PATH. A board already registered with the same key,
    segment and map is written again with a new MQTT password; any other
    difference is refused.
    """
    from lightnode import provision as prov

    try:
        board_obj = prov.open_board(target)
        nodes = prov.read_node_keys(node_keys_path) if node_keys_path else None
        reg = _open(registry_path)
        try:
            signer = _signer(reg, registry_path, as_name, key_file)
            creds = credentials_path or prov.default_credentials(registry_path)
            done = prov.provision(board_obj, reg, signer, segment, pointmap_path, broker_url,
                                  creds, node_keys=nodes)
        finally:
            reg.close()
    except (ValueError, LightnodeError) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(done.to_json()))
        return
    click.echo("device %s (public key %s) %s: segment %s, point map %s" % (
        done.device_id, done.public_key,
        "registered" if done.registered else "already registered so, registry unchanged",
        done.segment, done.pointmap_digest))
    click.echo("config written to %s: broker %s, %d node keys; MQTT credential for %s in %s"
               % (done.target, broker_url, done.node_keys, done.device_id, done.credentials))
    if not done.node_keys:
        click.echo("warning: no node keys: the device cannot check acks until it is "
                   "provisioned again with them", err=True)
