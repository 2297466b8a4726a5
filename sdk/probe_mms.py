"""``lightnode probe mms``: associate with an IEC 61850 server and show what it has.

    lightnode probe mms 192.0.2.10:102 --discover
    lightnode probe mms 192.0.2.10:102 --read RELAYMEAS/MMXU1.Hz --fc MX
    lightnode probe mms 192.0.2.10:102 --report RELAYPROT/LLN0.BR.brcbEV01 --seconds 10
    lightnode probe mms 192.0.2.10:102 --discover --json --on micropython

``--on micropython`` runs the same driver code (``lightnode.drivers.iec61850``)
inside the MicroPython unix port at a board's heap budget.
"""

from __future__ import annotations

import json
from typing import Any

import click

EXIT_ERROR = 1

# The device side: the same calls, inside MicroPython; one JSON result.
DEVICE_SCRIPT = """
from lightnode.drivers.iec61850 import client, probe, errors
action, a1, a2 = cfg["action"], cfg["a1"], cfg["a2"]
try:
    m = client.MmsClient(cfg["host"], cfg["port"], timeout_ms=cfg["timeout_ms"])
    try:
        if action == "discover":
            out = probe.discover(m)
        elif action == "read":
            out = probe.read(m, a1, a2)
        else:
            out = probe.report(m, a1, float(a2), emit=lambda p: mp_result({"report": p}), keep=0)
    finally:
        try:
            m.close()
        except errors.MmsError:
            pass
    mp_result({"ok": out})
except errors.MmsTimeout as e:
    mp_result({"error": "timeout: %s" % e})
except errors.MmsError as e:
    mp_result({"error": "%s: %s" % (type(e).__name__, e)})
except ValueError as e:
    mp_result({"error": "bad argument: %s" % e})
"""


def _split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep:
        return target, 102
    try:
        return host, int(port)
    except ValueError:
        raise click.BadParameter("%r is not HOST:PORT" % target) from None


def _fail(msg: str) -> None:
    click.echo("mms: %s" % msg, err=True)
    raise SystemExit(EXIT_ERROR)


def _show_value(v: Any, indent: str = "  ") -> list[str]:
    if isinstance(v, list):
        out = []
        for i, x in enumerate(v):
            if isinstance(x, list):
                out.append("%s[%d]" % (indent, i))
                out += _show_value(x, indent + "  ")
            else:
                out.append("%s[%d] %s" % (indent, i, _scalar(x)))
        return out
    return [indent + _scalar(v)]


def _scalar(x: Any) -> str:
    import time

    if isinstance(x, dict) and "utc" in x:
        t = x["utc"]
        return "%s.%03dZ (time quality 0x%02x)" % (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))), int(t % 1 * 1000), x["tq"])
    if isinstance(x, dict) and "bits" in x:
        return "bits %s" % format(int(x["bits"]), "0%db" % max(1, int(x["size"])))[::-1]
    if isinstance(x, dict) and "hex" in x:
        return "0x" + x["hex"]
    if isinstance(x, float):
        return "%.6g" % x
    return repr(x) if isinstance(x, str) else str(x)


def _report_line(p: dict) -> str:
    vals = "; ".join("#%d %s" % (m["index"], " ".join(s.strip() for s in _show_value(m["value"])))
                     for m in p["members"])
    gap = "  MISSED %d" % p["gap"] if p["gap"] else ""
    entry = " entry %s" % p["entry_id"]["hex"] if p.get("entry_id") else ""
    return "seq %s%s%s: %s" % (p["seq"], entry, gap, vals)


def _human(action: str, out: dict) -> str:
    if action == "discover":
        lines = ["negotiated PDU %(max_pdu)d bytes, %(outstanding)d outstanding, nesting %(nesting)d"
                 % out["params"]]
        for ld, d in out["devices"].items():
            lines.append(ld)
            lines.append("  logical nodes: %s" % ", ".join(d["nodes"]))
            lines.append("  data sets: %s" % (", ".join(d["data_sets"]) or "none"))
        return "\n".join(lines)
    if action == "read":
        return "\n".join(["%s [%s]" % (out["ref"], out["fc"])] + _show_value(out["value"]))
    return "%s: %d reports, %d with a missed sequence number, %d dropped" % (
        out["rcb"], out["count"], out["gaps"], out["dropped"])


