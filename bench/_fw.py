"""What bench/firmware.py runs: the unix-port scripts, their inputs, and the offline replay.

The scripts use the firmware's own modules (``ln.readings``, ``ln.txn``,
``ln.journal``, ``ln.blockdev``, ``ln.app``'s constants) inside the
MicroPython unix port; the inputs are the simulator's signals as integers
at each point map's resolution; ``offline`` replays the batcher's
journal-full policy (``App.close_window`` and ``App.heartbeat``) over the
byte sizes the port measured, window by window.

    import _fw
    path = _fw.write_windows(tmp / "pmu.json", _fw.pmu_windows(5, 12))
    sizes = _fw.measure_sizes(path, heap=1024)       # bytes of each kind of transaction
    _fw.offline(sizes, quota=196608, window_s=5)     # phases and hours until routine drops
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightnode import micropython as mp
from lightnode.simulator import signals

MAPS = Path(__file__).resolve().parent.parent / "drivers" / "maps"
SEED = 7  # the PMU signal's seed, as bench/_window.py
SEQ = 1_000_000  # a device some weeks into its life: seq takes 5 CBOR bytes, as it will for years
T0 = signals.T0_US
PMU_RATE = 50  # frames/s: the heaviest device
METER_POLL_S = 1

# A window as the scripts take it: [t0 us, [time offsets], [[point id, order, [values]], ...]]


def pmu_windows(window_s: float, n: int) -> dict[str, Any]:
    """``n`` consecutive windows of the simulated 50 frames/s PMU (bench/_window.py's signal)."""
    out = []
    for i in range(n):
        w = signals.pmu_window(seconds=window_s, rate=PMU_RATE, seed=SEED + i,
                               t0_us=T0 + int(i * window_s * 1_000_000))
        t0 = w.times[0]
        out.append([t0, [t - t0 for t in w.times],
                    [[p.id, p.order, list(w.values[p.id])] for p in w.points]])
    return {"period": round(1_000_000 / PMU_RATE), "windows": out}


def meter_windows(window_s: float, n: int) -> dict[str, Any]:
    """``n`` windows of the simulated three-phase meter (drivers/maps/meter_modbus.json), every
    point polled each second, at the map's resolution and delta order."""
    from lightnode.simulator import devices, scenario

    pm = json.loads((MAPS / "meter_modbus.json").read_text())
    sc = scenario.load("normal_day")
    meter = devices.make_devices(sc, sc.make_grid())["meter-1"]
    per = max(1, int(round(window_s / METER_POLL_S)))
    out = []
    for i in range(n):
        samples = [meter.sample(float((i * per + k) * METER_POLL_S)) for k in range(per)]
        t0 = int(samples[0]["t_us"])
        pts = [[p["id"], p["order"], [int(round(s[p["id"]] / p["resolution"])) for s in samples]]
               for p in pm["points"]]
        out.append([t0, [int(s["t_us"]) - t0 for s in samples], pts])
    return {"period": METER_POLL_S * 1_000_000, "windows": out}


def write_windows(path: Path, windows: dict[str, Any]) -> Path:
    path.write_text(json.dumps(windows))
    return path


# Inside the unix port: the bytes of each kind of transaction the batcher signs, and the policy's
# constants, read from the firmware itself.
SIZES = """
import sys, gc, json
from array import array
from binascii import unhexlify, hexlify
from ln import app, cose, ed25519, journal, readings, txn, wire

a = sys.argv[1:]
inp = json.load(open(a[0]))
key = ed25519.SigningKey(unhexlify(a[1]))
device, segment, seq = unhexlify(a[2]), a[3], int(a[4])
widen = int(a[5]) if int(a[5]) > 0 else app.WIDEN_WINDOWS
hb_records = int(a[6])
prot = cose.envelope_header(device)
period = inp["period"]
prev = b"\\x11" * 32

def arrays(w):
    t0, times, pts = w
    return t0, array("i", times), [(p[0], p[1], array("i", p[2])) for p in pts]

def sign(kind, body, t):
    data, tx_id = txn.make(key, device, segment, seq, prev, (t, wire.TQ_NTP, 1500), kind, body, prot)
    return data, tx_id

full = []
full_body = []
first_id = None
dec = []
for w in inp["windows"]:
    t0, times, pts = arrays(w)
    t_close = t0 + times[len(times) - 1] + period
    raw = readings.series_cbor(times, period, pts, None, None, t0=t0)
    data, tx_id = sign(wire.KIND_READINGS, [raw], t_close)
    if first_id is None:
        first_id = (hexlify(tx_id).decode(), t_close)
    full.append(len(data))
    full_body.append(len(raw.data))
    dec.append(readings.window_cbor(times, period, pts, None, None, t0=t0))
    data = raw = None
    gc.collect()
agg = []
agg_body = []
for k in range(1, widen + 1):
    body = [dec[i % len(dec)] for i in range(k)]
    data, _ = sign(wire.KIND_READINGS, body, 0)
    agg.append(len(data))
    agg_body.append(sum(len(r.data) for r in body))
data = None

def hb(link):
    body = {wire.HB_FIRMWARE: app.VERSION, wire.HB_FREE_HEAP: gc.mem_free(),
            wire.HB_JOURNAL: hb_records, wire.HB_LINK: app.LINK_CODES[link],
            wire.HB_TIME_QUALITY: wire.TQ_NTP, wire.HB_RESET_CAUSE: 1}
    return len(sign(wire.KIND_HEARTBEAT, body, inp["windows"][0][0])[0])

mp_result({"full": full, "full_body": full_body, "agg": agg, "agg_body": agg_body,
           "hb_down": hb("down"), "hb_up": hb("up"), "first": first_id, "seq": seq,
           "samples": len(inp["windows"][0][1]), "points": len(inp["windows"][0][2]),
           "header": journal.HEADER_BYTES, "segment_bytes": journal.SEGMENT_BYTES,
           "policy": {"decimate_at": app.DECIMATE_AT, "widen_at": app.WIDEN_AT,
                      "widen_windows": widen, "event_room": app.EVENT_ROOM,
                      "tx_overhead": app.TX_OVERHEAD, "offline_hb_ms": app.OFFLINE_HB_MS}})
"""

# Inside the unix port: the batcher's online work, window after window: encode the window
# (ln.readings), sign (ln.txn), append and sync (ln.journal on VfsLfs2 over ln.blockdev with the
# board's geometry), a heartbeat every hb_every windows, then free through the last record as a
# block ack does (into the retention ring). Erases and programmed bytes are counted on the device.
ONLINE = """
import sys, time, gc, json, vfs
from array import array
from binascii import unhexlify
from ln import blockdev, cose, ed25519, journal, readings, txn, wire

a = sys.argv[1:]
buf = bytearray(wire.MAX_TX_BYTES)  # first, as the firmware does: later the heap is fragmented
inp = json.load(open(a[0]))
key = ed25519.SigningKey(unhexlify(a[1]))
device, segment = unhexlify(a[2]), a[3]
windows, warm, window_us = int(a[4]), int(a[5]), int(a[6])
bs, bc, img, quota, hb_every = int(a[7]), int(a[8]), a[9], int(a[10]), int(a[11])
prot = cose.envelope_header(device)
period = inp["period"]
ws = []
for w in inp["windows"]:
    ws.append((w[0], array("i", w[1]), [(p[0], p[1], array("i", p[2])) for p in w[2]]))
inp = w = p = None  # the parsed lists go: only the typed windows stay, as on a board
gc.collect()
span = len(ws) * window_us  # the windows repeat, each time later by this

class Counting(blockdev.BlockDevice):
    # blockdev's own counts saturate at 255 per block: count all of them here
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.per = [0] * self.block_count
        self.total = 0
        self.programmed = 0
    def ioctl(self, op, arg):
        if op == 6 and 0 <= arg < self.block_count:
            self.per[arg] += 1
            self.total += 1
        return super().ioctl(op, arg)
    def writeblocks(self, n, b, off=None):
        self.programmed += len(b)
        return super().writeblocks(n, b, off)

dev = Counting(bs, bc, path=img)
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/flash")
j = journal.Journal("/flash/journal", quota, buf=buf)
hb = {wire.HB_FIRMWARE: "0.1.0", wire.HB_FREE_HEAP: 50000, wire.HB_JOURNAL: 1,
      wire.HB_LINK: wire.LINK_UP, wire.HB_TIME_QUALITY: wire.TQ_NTP, wire.HB_RESET_CAUSE: 1}

def window(w):
    gc.collect()  # as the batcher does before it closes a window
    k = w % len(ws)
    t0, times, pts = ws[k]
    t0 += (w // len(ws)) * span
    raw = readings.series_cbor(times, period, pts, None, None, t0=t0)
    out = [(wire.KIND_READINGS, [raw], t0 + times[len(times) - 1] + period)]
    if w % hb_every == hb_every - 1:
        out.append((wire.KIND_HEARTBEAT, hb, t0 + window_us))
    n = 0
    for kind, body, t in out:
        seq, _ = j.reserve_seq()
        data, tx_id = txn.make(key, device, segment, seq, j.prev, (t, wire.TQ_NTP, 1500), kind,
                               body, prot)
        j.append(seq, tx_id, data)
        n += journal.HEADER_BYTES + len(data)
        data = None
    j.sync()  # between polls, once per window
    j._free(seq)  # the window's block ack (checking the ack is ln.ack's, benchmarked apart)
    return len(out), n

for w in range(warm):  # littlefs and the ring reach their steady state first
    window(w)
for i in range(dev.block_count):
    dev.per[i] = 0
gc.collect()
e0, p0 = dev.total, dev.programmed
ntx = nbytes = 0
start = time.ticks_ms()
for w in range(warm, warm + windows):
    k, n = window(w)
    ntx += k
    nbytes += n
ms = time.ticks_diff(time.ticks_ms(), start)
j.close()
hot = used = 0
for x in dev.per:
    hot = max(hot, x)
    used += 1 if x else 0
mp_result({"ms": ms, "tx": ntx, "journal_bytes": nbytes, "erases": dev.total - e0,
           "programmed": dev.programmed - p0, "max_block_erases": hot, "blocks_erased": used})
"""


def measure_sizes(path: Path, seed: bytes, device: bytes, segment: str, widen: int = 0,
                  hb_records: int = 300, heap: int = 1024) -> dict[str, Any]:
    """Bytes of every kind of transaction the batcher signs for these windows (``SIZES``)."""
    run = mp.run_unix(code=SIZES, heap=heap, timeout=600,
                      args=(str(path), seed.hex(), device.hex(), segment, SEQ, widen, hb_records))
    return run.check().results[-1]


def run_online(path: Path, seed: bytes, device: bytes, segment: str, windows: int, warm: int,
               window_s: float, flash: dict[str, Any], img: Path, quota: int, hb_every: int,
               heap: int) -> dict[str, Any]:
    """The batcher's online work for ``windows`` windows after ``warm`` (``ONLINE``)."""
    img.unlink(missing_ok=True)
    args = (path, seed.hex(), device.hex(), segment, windows, warm, int(window_s * 1_000_000),
            flash["block_size"], flash["block_count"], img, quota, hb_every)
    run = mp.run_unix(code=ONLINE, heap=heap, args=tuple(map(str, args)), timeout=1800)
    return run.check().results[-1]


def offline(sizes: dict[str, Any], quota: int, window_s: float, hb_every: int) -> dict[str, Any]:
    """The journal offline from empty, window by window, as ``App.close_window`` and
    ``App.heartbeat`` fill it (no acks; no events): when decimation starts (``decimate_at`` %),
    when windows are widened (``widen_at`` %), and when the first routine window no longer fits
    the quota short of its ``event_room`` %. Byte sizes: the mean full-rate window, the measured
    transaction of k decimated windows, the link-down heartbeat; each plus the record header."""
    pol = sizes["policy"]
    hdr = sizes["header"]
    full = sum(sizes["full"]) / len(sizes["full"])
    full_body = sum(sizes["full_body"]) / len(sizes["full_body"])
    limit = quota - quota * pol["event_room"] // 100  # routine records stop short of this
    pending = 0.0
    agg = 0
    last_hb: float | None = None
    t50 = t80 = None
    hbs = 0
    hb_bytes = 0.0
    w = 0
    covered = 0.0  # end of the last window whose readings are on flash

    def room(body_bytes: float) -> bool:
        # App._room: a skip event may go first, hence two overheads
        return pending + body_bytes + 2 * pol["tx_overhead"] <= limit

    while True:
        w += 1
        t = w * window_s
        fill = int(pending * 100 // quota)
        if fill >= pol["decimate_at"] and t50 is None:
            t50 = t - window_s
        if fill >= pol["widen_at"] and t80 is None:
            t80 = t - window_s
        dropped = False
        if fill >= pol["decimate_at"]:
            agg += 1
        elif room(full_body):
            pending += hdr + full
            covered = t
        else:
            dropped = True
        if agg and (fill < pol["widen_at"] or agg >= pol["widen_windows"]):
            if room(sizes["agg_body"][agg - 1]):
                pending += hdr + sizes["agg"][agg - 1]
                covered = t
            else:
                dropped = True
            agg = 0
        if dropped:
            break
        if w % hb_every == 0 and (last_hb is None or (t - last_hb) * 1000 >= pol["offline_hb_ms"]):
            if room(64):  # App._sign's default body estimate
                pending += hdr + sizes["hb_down"]
                hb_bytes += hdr + sizes["hb_down"]
                hbs += 1
            last_hb = t
        if w > 10_000_000:
            raise RuntimeError("the journal never fills: the replay is wrong")
    t50 = covered if t50 is None else t50
    t80 = covered if t80 is None else t80
    return {
        "offline_hours": round(covered / 3600, 3),
        "phase_full_rate_h": round(t50 / 3600, 3),
        "phase_decimated_h": round((t80 - t50) / 3600, 3),
        "phase_widened_h": round((covered - t80) / 3600, 3),
        "first_drop_s": w * window_s,
        "pending_at_first_drop": int(pending),
        "offline_heartbeats": hbs,
        "offline_heartbeat_bytes": int(hb_bytes),
        "bytes_per_s": {
            "full_rate": round((hdr + full) / window_s, 1),
            "decimated": round((hdr + sizes["agg"][0]) / window_s, 1),
            "widened": round((hdr + sizes["agg"][-1]) / (window_s * pol["widen_windows"]), 1),
            "heartbeats": round((hdr + sizes["hb_down"]) * 1000 / pol["offline_hb_ms"], 2),
        },
    }
