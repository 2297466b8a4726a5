"""``lightnode firmware run``: the light-node firmware in the MicroPython unix port.

    lightnode board unix init boards/n1 --board pico_w
    lightnode device provision boards/n1 --segment feeder-7 --pointmap pmu.json --broker mqtt://127.0.0.1:1883
    echo '{"source": {"host": "127.0.0.1", "port": 4712}}' > boards/n1/lightnode/app.json
    lightnode firmware run --board unix boards/n1 --seconds 60

The board directory stands for the board's flash (its working directory
in the unix port); the heap is the budget of the board it stands in for.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from lightnode import boards
from lightnode.errors import LightnodeError
from lightnode.fwcli import firmware  # one group: build (fwcli) and run (here)

MAIN = Path(__file__).resolve().parent / "firmware" / "main.py"


def _main_script() -> Path:
    if MAIN.is_file():
        return MAIN
    import lightnode.firmware

    return Path(lightnode.firmware.__file__).resolve().parent / "main.py"


def run_board(directory: str | Path, seconds: float | None = None, image: str = "rom",
              heap: int | None = None):
    """Run the firmware on the unix-port board in ``directory``; the ``micropython.Run``."""
    from lightnode import micropython as mp

    d = Path(directory)
    ident_path = d / "lightnode" / "identity.json"
    try:
        ident = json.loads(ident_path.read_text())
    except (OSError, ValueError) as e:
        raise click.ClickException("%s is not a booted unix-port board (%s)" % (d, e)) from e
    board = ident.get("stands_in_for") or "unix"
    facts = boards.load(board)
    if not (d / "lightnode" / "app.json").is_file():
        raise click.ClickException(
            "%s has no lightnode/app.json: write {\"source\": {\"host\": ..., \"port\": ...}} "
            "(where the point map's source answers)" % d)
    window = facts.get("default_window_s", 5)
    timeout = (seconds + 120) if seconds is not None else 10 ** 7
    return mp.run_unix(_main_script(), board=board, heap=heap, cwd=d, image=image, timeout=timeout,
                       args=("-" if seconds is None else "%g" % seconds, "%g" % window))


@firmware.command("run")
@click.option("--board", "board_kind", type=click.Choice(["unix"]), default="unix", show_default=True,
              help="Where the firmware runs: the MicroPython unix port.")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--seconds", type=float, help="Stop after this many seconds (default: run until killed).")
@click.option("--heap", type=int, metavar="KB", help="Heap in KB instead of the board's budget.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's counters as JSON.")
def run(board_kind: str, directory: str, seconds: float | None, heap: int | None, as_json: bool) -> None:
    """Run the firmware on the provisioned unix-port board DIRECTORY, at its heap budget."""
    try:
        res = run_board(directory, seconds, heap=heap)
    except LightnodeError as e:
        raise click.ClickException(str(e)) from e
    if res.returncode != 0:
        click.echo(res.stdout, nl=False)
        click.echo(res.stderr, err=True, nl=False)
        raise click.ClickException("the firmware exited with %d" % res.returncode)
    if as_json:
        click.echo(json.dumps(res.results[-1] if res.results else {}))
    else:
        click.echo(res.stdout, nl=False)