def _run_cpython(host: str, port: int, action: str, a1: str, a2: str, timeout_ms: int,
                 emit: Any) -> dict:
    from lightnode.drivers.iec61850 import client, errors, probe

    try:
        m = client.MmsClient(host, port, timeout_ms=timeout_ms)
        try:
            if action == "discover":
                return probe.discover(m)
            if action == "read":
                return probe.read(m, a1, a2)
            return probe.report(m, a1, float(a2), emit=emit)
        finally:
            try:
                m.close()
            except errors.MmsError:
                pass
    except errors.MmsTimeout as e:
        _fail("timeout: %s" % e)
    except errors.MmsError as e:
        _fail("%s: %s" % (type(e).__name__, e))
    except ValueError as e:
        _fail("bad argument: %s" % e)
    raise AssertionError("unreachable")


def _run_micropython(host: str, port: int, action: str, a1: str, a2: str, timeout_ms: int,
                     board: str, emit: Any) -> dict:
    from lightnode.errors import HarnessError
    from lightnode.probe import device_failure, run_device

    settings = {"host": host, "port": port, "action": action, "a1": a1, "a2": a2, "timeout_ms": timeout_ms}
    try:
        run = run_device(DEVICE_SCRIPT, settings, board=board,
                         timeout=timeout_ms / 1000 * 4 + float(a2 if action == "report" else 0) + 30)
    except HarnessError as e:
        _fail("MicroPython: %s" % str(e).splitlines()[0])
    reports = [r["report"] for r in run.results if "report" in r]
    if emit is not None:
        for p in reports:
            emit(p)
    failure = device_failure(run)
    if failure:
        _fail(failure)
    done = [r["ok"] for r in run.results if "ok" in r]
    if not done:
        _fail("MicroPython run ended without a result")
    out = dict(done[0])
    if action == "report":
        out["reports"] = reports[:1000]
    return out


@click.command("mms")
@click.argument("target", metavar="HOST:PORT")
@click.option("--discover", is_flag=True, help="List logical devices, their logical nodes and data sets.")
@click.option("--read", "ref", metavar="REF", help="Read an object reference, LD/LN.DO[.DA].")
@click.option("--fc", help="Functional constraint of --read (MX, ST, CF, SP, ...).")
@click.option("--report", "rcb", metavar="RCB", help="Enable a report control block (LD/LLN0.BR.name or .RP.name) and show its reports.")
@click.option("--seconds", default=5.0, show_default=True, help="How long --report listens.")
@click.option("--timeout", "timeout_ms", default=3000, show_default=True, help="Per-request timeout in ms.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--on", "where", type=click.Choice(["cpython", "micropython"]), default="cpython",
              show_default=True, help="Run the driver here, or inside the MicroPython unix port.")
@click.option("--board", default="pico_w", show_default=True, help="Heap budget of --on micropython.")
def mms(target: str, discover: bool, ref: str | None, fc: str | None, rcb: str | None,
        seconds: float, timeout_ms: int, as_json: bool, where: str, board: str) -> None:
    """Talk IEC 61850 MMS to HOST:PORT (default port 102): discover, read, or listen to reports."""
    chosen = [x for x in (discover, ref, rcb) if x]
    if len(chosen) != 1:
        raise click.UsageError("give one of --discover, --read REF --fc FC, --report RCB")
    if ref and not fc:
        raise click.UsageError("--read needs --fc")
    host, port = _split_target(target)
    action = "discover" if discover else "read" if ref else "report"
    a1 = ref or rcb or ""
    a2 = fc if ref else ("%g" % seconds if rcb else "")

    def emit(p: dict) -> None:
        if not as_json:
            click.echo(_report_line(p))

    if where == "micropython":
        out = _run_micropython(host, port, action, a1, a2 or "", timeout_ms, board, emit)
    else:
        out = _run_cpython(host, port, action, a1, a2 or "", timeout_ms, emit)
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(_human(action, out))
