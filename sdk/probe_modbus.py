"""``lightnode probe modbus``: read a Modbus device once, or listen to a bus, and say what came back.

    lightnode probe modbus tcp://10.0.0.7:502 --unit 1 --read input:0:3:f32 --read holding:100:4
    lightnode probe modbus "rtu:///dev/ttyUSB0?baud=9600&parity=E" --unit 1 --read holding:0:2:u32:CDAB
    lightnode probe modbus "rtu:///dev/ttyUSB0?baud=9600" --tap --seconds 10 --json
    lightnode probe modbus tcp://127.0.0.1:5020 --read input:0:1:f32 --on micropython --board pico_w

``--read TABLE:ADDRESS:COUNT[:TYPE[:ORDER]]`` reads COUNT values of TYPE
(default u16; bool for coils and discrete inputs) from ADDRESS. The
reads go through the device drivers (``lightnode.drivers.modbus``), on
CPython or, with ``--on micropython``, inside the unix port at a board's
heap budget. Exit status: 0 when every read was answered, 2 when the
device answered a read with a Modbus exception, 1 on a timeout, a
protocol error or a link that failed (one line on stderr).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import click

EXIT_ERROR = 1
EXIT_EXCEPTION = 2
TABLES = ("coil", "discrete", "holding", "input")

# The device side: the drivers' calls inside MicroPython; one JSON result a read.
DEVICE_SCRIPT = """
import gc
from lightnode.drivers.modbus import master, registers, tap, ModbusError, ExceptionResponse
from lightnode.drivers import link

def open_link():
    if cfg["kind"] == "tcp":
        return link.TcpLink(cfg["host"], cfg["port"], cfg["timeout_ms"])
    return link.StreamLink(open(cfg["path"], "r+b"), cfg["timeout_ms"])

