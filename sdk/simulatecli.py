"""``lightnode simulate``: run a scenario with a fleet of light nodes, three full nodes and its attacks.

    lightnode simulate                      # the substation scenario, about a minute
    lightnode simulate storm --profile ci   # shortened, as the test suite runs it
    lightnode simulate gps_spoof --broker mqtt://127.0.0.1:1883 --store postgresql://.../sim

It ends with the summary and the path of the HTML report, and exits 1 if
any expectation of the run failed (2 if the run could not be carried out).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

PROFILES = ("ci", "full")


def run_options(f: Any) -> Any:
    """The options every scenario run takes (``simulate`` and ``hil``): length, profile, JSON."""
    f = click.option("--json", "as_json", is_flag=True,
                     help="Print the run record as JSON on stdout.")(f)
    f = click.option("--profile", type=click.Choice(PROFILES), default="full", show_default=True,
                     help="full: the scenario's own length; ci: shortened to 20 s unless --duration.")(f)
    return click.option("--duration", type=float, metavar="S",
                        help="Shorten the scenario to S seconds (events and attacks scaled to fit).")(f)


def _firmware(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value == "all":
        return "all"
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter("a number of light nodes, or 'all'") from None
    if n < 0:
        raise click.BadParameter("at least 0")
    return n or None


@click.command("simulate")
@click.argument("scenario", default="substation")
@run_options
@click.option("--nodes", type=int, metavar="N",
              help="Light nodes: the scenario's first N, or more PMUs on the same grid.")
@click.option("--firmware", "firmware", metavar="N|all",
              help="Run N (or all) light nodes as the real firmware in the MicroPython unix port.")
@click.option("--firmware-heap", type=int, metavar="KB",
              help="Heap of the firmware light nodes instead of their board's budget (the "
                   "firmware needs about 150-200 KB on the 64-bit unix port today: docs/simulator.md).")
@click.option("--broker", metavar="URL",
              help="mqtt://host:port of a broker to use (default: amqtt embedded, loopback).")
@click.option("--store", metavar="URL",
              help="The producer's store: sqlite:///path or postgresql://... (witnesses get "
                   "their own beside it; default: SQLite files in the run's folder).")
@click.option("--out", type=click.Path(file_okay=False),
              help="The run's folder (default ./lightnode-runs/<scenario>-<UTC time>/).")
def simulate(scenario: str, duration: float | None, nodes: int | None, firmware: str | None,
             firmware_heap: int | None, broker: str | None, store: str | None, out: str | None, profile: str,
             as_json: bool) -> None:
    """Run SCENARIO (default: substation): light nodes, full nodes, attacks; then the report.

    Shipped scenarios: lightnode.simulator.scenario.names(); or a path to a .toml file.
    """
    from lightnode.errors import LightnodeError
    from lightnode.simulator import report
    from lightnode.simulator.run import Options, run
    from rich.console import Console

    console = Console(stderr=as_json)
    opts = Options(scenario=scenario, duration_s=duration, nodes=nodes,
                   firmware=_firmware(firmware), firmware_heap_kb=firmware_heap, broker=broker, store=store, out=out,
                   profile=profile, json=as_json)
    try:
        record = run(opts, console)
    except (LightnodeError, ValueError) as e:
        console.print("[red]lightnode simulate: %s[/]" % e)
        sys.exit(2)
    out_dir = Path(record["out"])
    html = out_dir / report.REPORT_NAME
    try:
        report.print_summary(record, console)
        report.render_html(record, html)
    except LightnodeError as e:  # a record the report refuses is our bug: say it, keep run.json
        console.print("[red]report: %s[/]" % e)
        sys.exit(2)
    console.print("run folder: %s (run.json, stores, node logs)" % out_dir)
    if as_json:
        click.echo(json.dumps(record, default=str))
    console.print("report: [bold]%s[/]" % html.resolve())
    sys.exit(0 if record["ok"] else 1)
