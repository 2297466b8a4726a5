"""The firmware's sustained figures: signing rate, heap, journal bytes, offline hours and flash wear per board.

    .venv/bin/python bench/firmware.py            # from the repo root
    .venv/bin/python bench/firmware.py --windows 300 --no-heap

1. Inside the unix port, the firmware's own signer and journal (``ln.txn``,
   ``ln.journal``) sign and journal one readings transaction per window of
   each board's default window (the simulated 50 frames/s PMU, as
   bench/_window.py builds it) and a heartbeat every second window, on
   MicroPython's ``VfsLfs2`` over ``ln.blockdev`` with the board's flash
   geometry (a file stands for the flash); each window is freed as a block
   ack would free it. The reference, in the same run: the SDK's signer
   (CPython, libsodium) making the same transactions, which must come out
   byte for byte the same.
2. ``journal_bytes_per_tx`` and, per board, ``offline_hours``: the journal
   quota (board fact ``journal_quota_bytes``, else ``JOURNAL_QUOTA`` of
   firmware/main.py) over the journal bytes one window takes, times the window.
3. ``wear_years``: erases per window counted on the block device,
   extrapolated to the board's flash (``block_count`` blocks, littlefs
   levelling wear over them, ``ERASE_CYCLES`` each).
4. ``min_heap_kb``: the smallest ``-X heapsize`` at which a short run of the
   whole firmware (a real segment: Mosquitto, producer, two witnesses,
   simulated PMU; tests/_firmware_support.py) signs, is acked and ends clean.

Progress lines first; the last line is one JSON object. Targets: at least
2 offline hours on a Pico W and 10 wear years.
"""

import argparse
import ast
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _window  # noqa: E402
from lightnode import boards  # noqa: E402
from lightnode import micropython as mp  # noqa: E402
from lightnode import wire as codec  # noqa: E402
from lightnode.firmware.ln import journal as lnjournal  # noqa: E402
from lightnode.firmware.ln import wire  # noqa: E402

BOARDS = ("pico_w", "pico2_w", "esp32", "esp32s3")
ERASE_CYCLES = 100_000  # NOR flash, per sector, as the boards' parts are rated
HEARTBEAT_EVERY = 2  # windows (firmware/main.py DEFAULT_HEARTBEAT_EVERY)
HEARTBEAT = {wire.HB_FIRMWARE: "0.1.0", wire.HB_FREE_HEAP: 50_000, wire.HB_JOURNAL: 1,
             wire.HB_LINK: wire.LINK_UP, wire.HB_TIME_QUALITY: wire.TQ_NTP, wire.HB_RESET_CAUSE: 1}
SEED = _window.TEST_SIGNING_SEED
YEAR_S = 365.25 * 24 * 3600

