"""The report of a simulation run: the summary on the terminal and one self-contained HTML file.

The run record (``run.json``, written by the runner next to the run's
store; the same dict the runner passes here) is the only input. The HTML
file carries everything it shows: inline CSS, plots drawn by matplotlib
(Agg) as PNG data URIs, no script, no font or file from anywhere else, so it
can be mailed or archived with the run. Every string from the record is
escaped: device names and details come from remote data.

    from rich.console import Console
    from lightnode.simulator import report

    run = report.load_run("runs/substation")          # the run folder or its run.json
    report.print_summary(run, Console())
    report.render_html(run, "runs/substation/report.html")

Two refinements of the record's interface (issue 7): the values of
``series`` may be ``null`` where a device sent nothing (a gap, e.g. a
communications loss), and ``latency_ms`` values and ``detected_after_s``
may be ``null`` when nothing was measured. Long series are decimated to a
min/max envelope before plotting and long tables are cut, so the HTML
stays small for long runs and large fleets.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lightnode.errors import LightnodeError
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

__all__ = [
    "REPORT_NAME",
    "RUN_NAME",
    "RunRecordError",
    "check_run",
    "load_run",
    "print_summary",
    "render_html",
]

RUN_NAME = "run.json"  # the run record, in the run's folder
REPORT_NAME = "report.html"  # the HTML report, beside it

MAX_PLOT_POINTS = 4000  # per line: twice the pixels of a plot's width, so decimation is invisible
MAX_MARKED_EVENTS = 60  # vertical event lines on the signal plots
MAX_TIMELINE_ROWS = 18  # rows of the timeline plot; further kinds go into "other"
MAX_TABLE_ROWS = 200  # rows of a long HTML table (timeline, detections)
MAX_NODE_ROWS = 60  # light nodes listed one by one in the HTML; beyond, grouped by kind
MAX_NODE_ROWS_TERMINAL = 12  # the same on the terminal
WIDE_TERMINAL = 140  # columns: the attacks fit one table row each from here
DPI = 100


class RunRecordError(LightnodeError):
    """The run record is missing a key or has one of the wrong type; ``where`` is its path."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__("run record: %s: %s" % (where, problem))


# --- the record's shape -------------------------------------------------------------------

_NUM = (int, float)


class _Opt:
    """A value that may be null."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _Each:
    """An object whose keys are names (PMUs, reasons) and whose values all have one shape."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


_ANY = object()
_COUNTS = _Each(int)
_SERIES = [_Opt(_NUM)]

SCHEMA: dict[str, Any] = {
    "scenario": {
        "name": str,
        "title": str,
        "description": str,
        "duration_s": _NUM,
        "seed": _Opt((int, str)),
        "profile": str,
    },
    "started_at": str,
    "wall_s": _NUM,
    "store": str,
    "broker": str,
    "light_nodes": [
        {
            "name": str,
            "device_id": str,
            "device_kind": str,
            "board": str,
            "firmware": bool,
            "tx_signed": int,
            "tx_committed": int,
            "readings": int,
            "lost": int,
        }
    ],
    "series": {"t_s": [_NUM], "frequency_hz": _Each(_SERIES), "angle_deg": _Each(_SERIES)},
    "ingest": {"t_s": [_NUM], "tx_per_s": [_NUM]},
    "timeline": [{"t_s": _NUM, "kind": str, "source": str, "detail": _ANY}],
    "attacks": [
        {
            "name": str,
            "kind": str,
            "at_s": _NUM,
            "target": str,
            "injected": int,
            "rejected": int,
            "flagged": int,
            "detected": bool,
            "detected_after_s": _Opt(_NUM),
            "reasons": _COUNTS,
            "flags": _COUNTS,
        }
    ],
    "detections": [{"t_s": _NUM, "kind": str, "device": str, "detail": _ANY}],
    "expectations": [{"name": str, "met": bool, "detail": _ANY}],
    "totals": {
        "transactions": int,
        "readings": int,
        "committed": int,
        "rejected": int,
        "flags": int,
        "lost": int,
    },
    "latency_ms": {"p50": _Opt(_NUM), "p99": _Opt(_NUM), "max": _Opt(_NUM)},
    "ingest_tx_per_s": _NUM,
    "ok": bool,
}


def _type_name(spec: Any) -> str:
    if spec is _NUM:
        return "a number"
    if isinstance(spec, tuple):
        return " or ".join(_type_name(s) for s in spec)
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        spec, getattr(spec, "__name__", str(spec))
    )


