"""``lightnode demo``: a light node signs PMU windows inside MicroPython; the SDK checks them.

The device side is the firmware's own code (``ln.txn``, ``ln.ed25519``)
in the MicroPython unix port at a board's heap budget; the checking side
is the SDK (``lightnode.wire`` on cbor2 and libsodium), a second
implementation of the same wire format. Every transaction must verify,
chain to the one before, and give back exactly the readings the PMU
measured at their fixed resolution.
"""

from __future__ import annotations

import json
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lightnode import boards, micropython, wire
from lightnode.errors import LightnodeError
from lightnode.firmware.ln import wire as spec
from lightnode.simulator import signals
from rich.console import Console
from rich.table import Table

SEGMENT = "demo-substation"
RATE = 50  # PMU frames per second
CLOCK_UNCERTAINTY_US = 10_000  # the demo host is taken as NTP-synced within 10 ms
SCRIPT = Path(__file__).resolve().parent / "device_scripts" / "sign_windows.py"


@dataclass
class Outcome:
    public: bytes
    device: bytes
    transactions: list[wire.Transaction]
    frames: int
    sign_ms: list[float]
    heap_free: list[int]


def _windows(count: int, window_s: int) -> list[signals.PmuWindow]:
    """``count`` consecutive windows of one simulated PMU, ending now."""
    t0 = (time.time_ns() // 1000 // 1_000_000 - count * window_s - 1) * 1_000_000
    whole = signals.pmu_window(seconds=count * window_s, rate=RATE, seed=20261125, t0_us=t0)
    per = window_s * RATE
    out = []
    for i in range(count):
        part = slice(i * per, (i + 1) * per)
        out.append(
            signals.PmuWindow(
                rate=whole.rate,
                period=whole.period,
                times=whole.times[part],
                values={pid: v[part] for pid, v in whole.values.items()},
                floats={pid: v[part] for pid, v in whole.floats.items()},
                quality=whole.quality[part],
            )
        )
    return out


def _record(w: signals.PmuWindow) -> bytes:
    """One window as the device script reads it (see device_scripts/sign_windows.py)."""
    n, t0 = w.frames, w.times[0]
    parts = [struct.pack("<HHq", n, len(w.points), t0),
             struct.pack("<%di" % n, *(t - t0 for t in w.times)),
             struct.pack("<%dB" % n, *w.quality)]
    for p in w.points:
        parts.append(struct.pack("<HB", p.id, p.order) + struct.pack("<%di" % n, *w.values[p.id]))
    return b"".join(parts)


def _job(path: Path, windows: list[signals.PmuWindow]) -> None:
    records = [_record(w) for w in windows]
    head = {"segment": SEGMENT, "uncertainty_us": CLOCK_UNCERTAINTY_US,
            "period": windows[0].period, "record_bytes": max(len(r) for r in records)}
    with path.open("wb") as f:
        f.write(json.dumps(head).encode() + b"\n")
        for r in records:
            f.write(r)


def sign_on_device(windows: list[signals.PmuWindow], board: str, seed: bytes | None) -> Outcome:
    """Run the device's signing path over ``windows``; check every result with the SDK."""
    with tempfile.TemporaryDirectory(prefix="lightnode-demo-") as tmp:
        job = Path(tmp) / "job.jsonl"
        _job(job, windows)
        journal = Path(tmp) / "journal.bin"
        args: tuple[str, ...] = (str(job), str(journal)) + ((seed.hex(),) if seed else ())
        run = micropython.run_unix(SCRIPT, board=board, args=args).check()
        blob = journal.read_bytes()
    records = []
    at = 0
    while at < len(blob):
        (size,) = struct.unpack_from("<H", blob, at)
        records.append(blob[at + 2 : at + 2 + size])
        at += 2 + size
    head, *rows = run.results
    public, device = bytes.fromhex(head["public"]), bytes.fromhex(head["device"])
    if not len(rows) == len(records) == len(windows):
        raise LightnodeError("the device signed %d of %d windows" % (len(records), len(windows)))
    txs = []
    prev = bytes(spec.HASH_BYTES)
    for i, (row, data, w) in enumerate(zip(rows, records, windows, strict=True)):
        tx = wire.verify(data, public)
        if tx.id.hex() != row["id"]:
            raise LightnodeError("seq %d: the device and the SDK disagree on the transaction id" % tx.seq)
        if tx.seq != i + 1 or tx.prev != prev or tx.device_id != device:
            raise LightnodeError("seq %d: sequence or hash chain broken" % tx.seq)
        (series,) = tx.readings()
        if series.times != w.times or any(p.values != w.values[p.id] for p in series.points):
            raise LightnodeError("seq %d: the readings differ from what the PMU measured" % tx.seq)
        prev = tx.id
        txs.append(tx)
    return Outcome(public, device, txs, sum(w.frames for w in windows),
                   [r["ms"] for r in rows], [r["heap_free"] for r in rows])


def write_out(out: Path, outcome: Outcome) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "device.pub").write_text(outcome.public.hex() + "\n")
    for tx in outcome.transactions:
        (out / ("%06d.cose" % tx.seq)).write_bytes(tx.envelope)
        (out / ("%06d.cbor" % tx.seq)).write_bytes(tx.payload)


