"""``lightnode probe c37118 HOST:PORT``: read a PMU's configuration and a few data frames.

The first thing to run against a PMU on site: it asks for CFG-2, prints a
summary of it, starts the stream, prints each data frame (its own time,
STAT, frequency, ROCOF, phasors) and stops the stream. ``--json`` for
machines; ``--on micropython`` does the same read with the device's own
drivers inside the MicroPython unix port (at a board's heap budget).

    lightnode probe c37118 192.0.2.10:4712 --idcode 7 --frames 5
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import click

DEFAULT_PORT = 4712  # C37.118.2-2011 E.2: the default TCP port

# The read as the device runs it: CFG-2, start, N frames, stop. Every
# ``every`` frames it reports gc.mem_alloc() after gc.collect(). Settings:
# host port idcode frames timeout_ms every emit.
DEVICE_READ = """
import gc
from lightnode.drivers.c37118 import client, errors
from lightnode.drivers import link

def _cfg(cfg):
    out = []
    for p in cfg.pmus:
        out.append({"station": p.station, "idcode": p.idcode, "fmt": p.fmt, "fnom": p.fnom,
                    "cfgcnt": p.cfgcnt, "phasors": p.phnames, "phunit": p.phunit,
                    "analogs": p.annames, "anunit": p.anunit, "digitals": p.dgnmr})
    return {"idcode": cfg.idcode, "version": cfg.version, "ftype": cfg.ftype,
            "time_base": cfg.time_base, "data_rate": cfg.data_rate, "pmus": out}

def main(host, port, idcode, n, timeout_ms, every, emit):
    pmu = None
    try:
        pmu = client.connect(host, port, idcode, timeout_ms)
        cfg = pmu.config()
        mp_result({"config": _cfg(cfg)})
        pmu.start()
        gc.collect()
        if every:
            mp_result({"heap": gc.mem_alloc(), "free": gc.mem_free(), "after": 0})
        for k in range(n):
            f = pmu.read()
            if emit:
                d = f.pmus[0]
                mp_result({"frame": k, "soc": f.soc, "fracsec": f.fracsec, "stat": d.stat,
                           "ph": d.ph, "freq": d.freq, "dfreq": d.dfreq, "an": d.an, "dg": d.dg})
            else:
                mp_result({"frame": k, "soc": f.soc, "fracsec": f.fracsec})
            if every and (k + 1) % every == 0:
                gc.collect()
                mp_result({"heap": gc.mem_alloc(), "free": gc.mem_free(), "after": k + 1})
        pmu.stop()
    except (errors.C37118Error, link.LinkError) as e:
        mp_result({"error": "%s: %s" % (type(e).__name__, e)})
    finally:
        if pmu is not None:
            pmu.close()
    mp_result({"done": True})

