# The ticks shim wraps at 2**30 us on every interpreter (boards do; the
# 64-bit unix port and CPython never would).
from lightnode.drivers import ticks

PORTS = ("unix", "wasm")


def test_wraps_at_board_period():
    assert ticks.PERIOD == 1 << 30
    ticks.force_wrap(2000)
    t0 = ticks.ticks_us()
    assert ticks.PERIOD - 3000 < t0 < ticks.PERIOD
    later = ticks.ticks_add(t0, 5000)
    assert later < t0  # wrapped
    assert ticks.ticks_diff(later, t0) == 5000
    assert ticks.ticks_diff(t0, later) == -5000


def test_diff_across_real_wrap():
    ticks.force_wrap(500)
    t0 = ticks.ticks_us()
    n = 0
    while True:
        t1 = ticks.ticks_us()
        n += 1
        if t1 < t0 or n > 1000000:
            break
    assert t1 < t0, "clock did not wrap"
    d = ticks.ticks_diff(t1, t0)
    assert 0 < d < 1000000


def test_add_negative_and_large():
    t = ticks.PERIOD - 10
    assert ticks.ticks_add(t, 20) == 10
    assert ticks.ticks_add(10, -20) == ticks.PERIOD - 10
    assert ticks.ticks_diff(ticks.ticks_add(t, (1 << 29) - 1), t) == (1 << 29) - 1