def run(windows: int = 6, board: str = "unix", out: str | None = None, seed: str | None = None) -> Outcome:
    console = Console()
    facts = boards.load(board)
    window_s = int(facts["default_window_s"])
    key = bytes.fromhex(seed) if seed else None
    if key is not None and len(key) != 32:
        raise ValueError("--seed must be 64 hex digits (32 bytes)")
    if windows < 1:
        raise ValueError("--windows must be at least 1")
    console.print(
        "[bold]lightnode demo[/]: a PMU at %d frames/s, %d windows of %d s, board [cyan]%s[/] "
        "(heap %d KB) in the MicroPython unix port" % (RATE, windows, window_s, board, facts["heap_kb"])
    )
    with console.status("the device signs %d windows..." % windows):
        outcome = sign_on_device(_windows(windows, window_s), board, key)
    console.print("device id [cyan]%s[/], public key [cyan]%s[/]" % (outcome.device.hex(), outcome.public.hex()))

    first = outcome.transactions[0].time.us / 1e6
    table = Table(title="transactions signed on the device, each checked by the SDK (%s UTC)"
                  % time.strftime("%Y-%m-%d", time.gmtime(first)), title_justify="left")
    for col in ("seq", "transaction id", "device time", "frames", "bytes", "signing", "SDK check"):
        table.add_column(col, justify="left" if col in ("transaction id", "SDK check") else "right")
    for tx, ms in zip(outcome.transactions, outcome.sign_ms, strict=True):
        (series,) = tx.readings()
        stamp = time.strftime("%H:%M:%S", time.gmtime(tx.time.us / 1e6))
        table.add_row(str(tx.seq), tx.id.hex()[:12], stamp, str(len(series.times)),
                      str(len(tx.raw)), "%.0f ms" % ms, "[green]ok[/]")
    console.print(table)
    console.print("SDK check: Ed25519 signature (libsodium), hash chain to the previous transaction, "
                  "sequence number, readings equal to what the PMU measured.")

    total = sum(len(tx.raw) for tx in outcome.transactions)
    console.print(
        "%d transactions, %d frames, %d bytes: [bold]%.1f bytes per frame[/] (a C37.118 float frame "
        "of this PMU is 74), lossless at the fixed resolution." % (
            len(outcome.transactions), outcome.frames, total, total / outcome.frames)
    )
    console.print(
        "Signing inside MicroPython: %.0f ms per transaction on average; least free heap %d KB of %d KB."
        % (sum(outcome.sign_ms) / len(outcome.sign_ms), min(outcome.heap_free) // 1024, facts["heap_kb"])
    )
    if out:
        write_out(Path(out), outcome)
        console.print("Wrote %d .cose envelopes, their .cbor payloads and device.pub to [cyan]%s[/]; "
                      "see docs/quickstart.md to check them with pycose." % (len(outcome.transactions), out))
    console.print("[bold green]All %d transactions verified.[/]" % len(outcome.transactions))
    return outcome