main(cfg["host"], cfg["port"], cfg["idcode"], cfg["frames"], cfg["timeout_ms"], cfg["every"], cfg["emit"])
"""


def run_device_read(host: str, port: int, idcode: int, n: int, timeout_ms: int, every: int = 0,
                    emit: bool = True, board: str = "pico_w", heap: int | None = None) -> Any:
    """``DEVICE_READ`` inside the unix port at ``board``'s heap budget; the harness's Run."""
    from lightnode.probe import run_device

    settings = {"host": host, "port": port, "idcode": idcode, "frames": n, "timeout_ms": timeout_ms,
                "every": every, "emit": emit}
    return run_device(DEVICE_READ, settings, board=board, heap=heap, timeout=30 + n * timeout_ms / 1000)


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host:
        return address, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter("%r: the port must be 1-65535" % address)
    return host.strip("[]"), int(port)


def _fmt_text(fmt: int) -> str:
    from lightnode.drivers.c37118 import frames

    return "phasors %s %s, FREQ/DFREQ %s, analogs %s" % (
        "float" if fmt & frames.FMT_PHASOR_FLOAT else "int16",
        "polar" if fmt & frames.FMT_POLAR else "rectangular",
        "float" if fmt & frames.FMT_FREQ_FLOAT else "int16",
        "float" if fmt & frames.FMT_ANALOG_FLOAT else "int16",
    )


def _pmu_config(p: dict[str, Any]) -> Any:
    from lightnode.drivers.c37118 import frames

    dg = ["D%d" % i for i in range(16 * p["digitals"])]
    return frames.PmuConfig(p["station"], p["idcode"], p["fmt"], p["phasors"], p["analogs"], dg,
                            p["phunit"], p["anunit"], [(0, 0)] * p["digitals"], p["fnom"], p["cfgcnt"])


def _iso(t_us: int) -> str:
    dt = datetime.datetime.fromtimestamp(t_us // 1_000_000, datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%06dZ" % (t_us % 1_000_000)


def frame_record(pmu: Any, time_base: int, f: dict[str, Any]) -> dict[str, Any]:
    """One data frame (wire numbers from either interpreter) in engineering units."""
    from lightnode.drivers.c37118 import frames

    t_us = frames.time_us(f["soc"], f["fracsec"], time_base)
    ph = f["ph"]
    phasors = []
    for i, name in enumerate(pmu.phnames):
        mag, ang = pmu.phasor(i, ph[2 * i], ph[2 * i + 1])
        phasors.append({"name": name, "unit": "A" if pmu.phunit[i] >> 24 == 1 else "V",
                        "magnitude": mag, "angle_deg": math.degrees(ang)})
    return {
        "time_us": t_us, "time": _iso(t_us), "soc": f["soc"], "fracsec": f["fracsec"] & 0xFFFFFF,
        "time_quality": (f["fracsec"] >> 24) & 0xFF, "stat": f["stat"],
        "freq_hz": pmu.freq_hz(f["freq"]), "dfreq_hz_s": pmu.dfreq_hz_s(f["dfreq"]),
        "phasors": phasors, "analogs": list(f["an"]), "digitals": list(f["dg"]),
    }


def _stat_text(stat: int) -> str:
    from lightnode.drivers.c37118 import frames

    words = []
    err = (stat & frames.STAT_ERROR_MASK) >> 14
    if err:
        words.append(("", "pmu-error", "test-mode", "pmu-error-do-not-use")[err])
    if stat & frames.STAT_NOT_SYNC:
        words.append("not-sync")
    if stat & frames.STAT_TRIGGER:
        words.append("trigger(%d)" % (stat & frames.STAT_TRIGGER_REASON_MASK))
    if stat & frames.STAT_CFG_CHANGE:
        words.append("cfg-change")
    if stat & frames.STAT_DATA_MODIFIED:
        words.append("modified")
    return "0x%04x%s" % (stat, (" " + ",".join(words)) if words else "")


def _read_cpython(host: str, port: int, idcode: int, n: int, timeout_ms: int) -> tuple[dict, list]:
    from lightnode.drivers.c37118 import client

    pmu = client.connect(host, port, idcode, timeout_ms)
    try:
        cfg = pmu.config()
        info = {
            "idcode": cfg.idcode, "version": cfg.version, "ftype": cfg.ftype,
            "time_base": cfg.time_base, "data_rate": cfg.data_rate,
            "pmus": [{"station": p.station, "idcode": p.idcode, "fmt": p.fmt, "fnom": p.fnom,
                      "cfgcnt": p.cfgcnt, "phasors": p.phnames, "phunit": p.phunit,
                      "analogs": p.annames, "anunit": p.anunit, "digitals": p.dgnmr}
                     for p in cfg.pmus],
        }
        pmu.start()
        out = []
        for _ in range(n):
            f = pmu.read()
            d = f.pmus[0]
            out.append({"soc": f.soc, "fracsec": f.fracsec, "stat": d.stat, "ph": list(d.ph),
                        "freq": d.freq, "dfreq": d.dfreq, "an": list(d.an), "dg": list(d.dg)})
        pmu.stop()
        return info, out
    finally:
        pmu.close()


def _read_micropython(host: str, port: int, idcode: int, n: int, timeout_ms: int,
                      board: str) -> tuple[dict, list]:
    from lightnode.probe import device_failure

    run = run_device_read(host, port, idcode, n, timeout_ms, board=board)
    failure = device_failure(run)
    if failure:
        raise click.ClickException(failure + " (inside MicroPython)")
    cfgs = [r["config"] for r in run.results if "config" in r]
    if not cfgs:
        raise click.ClickException("MicroPython read no configuration:\n" + run.stdout[-2000:])
    return cfgs[0], [r for r in run.results if "frame" in r]


@click.command("c37118")
@click.argument("address", metavar="HOST[:PORT]")
@click.option("--idcode", default=1, show_default=True, type=click.IntRange(1, 65534),
              help="The stream's IDCODE (the PMU's data stream ID).")
@click.option("--frames", "count", default=5, show_default=True, type=click.IntRange(0, 100000),
              help="Data frames to read after the configuration.")
@click.option("--timeout", "timeout_ms", default=3000, show_default=True, type=click.IntRange(1, 600000),
              help="Longest wait for any one frame, ms.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@click.option("--on", "on", default="cpython", show_default=True,
              type=click.Choice(["cpython", "micropython"]),
              help="Where the driver runs: here, or inside the MicroPython unix port.")
@click.option("--board", default="pico_w", show_default=True,
              help="With --on micropython: the board whose heap budget the port runs at.")
def c37118(address: str, idcode: int, count: int, timeout_ms: int, as_json: bool, on: str,
           board: str) -> None:
    """Read an IEEE C37.118.2 PMU over TCP: its CFG-2, then data frames."""
    from lightnode.drivers.c37118.errors import C37118Error
    from lightnode.drivers.link import LinkError
    from lightnode.errors import HarnessError

    host, port = parse_address(address)
    try:
        if on == "micropython":
            info, raw = _read_micropython(host, port, idcode, count, timeout_ms, board)
        else:
            info, raw = _read_cpython(host, port, idcode, count, timeout_ms)
    except LinkError as e:
        raise click.ClickException("%s:%d: %s" % (host, port, e)) from e
    except C37118Error as e:
        raise click.ClickException("%s:%d: protocol error: %s" % (host, port, e)) from e
    except HarnessError as e:
        raise click.ClickException(str(e)) from e
    pmu = _pmu_config(info["pmus"][0])
    records = [frame_record(pmu, info["time_base"], f) for f in raw]
    if as_json:
        click.echo(json.dumps({"address": "%s:%d" % (host, port), "on": on, "config": info,
                               "frames": records}))
        return
    p = info["pmus"][0]
    click.echo("PMU %s:%d  IDCODE %d  CFG-%d  version %d  %d frames/s  TIME_BASE %d"
               % (host, port, info["idcode"], info["ftype"] - 1, info["version"], info["data_rate"],
                  info["time_base"]))
    for q in info["pmus"]:
        click.echo("  station %r  IDCODE %d  %d Hz  CFGCNT %d  %s"
                   % (q["station"], q["idcode"], q["fnom"], q["cfgcnt"], _fmt_text(q["fmt"])))
        click.echo("  phasors: %s" % ", ".join(
            "%s (%s)" % (n, "A" if u >> 24 == 1 else "V") for n, u in zip(q["phasors"], q["phunit"], strict=True)))
        if q["analogs"]:
            click.echo("  analogs: %s" % ", ".join(q["analogs"]))
        if q["digitals"]:
            click.echo("  digital words: %d" % q["digitals"])
    if len(info["pmus"]) > 1:
        click.echo("  (frames below show the first PMU, %r)" % p["station"])
    for r in records:
        ph = "  ".join("%s %.1f%s %.2f°" % (x["name"], x["magnitude"], x["unit"], x["angle_deg"])
                       for x in r["phasors"])
        click.echo("%s  q%d  STAT %s  f %.4f Hz  df %+.3f Hz/s  %s"
                   % (r["time"], r["time_quality"] & 0x0F, _stat_text(r["stat"]), r["freq_hz"],
                      r["dfreq_hz_s"], ph))