# Runs inside the unix port: sign and journal `windows` windows on VfsLfs2 over a counting block device.
_RUN = """
import sys, time, gc, vfs, json
from binascii import unhexlify, hexlify
from ln import blockdev, cbor, ed25519, journal, txn, wire

a = sys.argv[1:]
buf = bytearray(wire.MAX_TX_BYTES)  # first, as firmware/main.py does: later the heap is fragmented
body = cbor.loads(open(a[0], "rb").read())
hb = cbor.loads(open(a[1], "rb").read())
key = ed25519.SigningKey(unhexlify(a[2]))
device, segment = unhexlify(a[3]), a[4]
windows, window_us, bs, bc = int(a[5]), int(a[6]), int(a[7]), int(a[8])
img, quota, hb_every, t0 = a[9], int(a[10]), int(a[11]), int(a[12])

class Counting(blockdev.BlockDevice):
    # blockdev's own counts saturate at 255 per block: count all of them here
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.per = [0] * self.block_count
        self.total = 0
    def ioctl(self, op, arg):
        if op == 6 and 0 <= arg < self.block_count:
            self.per[arg] += 1
            self.total += 1
        return super().ioctl(op, arg)

dev = Counting(bs, bc, path=img)
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/flash")
j = journal.Journal("/flash/journal", quota, buf=buf)
first = None
nbytes = ntx = 0
gc.collect()
free0 = gc.mem_free()
e0 = dev.total
start = time.ticks_ms()
for w in range(windows):
    kinds = [(wire.KIND_READINGS, body)]
    if w % hb_every == hb_every - 1:
        kinds.append((wire.KIND_HEARTBEAT, hb))
    for kind, b in kinds:
        seq, _ = j.reserve_seq()
        data, tx_id = txn.make(key, device, segment, seq, j.prev, (t0 + w * window_us, 1, 1500), kind, b)
        j.append(seq, tx_id, data)
        nbytes += journal.HEADER_BYTES + len(data)
        ntx += 1
        if first is None:
            first = (kind, seq, hexlify(data).decode())
    j.sync()  # between polls, once per window
    j._free(seq)  # the window's block ack (ack checking is ln.ack's, benchmarked apart)
ms = time.ticks_diff(time.ticks_ms(), start)
j.close()
mp_result({"ms": ms, "tx": ntx, "journal_bytes": nbytes, "erases": dev.total - e0,
           "max_block_erases": max(dev.per), "blocks_erased": sum(1 for x in dev.per if x),
           "first": first})
"""


