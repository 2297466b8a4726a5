"""``lightnode hil``: run a scenario with a board as one of its light nodes (docs/hil.md).

    lightnode hil                                  # the unix-port board, no hardware
    lightnode hil normal_day --duration 30
    lightnode hil substation --board pico_w --port /dev/ttyACM0 --broker-listen 192.168.1.20

It ends with the summary and the path of the HTML report, and exits 1 if
any expectation of the run failed (2 if the run could not be carried out).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from lightnode import boards
from lightnode.simulatecli import run_options


@click.command("hil")
@click.argument("scenario", default="substation")
@click.option("--board", default="unix", show_default=True, type=click.Choice(boards.names()),
              help="The board: a real one on --port, or unix (the MicroPython unix port, no hardware).")
@click.option("--port", metavar="DEV", help="A real board's serial port (/dev/ttyACM0), flashed with "
              "'lightnode firmware flash'.")
@click.option("--device-port", metavar="DEV",
              help="USB RS-485 adapter wired to the board's field bus, for a Modbus RTU device.")
@click.option("--light-node", metavar="NAME",
              help="The scenario's light node the board is (default: the first on a device the "
                   "firmware reads).")
@click.option("--stands-in-for", default="pico_w", show_default=True,
              type=click.Choice([n for n in boards.names() if n != "unix"]),
              help="With --board unix: the board whose heap budget and window it runs at.")
@click.option("--heap", type=int, metavar="KB", help="With --board unix: this heap instead of the budget.")
@run_options
@click.option("--broker", metavar="URL",
              help="mqtt://host:port of a broker the board and the full nodes use (default: amqtt "
                   "in this process on --broker-listen).")
@click.option("--broker-listen", metavar="ADDRESS",
              help="This host's address the board reaches (the broker and the served devices listen "
                   "there; default 127.0.0.1, enough for --board unix).")
@click.option("--out", type=click.Path(file_okay=False),
              help="The run's folder (default ./lightnode-runs/hil-<scenario>-<UTC time>/).")
def hil(scenario: str, board: str, port: str | None, device_port: str | None, light_node: str | None,
        stands_in_for: str, heap: int | None, duration: float | None, broker: str | None,
        broker_listen: str | None, out: str | None, profile: str, as_json: bool) -> None:
    """Run SCENARIO (default: substation) with a board as one of its light nodes; then the report.

    The simulator serves the board's device (a PMU over C37.118 on the
    network), the board uploads to the run's full node and witnesses, and
    the run checks the scenario's expectations and the board's own: every
    transaction it signed committed once, its chain intact.
    """
    from lightnode.errors import LightnodeError
    from lightnode.simulator import report
    from lightnode.simulator.hil import HilOptions, run
    from rich.console import Console

    console = Console(stderr=as_json)
    opts = HilOptions(scenario=scenario, board=board, port=port, device_port=device_port,
                      light_node=light_node, stands_in_for=stands_in_for, heap_kb=heap,
                      duration_s=duration, broker=broker, broker_listen=broker_listen, out=out,
                      profile=profile, json=as_json)
    try:
        record = run(opts, console)
    except (LightnodeError, ValueError) as e:
        console.print("[red]lightnode hil: %s[/]" % e, highlight=False)
        sys.exit(2)
    out_dir = Path(record["out"])
    html = out_dir / report.REPORT_NAME
    try:
        report.print_summary(record, console)
        report.render_html(record, html)
    except LightnodeError as e:
        console.print("[red]report: %s[/]" % e)
        sys.exit(2)
    h = record.get("hil", {})
    console.print("board: %s as %s (device %s); its log in %s" % (
        h.get("board"), h.get("light_node"), h.get("device"), out_dir / "board.log"))
    console.print("run folder: %s (run.json, stores, node logs)" % out_dir)
    if as_json:
        click.echo(json.dumps(record, default=str))
    console.print("report: [bold]%s[/]" % html.resolve())
    sys.exit(0 if record["ok"] else 1)
