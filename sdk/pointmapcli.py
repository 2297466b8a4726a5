"""``lightnode pointmap``: check point maps and show what a map reads.

The checks are the device's own (``lightnode.drivers.pointmap``), so a map
that passes here passes at provisioning and at boot, with the same digest.

    lightnode pointmap check drivers/maps/*.json
    lightnode pointmap show drivers/maps/relay_mms.json
    lightnode pointmap show --json drivers/maps/meter_modbus.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from lightnode.drivers import pointmap
from rich.console import Console
from rich.table import Table


def _load(path: str) -> Any:
    try:
        with Path(path).open("rb") as f:
            return pointmap.load(f)
    except OSError as e:
        raise pointmap.PointMapError("", "cannot read: %s" % (e.strerror or e)) from e


@click.group("pointmap")
def pointmap_group() -> None:
    """Check point maps (docs/point-maps.md) and show what they read."""


@pointmap_group.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(files: tuple[str, ...]) -> None:
    """Check each FILE; print name, protocol, points and digest, or the first bad field.

    Exits non-zero when any FILE is refused.
    """
    bad = 0
    for path in files:
        try:
            m = _load(path)
        except pointmap.PointMapError as e:
            bad += 1
            click.echo("%s: refused: %s" % (path, e), err=True)
            continue
        click.echo("%s: ok: %s, %s, %d points, digest %s"
                   % (path, m.name, m.protocol, len(m), m.digest()))
    if bad:
        raise SystemExit(1)


def _num(x: float | None) -> str:
    return "" if x is None else "%g" % x


def _where(protocol: str, read: dict[str, Any]) -> str:
    if protocol == "modbus":
        s = "%s %d %s" % (read["table"], read["address"], read["type"])
        if "order" in read:
            s += " " + read["order"]
        if "scale" in read:
            s += " x%g" % read["scale"]
        if "scale_register" in read:
            s += " x10^[%d]" % read["scale_register"]
        return s
    if protocol == "mms":
        return "%s [%s]" % (read["ref"], read["fc"])
    return read["kind"] + (" %d" % read["index"] if "index" in read else "")


def _when(p: Any) -> str:
    if p.period_ms is not None:
        return "%d ms" % p.period_ms
    if p.report is not None:
        return "report " + p.report
    return "streamed"


@pointmap_group.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="The checked map as JSON, with its digest.")
def show(file: str, as_json: bool) -> None:
    """Show what a point map reads: one line per point."""
    try:
        m = _load(file)
    except pointmap.PointMapError as e:
        raise click.ClickException("%s: refused: %s" % (file, e)) from e
    if as_json:
        click.echo(json.dumps({"digest": m.digest(), "map": m.to_data()}, indent=2))
        return
    # piped or captured: wide enough that a row stays one line
    console = Console(highlight=False, soft_wrap=True,
                      width=None if sys.stdout.isatty() else 200)
    dev = m.device
    source = ", ".join("%s %s" % (k, v) for k, v in m.source.items() if k != "protocol")
    console.print("[bold]%s[/bold]: %s (%s), %s%s" % (
        m.name, dev["kind"], dev["model"], m.protocol, " (" + source + ")" if source else ""))
    if m.window_s is not None:
        console.print("window %d s" % m.window_s)
    console.print("digest %s" % m.digest())
    t = Table(box=None, padding=(0, 2), show_edge=False)
    for col in ("id", "name", "quantity", "unit", "resolution", "order", "when",
                "deadband", "alarm", "event", "read"):
        t.add_column(col, justify="right" if col in ("id", "resolution", "order", "deadband") else "left")
    for p in m.points:
        alarm = ""
        if p.alarm_low is not None or p.alarm_high is not None:
            alarm = "%s..%s" % (_num(p.alarm_low), _num(p.alarm_high))
        t.add_row(str(p.id), p.name, p.quantity, p.unit, "%g" % p.resolution, str(p.order),
                  _when(p), _num(p.deadband), alarm, "yes" if p.event else "",
                  _where(m.protocol, p.read))
    console.print(t)