def _is(value: Any, spec: Any) -> bool:
    types = spec if isinstance(spec, tuple) else (spec,)
    # JSON's true/false are Python ints too; a count or a time is never a boolean.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _check(value: Any, spec: Any, where: str) -> None:
    if spec is _ANY:
        return
    if isinstance(spec, _Opt):
        if value is not None:
            _check(value, spec.spec, where)
        return
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise RunRecordError(where, "expected an object, got %s" % _json_type(value))
        for key, sub in spec.items():
            if key not in value:
                raise RunRecordError("%s.%s" % (where, key), "missing")
            _check(value[key], sub, "%s.%s" % (where, key))
        return
    if isinstance(spec, _Each):
        if not isinstance(value, dict):
            raise RunRecordError(where, "expected an object, got %s" % _json_type(value))
        for key, sub in value.items():
            _check(sub, spec.spec, "%s[%s]" % (where, json.dumps(key)))
        return
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise RunRecordError(where, "expected a list, got %s" % _json_type(value))
        # Long numeric series are checked in one pass; the slow path only names the bad item.
        if spec[0] is _NUM or (isinstance(spec[0], _Opt) and spec[0].spec is _NUM):
            allowed = (int, float, type(None)) if isinstance(spec[0], _Opt) else (int, float)
            if all(type(v) in allowed for v in value):
                return
        for i, item in enumerate(value):
            _check(item, spec[0], "%s[%d]" % (where, i))
        return
    if not _is(value, spec):
        raise RunRecordError(where, "expected %s, got %s" % (_type_name(spec), _json_type(value)))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "the number %r" % (value,)
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_run(run: Any) -> dict[str, Any]:
    """``run`` itself if it has the run record's shape; else ``RunRecordError`` naming the key."""
    _check(run, SCHEMA, "run")
    n = len(run["series"]["t_s"])
    for quantity in ("frequency_hz", "angle_deg"):
        for name, values in run["series"][quantity].items():
            if len(values) != n:
                raise RunRecordError(
                    "run.series.%s[%s]" % (quantity, json.dumps(name)),
                    "%d values for %d times (series.t_s)" % (len(values), n),
                )
    if len(run["ingest"]["tx_per_s"]) != len(run["ingest"]["t_s"]):
        raise RunRecordError(
            "run.ingest.tx_per_s",
            "%d values for %d times (ingest.t_s)"
            % (len(run["ingest"]["tx_per_s"]), len(run["ingest"]["t_s"])),
        )
    return run  # type: ignore[no-any-return]


def load_run(path: str | Path) -> dict[str, Any]:
    """The run record at ``path`` (a run folder holding ``run.json``, or the file), checked."""
    p = Path(path)
    if p.is_dir():
        p = p / RUN_NAME
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise LightnodeError("no run record at %s" % p) from e
    except (OSError, UnicodeDecodeError) as e:
        raise LightnodeError("cannot read the run record %s: %s" % (p, e)) from e
    try:
        run = json.loads(text)
    except json.JSONDecodeError as e:
        raise LightnodeError("%s is not JSON: %s" % (p, e)) from e
    return check_run(run)


# --- words and numbers --------------------------------------------------------------------