def run():
    if cfg.get("tap"):
        out = []
        for unit, req, res in tap.listen(open_link(), cfg["seconds"], baud=cfg["baud"]):
            out.append(exchange(unit, req, res))
        mp_result({"exchanges": out})
        return
    framing = master.TCP if cfg["kind"] == "tcp" else master.RTU
    connect = open_link if framing == master.TCP else None
    m = master.Master(open_link(), framing, cfg["timeout_ms"], cfg["retries"], baud=cfg["baud"], connect=connect)
    loops = cfg.get("loops", 1)
    every = cfg.get("heap_every", 0)
    heap = [0] * (loops // every if every else 0)  # allocated before the loop it measures
    gc.collect()
    base = gc.mem_alloc()
    last = [None] * len(cfg["reads"])
    for i in range(loops):
        for j in range(len(cfg["reads"])):
            table, address, count, type_, order = cfg["reads"][j]
            n = registers.count(type_)
            got = m.read(cfg["unit"], table, address, count * n)
            if isinstance(got, ExceptionResponse):
                last[j] = {"exception": [got.function, got.code, got.name]}
            else:
                last[j] = {"values": [registers.decode(got, type_, order, k * n) for k in range(count)]}
        if every and (i + 1) % every == 0:
            gc.collect()
            heap[(i + 1) // every - 1] = gc.mem_alloc()
    if every:
        mp_result({"heap": heap, "before": base, "requests": m.requests, "retried": m.retried})
    for r in last:
        mp_result(r)
    m.close()

def exchange(unit, req, res):
    if res is None:
        r = None
    elif isinstance(res, ExceptionResponse):
        r = {"exception": [res.function, res.code, res.name]}
    else:
        r = list(res) if isinstance(res, list) else list(res)
    arg = req[2] if not isinstance(req[2], list) else list(req[2])
    return {"unit": unit, "function": req[0], "address": req[1], "arg": arg, "result": r}

try:
    run()
except ModbusError as e:
    mp_result({"error": "%s: %s" % (type(e).__name__, e)})
except link.LinkError as e:
    mp_result({"error": "%s: %s" % (type(e).__name__, e)})
except OSError as e:
    mp_result({"error": "cannot open the line: %s" % e})
"""


def run_on_device(cfg: dict[str, Any], board: str = "pico_w", timeout: float = 120) -> Any:
    """DEVICE_SCRIPT with ``cfg`` inside the unix port at ``board``'s heap budget; the harness's Run."""
    from lightnode.probe import run_device

    return run_device(DEVICE_SCRIPT, cfg, board=board, timeout=timeout)


def parse_target(target: str) -> dict[str, Any]:
    """``tcp://HOST:PORT`` or ``rtu:///dev/X?baud=9600&parity=E&stop=1`` as a link description."""
    u = urlparse(target)
    if u.scheme == "tcp":
        if not u.hostname:
            raise click.BadParameter("%r: give tcp://HOST:PORT" % target)
        try:
            port = u.port or 502
        except ValueError:
            raise click.BadParameter("%r: the port is not a number" % target) from None
        return {"kind": "tcp", "host": u.hostname, "port": port, "baud": 9600}
    if u.scheme == "rtu":
        if not u.path:
            raise click.BadParameter("%r: give rtu:///dev/ttyX?baud=9600&parity=E" % target)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        from lightnode.drivers.modbus import rtu

        baud, parity, stop = rtu.DEFAULT_LINE
        try:
            baud = int(q.get("baud", baud))
            stop = int(q.get("stop", stop))
        except ValueError:
            raise click.BadParameter("%r: baud and stop are numbers" % target) from None
        parity = q.get("parity", parity).upper()
        if parity not in ("N", "E", "O") or stop not in (1, 2):
            raise click.BadParameter("%r: parity is N, E or O; stop is 1 or 2" % target)
        return {"kind": "rtu", "path": u.path, "baud": baud, "parity": parity, "stop": stop}
    raise click.BadParameter("%r: the target is tcp://HOST:PORT or rtu:///dev/ttyX?baud=..." % target)


def parse_read(spec: str) -> tuple[str, int, int, str, str]:
    """``TABLE:ADDRESS:COUNT[:TYPE[:ORDER]]`` as (table, address, count, type, order)."""
    from lightnode.drivers.modbus import registers

    parts = spec.split(":")
    if not 3 <= len(parts) <= 5 or parts[0] not in TABLES:
        raise click.BadParameter("%r: give TABLE:ADDRESS:COUNT[:TYPE[:ORDER]], TABLE one of %s"
                                 % (spec, ", ".join(TABLES)))
    try:
        address, count = int(parts[1], 0), int(parts[2], 0)
    except ValueError:
        raise click.BadParameter("%r: address and count are numbers" % spec) from None
    bits = parts[0] in ("coil", "discrete")
    type_ = parts[3] if len(parts) > 3 else ("bool" if bits else "u16")
    order = parts[4].upper() if len(parts) > 4 else "ABCD"
    if bits and type_ != "bool":
        raise click.BadParameter("%r: coils and discrete inputs are bool" % spec)
    if not bits and type_ not in registers.TYPES:
        raise click.BadParameter("%r: type is one of %s" % (spec, ", ".join(registers.TYPES)))
    if order not in registers.ORDERS:
        raise click.BadParameter("%r: order is one of %s" % (spec, ", ".join(registers.ORDERS)))
    if count < 1 or not 0 <= address <= 65535:
        raise click.BadParameter("%r: address 0-65535, count at least 1" % spec)
    return parts[0], address, count, type_, order


def _fail(msg: str) -> None:
    click.echo("modbus: %s" % msg, err=True)
    raise SystemExit(EXIT_ERROR)


def _open_link(cfg: dict[str, Any]) -> Any:
    from lightnode.drivers import link

    if cfg["kind"] == "tcp":
        return link.TcpLink(cfg["host"], cfg["port"], cfg["timeout_ms"])
    import serial

    try:
        port = serial.Serial(cfg["path"], baudrate=cfg["baud"], parity=cfg["parity"],
                             stopbits=cfg["stop"], timeout=0)
    except (serial.SerialException, OSError) as e:
        raise link.LinkError("cannot open %s: %s" % (cfg["path"], e)) from e
    return link.StreamLink(port, cfg["timeout_ms"])


def _reads_here(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from lightnode.drivers.modbus import ExceptionResponse, master, registers

    framing = master.TCP if cfg["kind"] == "tcp" else master.RTU
    m = master.Master(_open_link(cfg), framing, cfg["timeout_ms"], cfg["retries"], baud=cfg["baud"],
                      connect=(lambda: _open_link(cfg)) if framing == master.TCP else None)
    out: list[dict[str, Any]] = []
    try:
        for table, address, count, type_, order in cfg["reads"]:
            n = registers.count(type_)
            got = m.read(cfg["unit"], table, address, count * n)
            if isinstance(got, ExceptionResponse):
                out.append({"exception": [got.function, got.code, got.name]})
            else:
                out.append({"values": [registers.decode(got, type_, order, k * n) for k in range(count)]})
    finally:
        m.close()
    return out


def _tap_here(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from lightnode.drivers.modbus import ExceptionResponse, tap

    out = []
    for unit, req, res in tap.listen(_open_link(cfg), cfg["seconds"], baud=cfg["baud"]):
        result: Any
        if res is None:
            result = None
        elif isinstance(res, ExceptionResponse):
            result = {"exception": [res.function, res.code, res.name]}
        else:
            result = list(res)
        arg = list(req[2]) if isinstance(req[2], list) else req[2]
        out.append({"unit": unit, "function": req[0], "address": req[1], "arg": arg, "result": result})
    return out


_FUNCTION_WORDS = {1: "read coils", 2: "read discrete inputs", 3: "read holding", 4: "read input",
                   5: "write coil", 6: "write register", 15: "write coils", 16: "write registers"}


def _show_value(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return "%.6g" % v
    return str(v)


@click.command()
@click.argument("target")
@click.option("--unit", default=1, show_default=True, type=click.IntRange(0, 255), help="Modbus unit (slave) address.")
@click.option("--read", "reads", multiple=True, metavar="TABLE:ADDR:COUNT[:TYPE[:ORDER]]",
              help="What to read (repeatable): table coil, discrete, holding or input; "
                   "type u16 s16 u32 s32 u64 s64 f32 f64; order ABCD DCBA BADC CDAB.")
@click.option("--tap", is_flag=True, help="Only listen (RTU): print the request/response pairs on the bus.")
@click.option("--seconds", default=10.0, show_default=True, type=float, help="How long --tap listens.")
@click.option("--timeout-ms", default=1000, show_default=True, type=click.IntRange(1, 60000), help="Answer timeout.")
@click.option("--retries", default=1, show_default=True, type=click.IntRange(0, 10))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--on", "where", type=click.Choice(["cpython", "micropython"]), default="cpython",
              show_default=True, help="Run the drivers here, or inside the MicroPython unix port.")
@click.option("--board", default="pico_w", show_default=True, help="Board whose heap budget --on micropython uses.")
def modbus(target: str, unit: int, reads: tuple[str, ...], tap: bool, seconds: float, timeout_ms: int,
           retries: int, as_json: bool, where: str, board: str) -> None:
    """Read a Modbus device (TCP or RTU) once, or listen to an RTU bus without transmitting.

    TARGET is tcp://HOST:PORT or rtu:///dev/ttyUSB0?baud=9600&parity=E&stop=1
    (default line 9600 8E1).
    """
    from lightnode.drivers import link
    from lightnode.drivers.modbus import ModbusError

    cfg = parse_target(target)
    cfg.update(unit=unit, timeout_ms=timeout_ms, retries=retries)
    if tap:
        if cfg["kind"] != "rtu":
            raise click.UsageError("--tap listens to an RTU line: give rtu:///dev/...")
        cfg.update(tap=True, seconds=seconds)
    elif not reads:
        raise click.UsageError("say what to read: --read holding:0:2 (or --tap to listen)")
    cfg["reads"] = [parse_read(r) for r in reads]

    results: list[dict[str, Any]]
    if where == "micropython":
        from lightnode.errors import HarnessError
        from lightnode.probe import device_failure

        try:
            run = run_on_device(cfg, board=board)
        except HarnessError as e:
            _fail("MicroPython run failed: %s" % str(e).splitlines()[0])
        failure = device_failure(run)
        if failure:
            _fail(failure)
        results = list(run.results)
        if tap:
            results = [r for r in results if "exchanges" in r][0]["exchanges"]
    else:
        try:
            results = _tap_here(cfg) if tap else _reads_here(cfg)
        except ModbusError as e:
            _fail("%s: %s" % (type(e).__name__, e))
        except link.LinkError as e:
            _fail("%s: %s" % (type(e).__name__, e))

    if tap:
        _print_tap(results, target, as_json)
        return
    _print_reads(cfg, results, target, as_json)
    if any("exception" in r for r in results):
        raise SystemExit(EXIT_EXCEPTION)


def _print_reads(cfg: dict[str, Any], results: list[dict[str, Any]], target: str, as_json: bool) -> None:
    rows = []
    for (table, address, count, type_, order), r in zip(cfg["reads"], results, strict=True):
        row: dict[str, Any] = {"table": table, "address": address, "count": count, "type": type_, "order": order}
        row.update(r)
        rows.append(row)
    if as_json:
        click.echo(json.dumps({"target": target, "unit": cfg["unit"], "reads": rows}))
        return
    click.echo("%s unit %d" % (target, cfg["unit"]))
    for row in rows:
        where = "%s %d" % (row["table"], row["address"])
        kind = row["type"] if row["type"] in ("bool", "u16", "s16") else "%s %s" % (row["type"], row["order"])
        if "exception" in row:
            f, code, name = row["exception"]
            click.echo("  %-14s %-9s exception %d (%s)" % (where, kind, code, name))
        else:
            click.echo("  %-14s %-9s %s" % (where, kind, "  ".join(_show_value(v) for v in row["values"])))


def _print_tap(exchanges: list[dict[str, Any]], target: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"target": target, "exchanges": exchanges}))
        return
    click.echo("%s: %d exchanges" % (target, len(exchanges)))
    for x in exchanges:
        what = "unit %d %s %d" % (x["unit"], _FUNCTION_WORDS.get(x["function"], "function %d" % x["function"]),
                                  x["address"])
        arg = x["arg"]
        if x["function"] <= 4:
            what += " +%d" % arg
        else:
            what += " = %s" % (" ".join(map(_show_value, arg)) if isinstance(arg, list) else _show_value(arg))
        res = x["result"]
        if res is None:
            shown = "no answer"
        elif isinstance(res, dict):
            shown = "exception %d (%s)" % (res["exception"][1], res["exception"][2])
        else:
            shown = " ".join(map(_show_value, res)) if x["function"] <= 4 else "ok"
        click.echo("  %s -> %s" % (what, shown))
