"""How compact a signed readings transaction is, against what a PMU itself sends.

One Pico W window (5 s, 50 frames/s) of the simulated PMU, in bytes per
frame:

- ours: the whole signed wire transaction (``[envelope, payload]`` with the
  64-byte Ed25519 signature and every header), divided by the frames;
- IEEE C37.118.2 data frames, one PMU, polar phasors: float format, and
  integer format (16-bit phasors scaled by the CFG's PHUNIT, 16-bit
  FREQ/DFREQ); the float frames concatenated and zlib-compressed at level 9;
- a plain JSON of the same readings with floats.

Run from the repository root; the last line printed is one JSON object:

    .venv/bin/python bench/compactness.py
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from pathlib import Path
from typing import Any

import cbor2
from lightnode.drivers.c37118 import frames
from lightnode.simulator import pmu_server, signals

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _window  # noqa: E402

# -- IEEE C37.118.2 data frames -------------------------------------------------
# Made by the driver's own encoder (lightnode.drivers.c37118) from the
# simulated PMU's configuration (lightnode.simulator.pmu_server): one
# definition of the format, which tshark checks in tests/test_c37118_peers.py.

IDCODE = 7
VERSION = frames.VERSION_2005  # SYNC 0xAA01, as these figures were first taken
crc_ccitt = frames.crc_ccitt  # CHK, for callers of this module


def c37118_frames(window: signals.PmuWindow, integer: bool = False) -> list[bytes]:
    """The window as C37.118.2 data frames, float or integer format, polar phasors.

    Integer format: 16-bit phasors scaled by the CFG's PHUNIT (1.6 times
    nominal fits), FREQ as mHz from nominal, DFREQ times 100.
    """
    cfg = pmu_server.make_config(IDCODE, "int-polar" if integer else "float-polar", window.rate,
                                 version=VERSION)
    return [frames.encode_data(cfg, pmu_server.frame_values(cfg, window, i))
            for i in range(window.frames)]


# -- plain JSON -----------------------------------------------------------------


def json_window(window: signals.PmuWindow) -> bytes:
    """The readings as compact JSON, each value a float at its point's resolution."""

    def digits(res: float) -> int:
        return max(0, -math.floor(math.log10(res)) + 1)

    rows = []
    for i, t in enumerate(window.times):
        row: dict[str, Any] = {"t": t}
        for p in window.points:
            row[p.name] = round(window.values[p.id][i] * p.resolution, digits(p.resolution))
        rows.append(row)
    doc = {"device": _window.DEVICE_ID.hex(), "frames": rows}
    return json.dumps(doc, separators=(",", ":")).encode()


# -- where our bytes go ---------------------------------------------------------


def _size(x: Any) -> int:
    return len(cbor2.dumps(x, canonical=True))


def breakdown(tx: dict[str, Any]) -> dict[str, int]:
    """Bytes of the signed transaction by part (sums to the whole)."""
    series = tx["body"][0]
    points = series[3]
    per_point = {}
    for p in points:
        name = signals.BY_ID[p[0]].name
        per_point[name] = _size(p)
    values = sum(per_point.values())
    payload = len(tx["payload"])
    wire_total = len(tx["wire"])
    parts = {
        "envelope (COSE_Sign1, signature, hash, protected)": len(tx["envelope"]),
        "transaction array and payload bstr headers": wire_total - len(tx["envelope"]) - payload,
        "payload map without body": payload - _size(tx["body"]),
        "body and series headers, quality": _size(tx["body"]) - values - _size(series[2]),
        "dt (timestamps)": _size(series[2]),
    }
    parts.update({"point " + k: v for k, v in per_point.items()})
    assert sum(parts.values()) == wire_total
    return parts


def main() -> dict[str, Any]:
    tx = _window.signed_transaction()
    window = tx["window"]
    n = tx["frames"]
    ours = len(tx["wire"])
    floats = c37118_frames(window)
    ints = c37118_frames(window, integer=True)
    blob = b"".join(floats)
    result = {
        "frames": n,
        "window_s": _window.WINDOW_S,
        "transaction_bytes": ours,
        "bytes_per_frame": round(ours / n, 2),
        "c37118_float_bytes_per_frame": round(len(blob) / n, 2),
        "c37118_int_bytes_per_frame": round(sum(map(len, ints)) / n, 2),
        "c37118_zlib_bytes_per_frame": round(len(zlib.compress(blob, 9)) / n, 2),
        "json_bytes_per_frame": round(len(json_window(window)) / n, 2),
    }
    result["target_third_of_float"] = ours * 3 <= len(blob)
    result["target_below_zlib"] = ours < len(zlib.compress(blob, 9))
    for part, size in breakdown(tx).items():
        print(f"{part:52s} {size:6d} bytes  {size / n:6.2f} per frame")
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