def _num(x: float | int | None, digits: int = 0, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    s = "{:,.{d}f}".format(x, d=digits) if isinstance(x, float) or digits else f"{x:,}"
    return s + (" " + unit if unit else "")


def _detail(d: Any) -> str:
    if d is None:
        return ""
    if isinstance(d, str):
        return d
    return json.dumps(d, sort_keys=True, ensure_ascii=False)


def _counts(c: Mapping[str, int]) -> str:
    return ", ".join("%s ×%d" % (k, n) for k, n in sorted(c.items(), key=lambda kv: -kv[1]))


def redact_url(url: str) -> str:
    """``url`` without its password (a PostgreSQL store URL may carry one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += ":%d" % parts.port
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc="%s:***@%s" % (user, host)))


def _attack_outcome(a: Mapping[str, Any]) -> str:
    if a["detected"]:
        after = a["detected_after_s"]
        return "detected" + ("" if after is None else " after %.1f s" % after)
    return "NOT detected"


def _verdict(run: Mapping[str, Any]) -> tuple[bool, str]:
    exps = run["expectations"]
    failed = [e["name"] for e in exps if not e["met"]]
    attacks = run["attacks"]
    seen = sum(1 for a in attacks if a["detected"])
    lost = run["totals"]["lost"]
    parts = ["%d/%d expectations met" % (len(exps) - len(failed), len(exps))]
    if attacks:
        parts.append("%d/%d attacks detected" % (seen, len(attacks)))
    parts.append("%s lost" % _num(lost))
    if run["ok"]:
        return True, "PASS: " + ", ".join(parts)
    why = ", ".join(parts)
    if failed:
        why += "; not met: " + ", ".join(failed)
    return False, "FAIL: " + why


def _node_groups(nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Light nodes grouped by (kind, board, firmware): how many, and their sums."""
    groups: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for n in nodes:
        key = (n["device_kind"], n["board"], n["firmware"])
        g = groups.setdefault(
            key,
            {
                "device_kind": key[0],
                "board": key[1],
                "firmware": key[2],
                "count": 0,
                "tx_signed": 0,
                "tx_committed": 0,
                "readings": 0,
                "lost": 0,
            },
        )
        g["count"] += 1
        for k in ("tx_signed", "tx_committed", "readings", "lost"):
            g[k] += n[k]
    return sorted(groups.values(), key=lambda g: (-g["count"], g["device_kind"]))


def _troubled(nodes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Light nodes that lost something or whose transactions are not all committed."""
    return [n for n in nodes if n["lost"] or n["tx_committed"] < n["tx_signed"]]


# --- the terminal -------------------------------------------------------------------------


def print_summary(run: Mapping[str, Any], console: Console) -> None:
    """The end-of-run summary: expectations, attacks, what was committed and lost, speed, nodes, verdict."""
    check_run(run)
    sc = run["scenario"]
    head = Text()
    head.append(sc["title"] or sc["name"], style="bold")
    head.append(
        "  (%s, profile %s, seed %s)" % (sc["name"], sc["profile"], sc["seed"]), style="dim"
    )
    console.rule(head)
    if sc["description"]:
        console.print(Text(sc["description"]), style="dim")
    console.print(
        Text(
            "scenario %s s, ran %s s from %s; store %s, broker %s"
            % (
                _num(sc["duration_s"], 0),
                _num(run["wall_s"], 1),
                run["started_at"],
                redact_url(run["store"]),
                redact_url(run["broker"]),
            )
        ),
        style="dim",
    )

    t = Table(title="Expectations", title_justify="left", expand=False)
    t.add_column("expectation", overflow="fold")
    t.add_column("", justify="center", no_wrap=True)
    t.add_column("detail", overflow="fold")
    for e in run["expectations"]:
        mark = Text("met", style="green") if e["met"] else Text("NOT MET", style="bold red")
        t.add_row(Text(e["name"]), mark, Text(_detail(e["detail"])))
    if run["expectations"]:
        console.print(t)
    else:
        console.print(Text("No expectations in this scenario.", style="yellow"))

    if run["attacks"] and console.width < WIDE_TERMINAL:
        _print_attack_lines(run["attacks"], console)
    elif run["attacks"]:
        t = Table(title="Attacks", title_justify="left")
        for col, just in (
            ("attack", "left"),
            ("kind", "left"),
            ("at", "right"),
            ("target", "left"),
            ("injected", "right"),
            ("rejected", "right"),
            ("flagged", "right"),
            ("outcome", "left"),
            ("reasons", "left"),
            ("flags", "left"),
        ):
            t.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
        for a in run["attacks"]:
            outcome = Text(_attack_outcome(a), style="green" if a["detected"] else "bold red")
            t.add_row(
                Text(a["name"]),
                Text(a["kind"]),
                "%.1f s" % a["at_s"],
                Text(a["target"]),
                _num(a["injected"]),
                _num(a["rejected"]),
                _num(a["flagged"]),
                outcome,
                Text(_counts(a["reasons"])),
                Text(_counts(a["flags"])),
            )
        console.print(t)

    tot = run["totals"]
    lat = run["latency_ms"]
    t = Table(title="Ledger and speed", title_justify="left", show_header=False)
    t.add_column("", style="dim")
    t.add_column("", justify="right")
    t.add_row("transactions", _num(tot["transactions"]))
    t.add_row("committed", _num(tot["committed"]))
    t.add_row("rejected", _num(tot["rejected"]))
    t.add_row("readings committed", _num(tot["readings"]))
    t.add_row("flags raised", _num(tot["flags"]))
    t.add_row("ingest rate", _num(float(run["ingest_tx_per_s"]), 1, "tx/s"))
    t.add_row(
        "latency p50 / p99 / max",
        "%s / %s / %s ms" % (_num(lat["p50"]), _num(lat["p99"]), _num(lat["max"])),
    )
    console.print(t)
    lost = tot["lost"]
    if lost:
        console.print(
            Panel(
                Text("LOST: %s legitimate transaction(s)" % _num(lost), style="bold red"),
                border_style="red",
                expand=False,
            )
        )
    else:
        console.print(
            Panel(
                Text("Lost: 0 legitimate transactions", style="bold green"),
                border_style="green",
                expand=False,
            )
        )

    nodes = run["light_nodes"]
    if nodes:
        _print_nodes(nodes, console)

    if run["detections"]:
        kinds = Counter(d["kind"] for d in run["detections"])
        console.print(Text("Detections: %d (%s)" % (len(run["detections"]), _counts(kinds))))

    ok, line = _verdict(run)
    console.print(Text(line, style="bold white on green" if ok else "bold white on red"))


def _print_attack_lines(attacks: Sequence[Mapping[str, Any]], console: Console) -> None:
    """Attacks one per paragraph: on a narrow terminal a ten-column table is all ellipses."""
    console.print(Text("Attacks", style="italic"))
    for a in attacks:
        line = Text("  ")
        line.append(a["name"], style="bold")
        line.append(" (%s at %.1f s on " % (a["kind"], a["at_s"]))
        line.append(a["target"])
        line.append("): ")
        line.append(_attack_outcome(a), style="green" if a["detected"] else "bold red")
        line.append(
            "; %s injected, %s rejected, %s flagged"
            % (_num(a["injected"]), _num(a["rejected"]), _num(a["flagged"]))
        )
        if a["reasons"]:
            line.append("; reasons " + _counts(a["reasons"]))
        if a["flags"]:
            line.append("; flags " + _counts(a["flags"]))
        console.print(line)


def _print_nodes(nodes: Sequence[Mapping[str, Any]], console: Console) -> None:
    if len(nodes) <= MAX_NODE_ROWS_TERMINAL:
        t = Table(title="Light nodes", title_justify="left")
        # The device id is the column a narrow terminal can spare: the name says which node.
        wide = console.width >= 100
        cols = ("name", "device", "kind", "board", "signed", "committed", "readings", "lost")
        for col in cols if wide else tuple(c for c in cols if c != "device"):
            t.add_column(
                col,
                justify="left" if col in ("name", "device", "kind", "board") else "right",
                overflow="fold",
            )
        for n in nodes:
            board = n["board"] + (" (firmware)" if n["firmware"] else "")
            t.add_row(
                Text(n["name"]),
                *([Text(n["device_id"])] if wide else []),
                Text(n["device_kind"]),
                Text(board),
                _num(n["tx_signed"]),
                _num(n["tx_committed"]),
                _num(n["readings"]),
                Text(_num(n["lost"]), style="bold red" if n["lost"] else ""),
            )
        console.print(t)
        return
    t = Table(title="Light nodes: %d, by kind" % len(nodes), title_justify="left")
    for col in ("kind", "board", "nodes", "signed", "committed", "readings", "lost"):
        t.add_column(col, justify="left" if col in ("kind", "board") else "right", overflow="fold")
    for g in _node_groups(nodes):
        board = g["board"] + (" (firmware)" if g["firmware"] else "")
        t.add_row(
            Text(g["device_kind"]),
            Text(board),
            _num(g["count"]),
            _num(g["tx_signed"]),
            _num(g["tx_committed"]),
            _num(g["readings"]),
            Text(_num(g["lost"]), style="bold red" if g["lost"] else ""),
        )
    console.print(t)
    bad = _troubled(nodes)
    if bad:
        shown = ", ".join(
            "%s (%d lost, %d/%d committed)"
            % (n["name"], n["lost"], n["tx_committed"], n["tx_signed"])
            for n in bad[:MAX_NODE_ROWS_TERMINAL]
        )
        more = (
            " and %d more" % (len(bad) - MAX_NODE_ROWS_TERMINAL)
            if len(bad) > MAX_NODE_ROWS_TERMINAL
            else ""
        )
        console.print(Text("Not all committed: " + shown + more, style="red"))


# --- plots --------------------------------------------------------------------------------


def _label(s: str, width: int = 32) -> str:
    """A run string short enough for a plot (mathtext is off while plotting: a '$' stays a '$')."""
    return s if len(s) <= width else s[: width - 1] + "…"


def _array(values: Sequence[Any]) -> Any:
    import numpy as np

    return np.array([math.nan if v is None else v for v in values], dtype=float)


def _envelope(t: Any, ys: list[Any], max_points: int = MAX_PLOT_POINTS) -> tuple[Any, list[Any]]:
    """``t`` and each of ``ys`` cut to at most ``max_points``: each bucket's min and max, so steps and spikes stay."""
    import numpy as np

    n = len(t)
    if n <= max_points:
        return t, ys
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    starts = edges[:-1]
    tt = np.empty(2 * buckets)
    tt[0::2] = t[starts]
    tt[1::2] = t[edges[1:] - 1]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for y in ys:
            yy = np.empty(2 * buckets)
            yy[0::2] = np.fmin.reduceat(y, starts)  # fmin/fmax skip NaN (a gap) unless all of it is
            yy[1::2] = np.fmax.reduceat(y, starts)
            out.append(yy)
    return tt, out


def _line(t: Any, y: Any, wrap: bool = False) -> tuple[Any, Any]:
    """What to draw of one series: decimated, its gaps kept as breaks, an angle broken where it wraps.

    A series may be sparse (a value every few grid points) or have gaps (a
    communications loss): points are joined across the usual spacing, broken
    across a gap of more than five times it.
    """
    import numpy as np

    tt, (yy,) = _envelope(t, [y])
    keep = np.isfinite(yy)
    tt, yy = tt[keep], yy[keep]
    if len(tt) < 3:
        return tt, yy
    dt = np.diff(tt)
    cut = dt > 5.0 * float(dt.mean())
    if wrap:
        cut |= np.abs(np.diff(yy)) > 180.0
    where = np.nonzero(cut)[0] + 1
    if len(where):
        tt = np.insert(tt, where, (tt[where - 1] + tt[where]) / 2.0)
        yy = np.insert(yy, where, math.nan)
    return tt, yy


def _at(t: Any, y: Any, x: float) -> float:
    """The series' value at time ``x`` (NaN if it has none)."""
    import numpy as np

    keep = np.isfinite(y)
    return float(np.interp(x, t[keep], y[keep])) if keep.any() else math.nan


def _png(fig: Any) -> tuple[str, int, int]:
    """The figure as a base64 PNG, and its size in pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    buf = io.BytesIO()
    canvas.print_png(buf, metadata={"Software": None})
    w, h = canvas.get_width_height()
    return base64.b64encode(buf.getvalue()).decode("ascii"), int(w), int(h)


def _new_figure(width_in: float, height_in: float, rows: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    # A Figure of its own, not pyplot: nothing is kept between calls or between threads.
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.tick_params(labelsize=10)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    return fig, list(axes)


def _legend(ax: Any, title: str | None = None) -> None:
    """The legend beside the plot, never over the data."""
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.005, 1.0),
        fontsize=9,
        title=title,
        title_fontsize=9,
        borderaxespad=0.0,
        frameon=False,
    )


def _run_span(run: Mapping[str, Any]) -> float:
    ends = [float(run["scenario"]["duration_s"])]
    if run["series"]["t_s"]:
        ends.append(float(run["series"]["t_s"][-1]))
    if run["ingest"]["t_s"]:
        ends.append(float(run["ingest"]["t_s"][-1]))
    ends += [float(e["t_s"]) for e in run["timeline"]] + [
        float(d["t_s"]) for d in run["detections"]
    ]
    return max(ends) if ends else 1.0


def _mark_events(ax: Any, run: Mapping[str, Any]) -> None:
    """Grid events as thin grey lines and attacks as red ones, behind the signals."""
    for e in run["timeline"][:MAX_MARKED_EVENTS]:
        ax.axvline(e["t_s"], color="#999999", linewidth=0.7, linestyle=":", zorder=0)
    for a in run["attacks"]:
        ax.axvline(a["at_s"], color="#c62828", linewidth=1.0, linestyle="--", zorder=0)


class _Plot:
    def __init__(self, title: str, alt: str, png: str, w: int, h: int, caption: str) -> None:
        self.title, self.alt, self.png, self.w, self.h, self.caption = (
            title,
            alt,
            png,
            w,
            h,
            caption,
        )


def _series(run: Mapping[str, Any], quantity: str) -> tuple[Any, dict[str, Any]]:
    return _array(run["series"]["t_s"]), {
        k: _array(v) for k, v in sorted(run["series"][quantity].items())
    }


def _plot_frequency(run: Mapping[str, Any]) -> _Plot | None:
    import numpy as np

    t, ys = _series(run, "frequency_hz")
    if not ys or not len(t):
        return None
    fig, (ax,) = _new_figure(11, 4.2)
    names = list(ys)
    for name in names:
        ax.plot(*_line(t, ys[name]), linewidth=1.0, label=_label(name))
    _mark_events(ax, run)
    ax.set_xlim(0, _run_span(run))
    ax.set_xlabel("Time since the start of the run (s)", fontsize=11)
    ax.set_ylabel("Frequency (Hz)", fontsize=11)
    ax.set_title("Grid frequency measured by each PMU", fontsize=12)
    _legend(ax, title="PMU")
    png, w, h = _png(fig)
    allv = np.concatenate(list(ys.values()))
    lo, hi = (np.nanmin(allv), np.nanmax(allv)) if np.isfinite(allv).any() else (math.nan, math.nan)
    alt = (
        "Line plot of grid frequency in hertz against time in seconds for %d PMU(s) (%s); values from %.3f to %.3f Hz; dotted lines mark grid events, dashed red lines attacks."
        % (len(names), ", ".join(names), lo, hi)
    )
    return _Plot(
        "Frequency",
        alt,
        png,
        w,
        h,
        "Frequency per PMU. Dotted grey: grid and device events; dashed red: attacks begin.",
    )


_FLAG_MARKERS = ("v", "^", "s", "D", "P", "X", "o", "*")


def _plot_angles(run: Mapping[str, Any]) -> _Plot | None:

    t, ys = _series(run, "angle_deg")
    if not ys or not len(t):
        return None
    names = list(ys)
    # The reference is a PMU no flag names, so the spoofed one is the curve that moves.
    where = _device_series_names(run, names)
    flagged = {where.get(d["device"]) for d in run["detections"]}
    ref = next((n for n in names if n not in flagged), names[0])
    rows = 2 if len(names) > 1 else 1
    fig, axes = _new_figure(11, 3.4 * rows + 0.6, rows)
    colour = {
        n: "C%d" % (i % 10) for i, n in enumerate(names)
    }  # one PMU, one colour in both panels
    for name in names:
        axes[0].plot(
            *_line(t, ys[name], wrap=True), linewidth=1.0, color=colour[name], label=_label(name)
        )
    axes[0].set_ylabel("Phase angle (deg)", fontsize=11)
    axes[0].set_title("Voltage phase angle per PMU, and detections", fontsize=12)
    axes[0].set_ylim(-185, 185)
    axes[0].set_yticks([-180, -90, 0, 90, 180])
    diffs: dict[str, Any] = {}
    if rows == 2:
        for name in (n for n in names if n != ref):
            # Against the reference, wrapped: a spoofed clock shows as a step or a slope here.
            diffs[name] = (ys[name] - ys[ref] + 180.0) % 360.0 - 180.0
        for name, y in diffs.items():
            axes[1].plot(
                *_line(t, y, wrap=True),
                linewidth=1.0,
                color=colour[name],
                label=_label(name) + " − " + _label(ref, 16),
            )
        axes[1].set_ylabel("Angle against %s (deg)" % _label(ref, 16), fontsize=11)
    # Flags: a marker on the flagged PMU's curve at the flag's time, or at the top if not a PMU.
    kinds = sorted({d["kind"] for d in run["detections"]})
    for k, kind in enumerate(kinds):
        marker = _FLAG_MARKERS[k % len(_FLAG_MARKERS)]
        xs0, ys0, xs1, ys1 = [], [], [], []
        for d in run["detections"]:
            if d["kind"] != kind:
                continue
            pmu = where.get(d["device"])
            x = float(d["t_s"])
            y0 = _at(t, ys[pmu], x) if pmu is not None else math.nan
            xs0.append(x)
            ys0.append(y0 if math.isfinite(y0) else 170.0)
            if pmu is not None and pmu in diffs:
                y1 = _at(t, diffs[pmu], x)
                if math.isfinite(y1):
                    xs1.append(x)
                    ys1.append(y1)
        axes[0].scatter(
            xs0,
            ys0,
            marker=marker,
            s=60,
            color="#d32f2f",
            edgecolors="black",
            linewidths=0.6,
            zorder=5,
            label="flag: " + _label(kind, 24),
        )
        if xs1:
            axes[rows - 1].scatter(
                xs1,
                ys1,
                marker=marker,
                s=60,
                color="#d32f2f",
                edgecolors="black",
                linewidths=0.6,
                zorder=5,
            )
    for ax in axes:
        _mark_events(ax, run)
        _legend(ax)
    axes[-1].set_xlim(0, _run_span(run))
    axes[-1].set_xlabel("Time since the start of the run (s)", fontsize=11)
    png, w, h = _png(fig)
    alt = (
        "Line plots of the voltage phase angle in degrees against time in seconds for %d PMU(s) (%s)%s; red markers show %d time-anomaly flag(s) raised by the full node (%s)."
        % (
            len(names),
            ", ".join(names),
            "" if rows == 1 else ", and below, each PMU's angle against %s" % ref,
            len(run["detections"]),
            ", ".join(kinds) or "none",
        )
    )
    return _Plot(
        "Phase angles and detections",
        alt,
        png,
        w,
        h,
        "Phase angles (wrapped to ±180°); below, each PMU against %s: a spoofed clock "
        "shows as a step or a slope. Red markers: flags the full node raised, on the flagged PMU's curve or, for a device with no angle series, at the top."
        % ref,
    )


def _device_series_names(run: Mapping[str, Any], names: Sequence[str]) -> dict[str, str]:
    """Which series is a detection's device: by series name, or through the light node's name or id."""
    out = {n: n for n in names}
    for node in run["light_nodes"]:
        for key in (node["name"], node["device_id"]):
            if key in names:
                out[node["name"]] = out[node["device_id"]] = key
    return out


def _plot_timeline(run: Mapping[str, Any]) -> _Plot:
    span = _run_span(run)
    # Rows: each kind of event (first seen first), each attack, each kind of flag.
    order: list[str] = []
    for e in sorted(run["timeline"], key=lambda e: e["t_s"]):
        if e["kind"] not in order:
            order.append(e["kind"])
    room = max(
        1, MAX_TIMELINE_ROWS - len(run["attacks"]) - len({d["kind"] for d in run["detections"]})
    )
    kept = set(order[: room - 1] if len(order) > room else order)
    rows: list[str] = [k for k in order if k in kept] + (
        ["other events"] if len(order) > len(kept) else []
    )
    attack_rows = ["attack: " + a["name"] for a in run["attacks"]]
    flag_kinds = sorted({d["kind"] for d in run["detections"]})
    flag_rows = ["flag: " + k for k in flag_kinds]
    labels = rows + attack_rows + flag_rows
    n = max(1, len(labels))
    fig, (ax,) = _new_figure(11, min(9.0, max(3.2, 0.42 * n + 1.6)))
    y_of = {label: n - 1 - i for i, label in enumerate(labels)}
    xs, ys = [], []
    for e in run["timeline"]:
        xs.append(e["t_s"])
        ys.append(y_of[e["kind"] if e["kind"] in kept else "other events"])
    if xs:
        ax.scatter(xs, ys, marker="o", s=36, color="#455a64", zorder=3, label="event")
    for a in run["attacks"]:
        y = y_of["attack: " + a["name"]]
        if a["detected"]:
            after = a["detected_after_s"]
            end = a["at_s"] + (after if after is not None else 0.0)
            ax.plot([a["at_s"], end], [y, y], color="#2e7d32", linewidth=3, zorder=2)
            ax.scatter([end], [y], marker="|", s=300, color="#2e7d32", linewidths=2.5, zorder=4)
            ax.annotate(
                "detected" + ("" if after is None else " in %.1f s" % after),
                (end, y),
                xytext=(6, 5),
                textcoords="offset points",
                fontsize=9,
                color="#2e7d32",
            )
        else:
            ax.plot(
                [a["at_s"], span], [y, y], color="#c62828", linewidth=3, linestyle="--", zorder=2
            )
            ax.annotate(
                "not detected",
                (a["at_s"], y),
                xytext=(6, 5),
                textcoords="offset points",
                fontsize=9,
                color="#c62828",
                fontweight="bold",
            )
        ax.scatter([a["at_s"]], [y], marker="X", s=90, color="#c62828", zorder=5)
    for d in run["detections"]:
        ax.scatter(
            [d["t_s"]],
            [y_of["flag: " + d["kind"]]],
            marker="v",
            s=50,
            color="#ef6c00",
            edgecolors="black",
            linewidths=0.5,
            zorder=4,
        )
    ax.set_yticks(range(n))
    ax.set_yticklabels([_label(s, 30) for s in reversed(labels)] or [""], fontsize=9)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(0, span)
    ax.set_xlabel("Time since the start of the run (s)", fontsize=11)
    ax.set_title("Events, attacks and flags", fontsize=12)
    png, w, h = _png(fig)
    alt = (
        "Timeline of the run over %.0f seconds: %d event(s) by kind (%s), %d attack(s) marked with a red cross at their start and a green bar to their detection or a dashed red line when not detected, and %d flag(s) as orange triangles."
        % (
            span,
            len(run["timeline"]),
            ", ".join(rows) or "none",
            len(run["attacks"]),
            len(run["detections"]),
        )
    )
    return _Plot(
        "Timeline",
        alt,
        png,
        w,
        h,
        "Grey dots: grid and device events. Red cross: an attack begins; green bar: until "
        "it was detected; dashed red: never detected. Orange: flags raised by the full node.",
    )


def _plot_ingest(run: Mapping[str, Any]) -> _Plot | None:
    import numpy as np

    t = _array(run["ingest"]["t_s"])
    if not len(t):
        return None
    y = _array(run["ingest"]["tx_per_s"])
    fig, (ax,) = _new_figure(11, 3.8)
    ax.plot(*_line(t, y), linewidth=1.2, color="C0", label="ingested per second")
    mean = float(run["ingest_tx_per_s"])
    ax.axhline(
        mean, color="C1", linestyle="--", linewidth=1.2, label="run average %.1f tx/s" % mean
    )
    _mark_events(ax, run)
    ax.set_xlim(0, _run_span(run))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("Time since the start of the run (s)", fontsize=11)
    ax.set_ylabel("Ingest rate (tx/s)", fontsize=11)
    ax.set_title("Transactions ingested by the full node", fontsize=12)
    _legend(ax)
    png, w, h = _png(fig)
    peak = float(np.nanmax(y)) if np.isfinite(y).any() else math.nan
    alt = (
        "Line plot of the full node's ingest rate in transactions per second against time in seconds; average %.1f tx/s, peak %.1f tx/s."
        % (mean, peak)
    )
    return _Plot("Ingest rate", alt, png, w, h, "Transactions the full node ingested per second.")


def _plots(run: Mapping[str, Any]) -> list[_Plot]:
    import matplotlib

    # rc_context restores the settings on the way out: nothing leaks to the caller's plots.
    with (
        matplotlib.rc_context(
            {"text.parse_math": False, "font.family": "DejaVu Sans", "svg.fonttype": "none"}
        ),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        out = [_plot_frequency(run), _plot_angles(run), _plot_timeline(run), _plot_ingest(run)]
    return [p for p in out if p is not None]


# --- HTML ---------------------------------------------------------------------------------


class _Raw(str):
    """HTML made here, not from the record: put in as it is."""


def _e(s: Any) -> str:
    return s if isinstance(s, _Raw) else html.escape(str(s), quote=True)


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Sequence[int] = (),
    row_class: Sequence[str] | None = None,
) -> str:
    out = ["<table><thead><tr>"]
    out += [
        "<th%s>%s</th>" % (' class="n"' if i in numeric else "", _e(h))
        for i, h in enumerate(headers)
    ]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        cls = row_class[r] if row_class else ""
        out.append('<tr class="%s">' % cls if cls else "<tr>")
        out += [
            "<td%s>%s</td>" % (' class="n"' if i in numeric else "", _e(c))
            for i, c in enumerate(row)
        ]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _cut_note(shown: int, total: int, what: str) -> str:
    if total <= shown:
        return ""
    return '<p class="note">The first %d of %d %s; all of them are in run.json.</p>' % (
        shown,
        total,
        what,
    )


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
color:#1b1f23;background:#f6f7f9;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:28px 0 8px;border-bottom:1px solid #d0d4da;padding-bottom:4px}
.sub{color:#57606a;margin:0 0 12px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0;font-size:.92em}
dl.meta dt{color:#57606a}dl.meta dd{margin:0;word-break:break-all}
.verdict{font-size:1.25em;font-weight:700;padding:12px 16px;border-radius:6px;margin:16px 0;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.card{background:#fff;border:1px solid #d0d4da;border-radius:6px;padding:10px 14px;min-width:130px}
.card .v{font-size:1.35em;font-weight:700}.card .k{color:#57606a;font-size:.85em}
.card.lost0{border-color:#2e7d32;background:#e8f5e9}.card.lost{border-color:#c62828;background:#ffebee;color:#b71c1c}
table{border-collapse:collapse;background:#fff;font-size:.9em;margin:6px 0;width:100%}
th,td{border:1px solid #d0d4da;padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#eef0f3}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.bad td{background:#ffebee}tr.good td:first-child{border-left:4px solid #2e7d32}tr.bad td:first-child{border-left:4px solid #c62828}
figure{background:#fff;border:1px solid #d0d4da;border-radius:6px;margin:12px 0;padding:8px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#57606a;font-size:.9em;margin-top:4px}
.note{color:#57606a;font-size:.88em}
footer{color:#8b949e;font-size:.8em;margin-top:32px}
"""


def render_html(run: Mapping[str, Any], path: str | Path) -> Path:
    """Write the run's report to ``path`` as one self-contained HTML file; the path written."""
    check_run(run)
    out = Path(path)
    doc = _document(run, _plots(run))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a report
    return out


def _document(run: Mapping[str, Any], plots: Sequence[_Plot]) -> str:
    sc = run["scenario"]
    ok, verdict = _verdict(run)
    tot = run["totals"]
    lat = run["latency_ms"]
    p: list[str] = []
    w = p.append
    w('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
    # The file may come from someone else: nothing in it may run or fetch anything.
    w(
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
    )
    w('<meta name="viewport" content="width=device-width, initial-scale=1">')
    w('<link rel="icon" href="data:,">')
    w("<title>%s — lightnode simulation report</title>" % _e(sc["title"] or sc["name"]))
    w("<style>%s</style></head><body><main>" % _CSS)
    w("<h1>%s</h1>" % _e(sc["title"] or sc["name"]))
    if sc["description"]:
        w('<p class="sub">%s</p>' % _e(sc["description"]))
    meta = [
        ("scenario", sc["name"]),
        ("profile", sc["profile"]),
        ("seed", sc["seed"]),
        ("duration", "%s s" % _num(sc["duration_s"], 0)),
        ("started", run["started_at"]),
        ("ran for", "%s s" % _num(run["wall_s"], 1)),
        ("store", redact_url(run["store"])),
        ("broker", redact_url(run["broker"])),
    ]
    w(
        '<dl class="meta">%s</dl>'
        % "".join("<dt>%s</dt><dd>%s</dd>" % (_e(k), _e(v)) for k, v in meta)
    )
    w('<div class="verdict %s">%s</div>' % ("pass" if ok else "fail", _e(verdict)))

    lost = tot["lost"]
    cards = [
        ("transactions", _num(tot["transactions"]), ""),
        ("committed", _num(tot["committed"]), ""),
        ("rejected", _num(tot["rejected"]), ""),
        ("readings committed", _num(tot["readings"]), ""),
        ("flags", _num(tot["flags"]), ""),
        ("legitimate transactions lost", _num(lost), "lost" if lost else "lost0"),
        ("ingest rate", _num(float(run["ingest_tx_per_s"]), 1, "tx/s"), ""),
        ("latency p50", _num(lat["p50"], 0, "ms"), ""),
        ("latency p99", _num(lat["p99"], 0, "ms"), ""),
        ("latency max", _num(lat["max"], 0, "ms"), ""),
    ]
    w(
        '<div class="cards">%s</div>'
        % "".join(
            '<div class="card %s"><div class="v">%s</div><div class="k">%s</div></div>'
            % (c, _e(v), _e(k))
            for k, v, c in cards
        )
    )

    w("<h2>Expectations</h2>")
    exps = run["expectations"]
    if exps:
        w(
            _table(
                ["expectation", "result", "detail"],
                [(e["name"], "met" if e["met"] else "NOT MET", _detail(e["detail"])) for e in exps],
                row_class=["good" if e["met"] else "bad" for e in exps],
            )
        )
    else:
        w('<p class="note">This scenario states no expectations.</p>')

    w("<h2>Attacks</h2>")
    atk = run["attacks"]
    if atk:
        w(
            _table(
                [
                    "attack",
                    "kind",
                    "at (s)",
                    "target",
                    "injected",
                    "rejected",
                    "flagged",
                    "outcome",
                    "reasons",
                    "flags",
                ],
                [
                    (
                        a["name"],
                        a["kind"],
                        "%.1f" % a["at_s"],
                        a["target"],
                        _num(a["injected"]),
                        _num(a["rejected"]),
                        _num(a["flagged"]),
                        _attack_outcome(a),
                        _counts(a["reasons"]),
                        _counts(a["flags"]),
                    )
                    for a in atk
                ],
                numeric=(2, 4, 5, 6),
                row_class=["good" if a["detected"] else "bad" for a in atk],
            )
        )
    else:
        w('<p class="note">No attack in this scenario.</p>')

    w("<h2>Plots</h2>")
    for pl in plots:
        w(
            '<figure><img src="data:image/png;base64,%s" width="%d" height="%d" alt="%s">'
            "<figcaption><strong>%s.</strong> %s</figcaption></figure>"
            % (pl.png, pl.w, pl.h, _e(pl.alt), _e(pl.title), _e(pl.caption))
        )
    if not run["series"]["frequency_hz"] and not run["series"]["angle_deg"]:
        w('<p class="note">No PMU in this run: no frequency or angle series to plot.</p>')

    w("<h2>Light nodes</h2>")
    w(_nodes_html(run["light_nodes"]))

    dets = run["detections"]
    w("<h2>Detections (%d)</h2>" % len(dets))
    if dets:
        shown = dets[:MAX_TABLE_ROWS]
        w(
            _table(
                ["time (s)", "flag", "device", "detail"],
                [("%.2f" % d["t_s"], d["kind"], d["device"], _detail(d["detail"])) for d in shown],
                numeric=(0,),
            )
        )
        w(_cut_note(len(shown), len(dets), "detections"))
    else:
        w('<p class="note">The full node raised no flag.</p>')

    tl = run["timeline"]
    w("<h2>Timeline (%d)</h2>" % len(tl))
    if tl:
        shown = sorted(tl, key=lambda e: e["t_s"])[:MAX_TABLE_ROWS]
        w(
            _table(
                ["time (s)", "kind", "source", "detail"],
                [("%.2f" % e["t_s"], e["kind"], e["source"], _detail(e["detail"])) for e in shown],
                numeric=(0,),
            )
        )
        w(_cut_note(len(shown), len(tl), "timeline entries"))
    w(
        "<footer>lightnode simulation report, written %s.</footer>"
        % _e(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    )
    w("</main></body></html>\n")
    return "".join(p)


def _nodes_html(nodes: Sequence[Mapping[str, Any]]) -> str:
    if not nodes:
        return '<p class="note">No light node in this run.</p>'
    cols = ["name", "device id", "kind", "board", "signed", "committed", "readings", "lost"]

    def row(n: Mapping[str, Any]) -> tuple[Any, ...]:
        board = n["board"] + (" (firmware)" if n["firmware"] else "")
        return (
            n["name"],
            n["device_id"],
            n["device_kind"],
            board,
            _num(n["tx_signed"]),
            _num(n["tx_committed"]),
            _num(n["readings"]),
            _num(n["lost"]),
        )

    def cls(n: Mapping[str, Any]) -> str:
        return "bad" if n["lost"] or n["tx_committed"] < n["tx_signed"] else ""

    if len(nodes) <= MAX_NODE_ROWS:
        return _table(
            cols, [row(n) for n in nodes], numeric=(4, 5, 6, 7), row_class=[cls(n) for n in nodes]
        )
    groups = _node_groups(nodes)
    out = ['<p class="note">%d light nodes, grouped by kind and board.</p>' % len(nodes)]
    out.append(
        _table(
            ["kind", "board", "nodes", "signed", "committed", "readings", "lost"],
            [
                (
                    g["device_kind"],
                    g["board"] + (" (firmware)" if g["firmware"] else ""),
                    _num(g["count"]),
                    _num(g["tx_signed"]),
                    _num(g["tx_committed"]),
                    _num(g["readings"]),
                    _num(g["lost"]),
                )
                for g in groups
            ],
            numeric=(2, 3, 4, 5, 6),
            row_class=["bad" if g["lost"] else "" for g in groups],
        )
    )
    bad = _troubled(nodes)
    if bad:
        shown = bad[:MAX_NODE_ROWS]
        out.append("<p>Light nodes with transactions not committed or lost:</p>")
        out.append(
            _table(
                cols, [row(n) for n in shown], numeric=(4, 5, 6, 7), row_class=["bad"] * len(shown)
            )
        )
        out.append(_cut_note(len(shown), len(bad), "such light nodes"))
    return "".join(out)
