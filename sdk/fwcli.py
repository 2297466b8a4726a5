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
