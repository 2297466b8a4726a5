"""Microsecond ticks that wrap as a board's do, on every interpreter.

On rp2 and esp32 ``time.ticks_us()`` wraps every 2**30 us (17.9 minutes);
the 64-bit unix port and CPython never wrap, so code tested there would
never meet the wrap. There is one clock here, in microseconds; a
millisecond clock derived from it would wrap at an odd period. Everything that measures time goes through this shim,
which wraps at 2**30 everywhere, and tests move the wrap close with
``force_wrap``.

    from lightnode.drivers import ticks
    t0 = ticks.ticks_us()
    ...
    if ticks.ticks_diff(ticks.ticks_us(), t0) > 1750:
        ...
"""

import time

PERIOD = 1 << 30
_MASK = PERIOD - 1
_HALF = PERIOD >> 1

try:
    _raw_us = time.ticks_us
except AttributeError:  # CPython

    def _raw_us():
        return time.monotonic_ns() // 1000


_offset = 0


def ticks_us():
    return (_raw_us() + _offset) & _MASK


def ticks_add(t, delta):
    return (t + delta) & _MASK


def ticks_diff(a, b):
    """``a - b`` in microseconds, correct across one wrap (|a - b| < 2**29)."""
    return ((a - b + _HALF) & _MASK) - _HALF


def force_wrap(in_us=1000000):
    """Shift the clock so that it wraps ``in_us`` from now (tests only)."""
    global _offset
    _offset = 0
    _offset = (PERIOD - in_us - _raw_us()) & _MASK
