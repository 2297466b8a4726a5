"""The firmware's sustained figures: signing rate, heap, journal bytes, offline hours and flash wear per board.

    .venv/bin/python bench/firmware.py            # from the repo root; a few minutes
    .venv/bin/python bench/firmware.py --windows 200 --no-heap
    .venv/bin/python bench/firmware.py --heap-step 1   # the whole-firmware heap to the KB

Everything the figures rest on is measured with the firmware's own code in
the MicroPython unix port (bench/_fw.py has the scripts):

1. ``tx_per_s``: the batcher's online work, window after window, for each
   board's default window of the simulated 50 frames/s PMU (bench/_window.py's
   signal): encode the window (``ln.readings``), sign (``ln.txn``), append
   and sync (``ln.journal`` on ``VfsLfs2`` over ``ln.blockdev`` with the
   board's flash geometry), a heartbeat every second window, then free the
   window as a block ack does. The reference in the same run: the SDK's
   signer (CPython, libsodium) making the same transaction, which must come
   out with the same id.
2. ``offline_hours`` per board: the bytes of every kind of transaction the
   batcher signs (full-rate window, 1..``widen_windows`` decimated windows in
   one transaction, the link-down heartbeat) measured in the port, plus the
   journal's record header; then the journal, empty when the link goes,
   filled window by window as ``App.close_window`` and ``App.heartbeat`` fill
   it (their thresholds read from ``ln.app``): full rate below 50 %,
   decimated windows to 80 %, widened windows until the first routine window
   no longer fits short of the events' last 10 %. The figure is the end of
   the last window whose readings reached flash; each phase's length is given.
3. ``wear_years`` per board, for the PMU and for a meter-class device
   (drivers/maps/meter_modbus.json, every point polled each second): erases
   counted on the block device over the online run (after a warm-up),
   extrapolated to the board's ``block_count`` blocks of ``ERASE_CYCLES``
   each, assuming littlefs levels wear over all of them. The physical bound
   (file system bytes x cycles / journal bytes written a year, as if every
   byte written cost one byte erased) is printed beside it, to check.
4. ``min_heap_kb``: the smallest ``-X heapsize`` (coarse steps between 128
   and 200 KB) at which a short run of the whole firmware at a Pico W's
   window and a 50 frames/s PMU (Mosquitto, producer, two witnesses;
   tests/_firmware_support.py) signs, is acked and ends clean.

Progress lines first; the last line is one JSON object. Targets (reported,
not tuned for): at least 2 offline hours on a Pico W and 10 wear years.
"""

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _fw  # noqa: E402
import _window  # noqa: E402
from lightnode import boards, readings  # noqa: E402
from lightnode import wire as codec  # noqa: E402
from lightnode.firmware.ln import wire  # noqa: E402
from lightnode.simulator import signals  # noqa: E402

BOARDS = ("pico_w", "pico2_w", "esp32", "esp32s3")
ERASE_CYCLES = 100_000  # NOR flash, per sector, as the boards' parts are rated
HEARTBEAT_EVERY = 2  # windows (firmware/ln/run.py DEFAULT_HEARTBEAT_EVERY)
SEED = _window.TEST_SIGNING_SEED
DEVICE, SEGMENT = _window.DEVICE_ID, _window.SEGMENT
YEAR_S = 365.25 * 24 * 3600
# The online runs hold a window's arrays, a record buffer and littlefs's caches beside the signer;
# below this the unix port's heap fragments on the 4 KB transaction (the whole firmware's own
# figure is min_heap_kb).
ONLINE_HEAP_KB = 256
SIZES_WINDOWS = 12  # distinct windows whose sizes are averaged, and widened together


def _sdk_check(sizes: dict[str, Any], window_s: float) -> tuple[bool, float]:
    """The SDK signs the first full-rate window: the same id as the port's? And its rate."""
    w = signals.pmu_window(seconds=window_s, rate=_fw.PMU_RATE, seed=_fw.SEED, t0_us=_fw.T0)
    body = readings.encode_body([w.series()])
    signer = codec.Signer(SEED, DEVICE, SEGMENT)
    tx_id_hex, t_close = sizes["first"]
    _data, tx_id = signer.make(sizes["seq"], b"\x11" * 32, (t_close, wire.TQ_NTP, 1500),
                               wire.KIND_READINGS, body)
    n = 200
    p = bytes(32)
    t = time.perf_counter()
    for i in range(n):
        _data, p = signer.make(i, p, (t_close + i, wire.TQ_NTP, 1500), wire.KIND_READINGS, body)
    return tx_id.hex() == tx_id_hex, n / (time.perf_counter() - t)