def _quota(facts: dict) -> int:
    if "journal_quota_bytes" in facts:
        return int(facts["journal_quota_bytes"])
    tree = ast.parse((REPO / "firmware" / "main.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "JOURNAL_QUOTA" for t in node.targets):
            return int(ast.literal_eval(node.value))
    raise SystemExit("firmware/main.py has no JOURNAL_QUOTA")


def _fw_heap() -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from _firmware_support import fw_heap

    return fw_heap()


def _board_run(name: str, windows: int, tmp: Path) -> dict:
    facts = boards.load(name)
    flash = facts["flash"]
    window_s = facts["default_window_s"]
    w = _window.window_transaction(seconds=window_s)
    body_file, hb_file = tmp / ("%s-body.cbor" % name), tmp / "hb.cbor"
    body_file.write_bytes(codec.encode(w["body"]))
    hb_file.write_bytes(codec.encode(HEARTBEAT))
    quota = _quota(facts)
    t0 = w["window"].times[-1] + w["window"].period
    img = tmp / ("%s-flash.bin" % name)
    img.unlink(missing_ok=True)
    args = (body_file, hb_file, SEED.hex(), _window.DEVICE_ID.hex(), _window.SEGMENT, windows,
            int(window_s * 1_000_000), flash["block_size"], flash["block_count"], img, quota,
            HEARTBEAT_EVERY, t0)
    # the board's heap, or the whole firmware's tested heap while that is larger (LIGHTNODE_FW_HEAP)
    heap = max(facts["heap_kb"], _fw_heap())
    run = mp.run_unix(code=_RUN, heap=heap, args=tuple(map(str, args)), timeout=3600).check()
    r = run.results[-1]
    # the reference: the SDK signs the same transactions, timed in this run
    signer = codec.Signer(SEED, _window.DEVICE_ID, _window.SEGMENT)
    kind, seq, hexdata = r["first"]  # the first window's readings: seq 0, chained to nothing
    data, _id = signer.make(seq, bytes(32), (t0, 1, 1500), kind, w["body"])
    same = data.hex() == hexdata
    n_ref = max(20, r["tx"] // 4)
    t = time.perf_counter()
    p = bytes(32)
    for i in range(n_ref):
        _data, p = signer.make(i, p, (t0 + i, 1, 1500), wire.KIND_READINGS, w["body"])
    ref_s = time.perf_counter() - t
    per_window = r["journal_bytes"] / windows
    erases_per_window = r["erases"] / windows
    windows_per_year = YEAR_S / window_s
    wear = (flash["block_count"] * ERASE_CYCLES / erases_per_window / windows_per_year
            if erases_per_window else float("inf"))
    out = {
        "window_s": window_s,
        "heap_kb": heap,
        "frames_per_window": w["frames"],
        "tx": r["tx"],
        "tx_per_s": round(r["tx"] / (r["ms"] / 1000), 2),
        "sdk_tx_per_s": round(n_ref / ref_s, 1),
        "same_bytes_as_sdk": same,
        "journal_bytes_per_tx": round(r["journal_bytes"] / r["tx"], 1),
        "journal_bytes_per_window": round(per_window, 1),
        "journal_quota_bytes": quota,
        "offline_hours": round(quota / per_window * window_s / 3600, 2),
        "erases_per_window": round(erases_per_window, 3),
        "max_block_erases": r["max_block_erases"],
        "blocks_erased": r["blocks_erased"],
        "block_count": flash["block_count"],
        "wear_years": round(wear, 1),
    }
    print("  %s: %d windows of %g s, %.1f tx/s (SDK %.0f tx/s), %.0f journal bytes/window, "
          "%.2f offline hours, %.3f erases/window (%d of %d blocks), %.1f wear years"
          % (name, windows, window_s, out["tx_per_s"], out["sdk_tx_per_s"], per_window,
             out["offline_hours"], erases_per_window, r["blocks_erased"], flash["block_count"],
             out["wear_years"]), flush=True)
    return out


def _min_heap(seconds: float) -> tuple[int | None, list]:
    """Bisect -X heapsize (KB) for a short whole-firmware run that signs, is acked and ends clean."""
    sys.path.insert(0, str(REPO / "tests"))
    import _firmware_support as fs
    import pytest

    tried = []
    with tempfile.TemporaryDirectory(prefix="lightnode-bench-fw-") as tmp, \
            fs.Rig(Path(tmp), app={"window_s": 1, "heartbeat_every": 2}) as rig:

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

        lo, hi = 8, 512  # lo fails, hi passes
        if not ok(hi):
            return None, tried
        while hi - lo > 4:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
    return hi, tried


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=400, help="windows per board (default 400)")
    ap.add_argument("--no-heap", action="store_true", help="skip the min_heap_kb bisection")
    ap.add_argument("--heap-seconds", type=float, default=12, help="length of each bisection run")
    opts = ap.parse_args()
    per_board = {}
    with tempfile.TemporaryDirectory(prefix="lightnode-bench-") as tmp:
        print("signing and journaling on VfsLfs2, each board's window and flash:", flush=True)
        for name in BOARDS:
            per_board[name] = _board_run(name, opts.windows, Path(tmp))
    heap, tried = None, []
    if not opts.no_heap:
        print("smallest -X heapsize for a %g s whole-firmware run:" % opts.heap_seconds, flush=True)
        heap, tried = _min_heap(opts.heap_seconds)
    pico = per_board["pico_w"]
    out = {
        "tx_per_s": pico["tx_per_s"],
        "sdk_tx_per_s": pico["sdk_tx_per_s"],
        "same_bytes_as_sdk": all(b["same_bytes_as_sdk"] for b in per_board.values()),
        "min_heap_kb": heap,
        "min_heap_kb_budget": boards.load("pico_w")["heap_kb"],
        "journal_bytes_per_tx": pico["journal_bytes_per_tx"],
        "offline_hours": {n: b["offline_hours"] for n, b in per_board.items()},
        "wear_years": {n: b["wear_years"] for n, b in per_board.items()},
        "targets_met": {"offline_hours_pico_w": pico["offline_hours"] >= 2,
                        "wear_years": all(b["wear_years"] >= 10 for b in per_board.values())},
        "boards": per_board,
        "windows": opts.windows,
        "pmu_frames_per_s": 50,
        "erase_cycles": ERASE_CYCLES,
        "journal_header_bytes": lnjournal.HEADER_BYTES,
        "source": hashlib.sha256((REPO / "firmware" / "main.py").read_bytes()).hexdigest()[:12],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
