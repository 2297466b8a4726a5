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
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import cbor2
from lightnode.simulator import signals

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _window  # noqa: E402

# -- IEEE C37.118.2 data frames -------------------------------------------------

SYNC_DATA = 0xAA01  # leading byte 0xAA, frame type 000 (data), version 1
IDCODE = 7
TIME_BASE = 1_000_000  # FRACSEC counts microseconds (the CFG's TIME_BASE)
_INT16_MAX = 32767


def crc_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-CCITT as C37.118.2 defines CHK: polynomial 0x1021, initial 0xFFFF, MSB first."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def _frame(t_us: int, stat: int, body: bytes) -> bytes:
    """SYNC, FRAMESIZE, IDCODE, SOC, FRACSEC, STAT, then ``body``, then CHK."""
    soc, us = divmod(t_us, 1_000_000)
    fracsec = us * TIME_BASE // 1_000_000  # time quality flags (top byte) 0: locked
    size = 2 + 2 + 2 + 4 + 4 + 2 + len(body) + 2
    head = struct.pack(">HHHIIH", SYNC_DATA, size, IDCODE, soc, fracsec, stat)
    frame = head + body
    return frame + struct.pack(">H", crc_ccitt(frame))


def phunit(nominal: float, kind: int) -> int:
    """The CFG's PHUNIT for a phasor: kind (0 voltage, 1 current) and 10^-5 V or A per bit.

    Chosen so that 1.6 times nominal still fits the 16-bit magnitude.
    """
    scale = math.ceil(nominal * 1.6 / 65535 * 1e5)
    return (kind << 24) | scale


def _int16(x: float) -> int:
    return max(-_INT16_MAX - 1, min(_INT16_MAX, round(x)))


def c37118_frames(window: signals.PmuWindow, integer: bool = False) -> list[bytes]:
    """The window as C37.118.2 data frames, float or integer format, polar phasors."""
    frames = []
    for i, t in enumerate(window.times):
        body = b""
        for name in signals.PHASORS:
            mag = signals.BY_NAME[name + ".mag"]
            ang = signals.BY_NAME[name + ".ang"]
            m = window.floats[mag.id][i]
            a = math.radians(window.floats[ang.id][i])
            if integer:
                assert mag.nominal is not None
                unit = phunit(mag.nominal, 1 if mag.unit == "A" else 0) & 0xFFFFFF
                body += struct.pack(">Hh", round(m / (unit * 1e-5)), _int16(a * 1e4))
            else:
                body += struct.pack(">ff", m, a)
        f = window.floats[signals.FREQ][i]
        r = window.floats[signals.ROCOF][i]
        if integer:
            # FREQ: deviation from nominal in mHz; DFREQ: ROCOF times 100.
            body += struct.pack(">hh", _int16((f - signals.NOMINAL_HZ) * 1000), _int16(r * 100))
        else:
            body += struct.pack(">ff", f, r)
        frames.append(_frame(t, 0, body))
    return frames


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