def _wear(r: dict[str, Any], windows: int, window_s: float, flash: dict[str, Any]) -> dict[str, Any]:
    per_year = YEAR_S / window_s / windows  # measured runs in a year
    erases_year = r["erases"] * per_year
    journal_year = r["journal_bytes"] * per_year
    years = flash["block_count"] * ERASE_CYCLES / erases_year if erases_year else float("inf")
    bound = flash["fs_bytes"] * ERASE_CYCLES / journal_year
    return {
        "wear_years": round(years, 2),
        "bound_years": round(bound, 2),
        "erases_per_window": round(r["erases"] / windows, 3),
        "erases_per_year": round(erases_year),
        "journal_bytes_per_year": round(journal_year),
        "flash_bytes_programmed_per_year": round(r["programmed"] * per_year),
        "max_block_erases": r["max_block_erases"],
        "blocks_erased": r["blocks_erased"],
    }


def _board(name: str, windows: int, tmp: Path) -> dict[str, Any]:
    facts = boards.load(name)
    flash = facts["flash"]
    window_s = facts["default_window_s"]
    quota = int(facts["journal_quota_bytes"])
    pmu = _fw.write_windows(tmp / ("%s-pmu.json" % name), _fw.pmu_windows(window_s, SIZES_WINDOWS))
    pmu1 = _fw.write_windows(tmp / ("%s-pmu1.json" % name), _fw.pmu_windows(window_s, 1))
    meter = _fw.write_windows(tmp / ("%s-meter.json" % name), _fw.meter_windows(window_s, 4))
    sizes = _fw.measure_sizes(pmu, SEED, DEVICE, SEGMENT)
    same, sdk_rate = _sdk_check(sizes, window_s)
    off = _fw.offline(sizes, quota, window_s, HEARTBEAT_EVERY)
    warm = max(20, windows // 4)
    img = tmp / ("%s-flash.bin" % name)
    run = {}
    for dev, path in (("pmu", pmu1), ("meter", meter)):
        r = _fw.run_online(path, SEED, DEVICE, SEGMENT, windows, warm, window_s, flash, img, quota,
                           HEARTBEAT_EVERY, max(ONLINE_HEAP_KB, facts["heap_kb"]))
        run[dev] = r | _wear(r, windows, window_s, flash)
    p = run["pmu"]
    full = sum(sizes["full"]) / len(sizes["full"])
    out = {
        "window_s": window_s,
        "frames_per_window": sizes["samples"],
        "journal_quota_bytes": quota,
        "tx_per_s": round(p["tx"] / (p["ms"] / 1000), 1),
        "sdk_tx_per_s": round(sdk_rate, 1),
        "same_id_as_sdk": same,
        "journal_bytes_per_tx": round(p["journal_bytes"] / p["tx"], 1),
        "tx_bytes": {"full_rate": round(full, 1), "decimated_1": sizes["agg"][0],
                     "widened_%d" % sizes["policy"]["widen_windows"]: sizes["agg"][-1],
                     "heartbeat_offline": sizes["hb_down"], "heartbeat": sizes["hb_up"],
                     "meter_full_rate": round(run["meter"]["journal_bytes"] / run["meter"]["tx"]
                                              - sizes["header"], 1)},
        **off,
        "wear_years_pmu": p["wear_years"],
        "wear_bound_years_pmu": p["bound_years"],
        "wear_years_meter": run["meter"]["wear_years"],
        "wear_bound_years_meter": run["meter"]["bound_years"],
        "pmu": {k: v for k, v in p.items() if k not in ("wear_years", "bound_years")},
        "meter": {k: v for k, v in run["meter"].items() if k not in ("wear_years", "bound_years")},
        "policy": sizes["policy"],
        "record_header_bytes": sizes["header"],
    }
    print("  %s (%g s window, quota %d B): %.1f tx/s (SDK %.0f), %.0f B full-rate tx, %d B "
          "decimated, %d B for %d widened, %d B offline heartbeat"
          % (name, window_s, quota, out["tx_per_s"], sdk_rate, full, sizes["agg"][0],
             sizes["agg"][-1], sizes["policy"]["widen_windows"], sizes["hb_down"]), flush=True)
    print("    offline %.2f h = full rate %.2f h + decimated %.2f h + widened %.2f h (%d heartbeats)"
          % (off["offline_hours"], off["phase_full_rate_h"], off["phase_decimated_h"],
             off["phase_widened_h"], off["offline_heartbeats"]), flush=True)
    for dev in ("pmu", "meter"):
        r = run[dev]
        print("    wear %s: %.3f erases/window (%d of %d blocks, hottest %d) -> %.2f years at %d "
              "cycles; bound %d B x %d / %d journal B a year = %.2f years"
              % (dev, r["erases_per_window"], r["blocks_erased"], flash["block_count"],
                 r["max_block_erases"], r["wear_years"], ERASE_CYCLES, flash["fs_bytes"],
                 ERASE_CYCLES, r["journal_bytes_per_year"], r["bound_years"]), flush=True)
    return out


def _min_heap(seconds: float, step: int, lo: int, hi: int) -> tuple[int | None, list]:
    """The smallest -X heapsize (KB, in ``step``s from ``lo`` to ``hi``) at which a short
    whole-firmware run signs, is acked and ends clean; None if ``hi`` fails too."""
    sys.path.insert(0, str(REPO / "tests"))
    import _firmware_support as fs
    import pytest

    board = boards.load("pico_w")
    tried: list = []
    with tempfile.TemporaryDirectory(prefix="lightnode-bench-fw-") as tmp, \
            fs.Rig(Path(tmp), app={"window_s": board["default_window_s"], "heartbeat_every": 2},
                   pmu_rate=_fw.PMU_RATE, board="pico_w") as rig:

        def ok(kb: int) -> bool:
            rig.heap = kb
            fw = rig.start_firmware(seconds)
            try:
                st = fw.wait(timeout=seconds + 60)
            except pytest.fail.Exception:
                good = False
            else:
                good = (st["appended"] >= 3 and st["pending"] <= 3 and st["bad_acks"] == 0
                        and st["freed"] >= 1)
            tried.append((kb, good))
            print("  heap %d KB: %s" % (kb, "ok" if good else "fails"), flush=True)
            return good

        sizes = list(range(lo, hi + 1, step))
        if sizes[-1] != hi:
            sizes.append(hi)
        if not ok(sizes[-1]):
            return None, tried
        a, b = 0, len(sizes) - 1  # sizes[b] passes; everything below a is known to fail
        while a < b:
            mid = (a + b) // 2
            if ok(sizes[mid]):
                b = mid
            else:
                a = mid + 1
    return sizes[b], tried


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=400,
                    help="measured windows per board and device, after a quarter as many to warm up")
    ap.add_argument("--no-heap", action="store_true", help="skip the min_heap_kb bisection")
    ap.add_argument("--heap-seconds", type=float, default=16, help="length of each bisection run")
    ap.add_argument("--heap-step", type=int, default=4, help="bisection step, KB (1: to the KB)")
    ap.add_argument("--heap-range", default="128:200", help="bisection range LO:HI, KB")
    opts = ap.parse_args()
    t_start = time.monotonic()
    per_board = {}
    with tempfile.TemporaryDirectory(prefix="lightnode-bench-") as tmp:
        print("in the unix port, each board's window and flash, the 50 frames/s PMU and a meter:",
              flush=True)
        for name in BOARDS:
            per_board[name] = _board(name, opts.windows, Path(tmp))
    heap: int | None = None
    tried: list = []
    if not opts.no_heap:
        lo, hi = (int(x) for x in opts.heap_range.split(":"))
        print("smallest -X heapsize for a %g s whole-firmware run (Pico W window, %d frames/s):"
              % (opts.heap_seconds, _fw.PMU_RATE), flush=True)
        heap, tried = _min_heap(opts.heap_seconds, opts.heap_step, lo, hi)
    pico = per_board["pico_w"]
    out = {
        "tx_per_s": pico["tx_per_s"],
        "sdk_tx_per_s": pico["sdk_tx_per_s"],
        "same_id_as_sdk": all(b["same_id_as_sdk"] for b in per_board.values()),
        "min_heap_kb": heap,
        "min_heap_kb_tried": tried,
        "min_heap_kb_step": None if opts.no_heap else opts.heap_step,
        "journal_bytes_per_tx": pico["journal_bytes_per_tx"],
        "offline_hours": {n: b["offline_hours"] for n, b in per_board.items()},
        "offline_phases_h": {n: {"full_rate": b["phase_full_rate_h"],
                                 "decimated": b["phase_decimated_h"],
                                 "widened": b["phase_widened_h"]} for n, b in per_board.items()},
        "wear_years": {n: {"pmu": b["wear_years_pmu"], "meter": b["wear_years_meter"]}
                       for n, b in per_board.items()},
        "wear_bound_years_pmu": {n: b["wear_bound_years_pmu"] for n, b in per_board.items()},
        "target_offline_pico_w": pico["offline_hours"] >= 2,
        "target_wear_pico_w_pmu": pico["wear_years_pmu"] >= 10,
        "target_wear_pico_w_meter": pico["wear_years_meter"] >= 10,
        "boards": per_board,
        "windows": opts.windows,
        "pmu_frames_per_s": _fw.PMU_RATE,
        "meter_poll_s": _fw.METER_POLL_S,
        "erase_cycles": ERASE_CYCLES,
        "wear_assumes": "littlefs levels erases over every block of the file system",
        "online_heap_kb": ONLINE_HEAP_KB,
        "run_s": round(time.monotonic() - t_start),
        "source": hashlib.sha256((REPO / "firmware" / "ln" / "app.py").read_bytes()).hexdigest()[:12],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
