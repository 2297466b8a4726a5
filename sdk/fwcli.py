"""``lightnode firmware build``: a signed application bundle for a board (docs/updates.md)."""

from __future__ import annotations

from pathlib import Path

import click
from lightnode import boards


@click.group("firmware")
def firmware() -> None:
    """The light-node firmware: build signed update bundles, run it on a unix-port board."""


@firmware.command("build")
@click.option("--board", required=True, type=click.Choice(boards.names()), help="Board to build for.")
@click.option("--sign-key", "sign_key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Seed file of a node key with the update role.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Bundle file to write.")
@click.option("--version", "version", help="Version the bundle carries (default: this release).")
@click.option("--config", type=click.Path(exists=True, dir_okay=False),
              help="Include this device config (config.json) in the bundle.")
def build(board: str, sign_key: str, out: str, version: str | None, config: str | None) -> None:
    """Compile the application with mpy-cross for BOARD's architecture and sign it as an update."""
    from lightnode import fwbuild
    from lightnode.errors import LightnodeError
    from lightnode.keys import read_seed

    try:
        data = fwbuild.build(board, read_seed(sign_key), version=version,
                             config=Path(config).read_bytes() if config else None)
    except (ValueError, LightnodeError) as e:
        raise click.ClickException(str(e)) from e
    Path(out).write_bytes(data)
    click.echo(f"{out}: {len(data)} bytes for {board} ({fwbuild.board_arch(board)})")


@firmware.command("flash")
@click.option("--board", required=True, type=click.Choice(boards.names()), help="Board the port has.")
@click.option("--port", required=True, help="Serial port of a board running MicroPython (/dev/ttyACM0).")
@click.option("--bundle", type=click.Path(exists=True),
              help="A bundle from 'firmware build', or a folder laid out as the board's root (default: build now).")
@click.option("--no-reset", is_flag=True, help="Leave the board in the REPL instead of soft-resetting it.")
def flash(board: str, port: str, bundle: str | None, no_reset: bool) -> None:
    """Install the application on BOARD at PORT with mpremote; identity, keys and journal stay."""
    from lightnode import fwbuild, fwflash
    from lightnode.errors import LightnodeError

    try:
        if bundle is None:
            click.echo(f"building the application for {board} ({fwbuild.board_arch(board)})")
        files = fwflash.bundle_files(board, bundle)
        report = fwflash.flash(board, port, files, progress=click.echo, soft_reset=not no_reset)
    except (ValueError, LightnodeError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{port}: {report['files']} files of the application in place, "
               f"{len(report['copied'])} copied ({report['bytes']} bytes)")


@firmware.command("serial")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--board", default="unix", show_default=True, type=click.Choice(["unix"]),
              help="The board the directory is.")
def serial_port(directory: str, board: str) -> None:
    """Serve the unix-port board DIRECTORY as a MicroPython board on a pseudo-terminal (for mpremote
    and 'firmware flash') until interrupted."""
    from lightnode.rawrepl import UnixBoardPort

    with UnixBoardPort(directory, board) as port:
        click.echo(f"{directory} answers as a MicroPython board on {port.path}")
        click.echo(f"  lightnode firmware flash --board unix --port {port.path}")
        click.echo(f"  mpremote connect {port.path} fs ls")
        try:
            code = port.wait()
        except KeyboardInterrupt:
            return
    raise click.ClickException(f"the board's interpreter exited with {code}")
