# A stand-in for MicroPython's ``machine`` on the unix port: enough of
# Pin, UART, WDT, RTC and the reset functions for the firmware and drivers
# to import and run as on a board. A script installs it before any import:
#     import sim_machine; sim_machine.install(board_facts)
# The watchdog refuses a timeout the board's own would refuse, and resets
# when it is not fed in time: the process ends by WDT_SIGNAL (a test sees
# it), as a board resets. What the next process start reads as its reset
# cause is kept in RESET_FILE in the working directory (the board's
# flash): a watchdog reset or machine.reset() say so; any other start (a
# SIGKILL, a first run) is a power-on. SIM_FILE there, if a test writes
# it, sets the hardware around the board: {"pins": {"22": 0}} (input
# levels) and {"rtc_offset_s": -30} (the RTC that far from the host clock).
import sys

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

RESET_FILE = ".sim_reset"
SIM_FILE = "sim.json"
WDT_SIGNAL = "USR2"  # the process dies by SIGUSR2 (exit status -12 from Popen)

_board = {}  # type: dict
_cause = [PWRON_RESET]
_sim = {}  # type: dict


def install(facts=None):
    """Make ``import machine`` give this module; ``facts`` is the board.json being stood in for."""
    import json
    import os

    _board.clear()
    _board.update(facts or {})
    _cause[0] = PWRON_RESET
    try:
        with open(RESET_FILE) as f:
            _cause[0] = int(f.read())
        os.remove(RESET_FILE)
    except (OSError, ValueError):
        pass
    _sim.clear()
    try:
        with open(SIM_FILE) as f:
            _sim.update(json.loads(f.read()))
    except (OSError, ValueError):
        pass
    sys.modules["machine"] = sys.modules[__name__]


def _next_cause(cause):
    # what the next start of the process reads: the flash keeps it, as a board's reset register
    try:
        with open(RESET_FILE, "w") as f:
            f.write(str(cause))
    except OSError:
        pass


def reset_cause():
    return _cause[0]


def unique_id():
    return b"\x00\x11\x22\x33\x44\x55\x66\x77"


def freq(hz=None):
    return 133000000


def idle():
    pass


def soft_reset():
    _cause[0] = SOFT_RESET
    raise SystemExit


def reset():
    _cause[0] = HARD_RESET
    _next_cause(HARD_RESET)
    raise SystemExit


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, pin, mode=-1, pull=-1, value=None):
        gpio = _board.get("gpio")
        if gpio is not None and isinstance(pin, int):
            if not 0 <= pin < gpio["count"] or pin in gpio["reserved"]:
                raise ValueError("invalid pin %d on %s" % (pin, _board.get("name")))
        self.id = pin
        self.mode = mode
        if value is None:
            # an input reads what the test set in sim.json, else its pull (up: 1)
            value = _sim.get("pins", {}).get(str(pin), 1 if pull == self.PULL_UP else 0)
        self._v = value

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0
        return None

    def on(self):
        self._v = 1

    def off(self):
        self._v = 0

    def __call__(self, v=None):
        return self.value(v)


class UART:
    """A UART whose writes are kept in ``sent`` and whose reads come from ``feed``."""

    def __init__(self, uart_id, baudrate=9600, **kw):
        self.id = uart_id
        self.baudrate = baudrate
        self.kw = kw
        self.sent = bytearray()
        self._rx = bytearray()

    def feed(self, data):
        self._rx.extend(data)

    def any(self):
        return len(self._rx)

    def write(self, data):
        self.sent.extend(data)
        return len(data)

    def read(self, n=-1):
        if not self._rx:
            return None
        n = len(self._rx) if n < 0 else min(n, len(self._rx))
        out = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return out

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if not data:
            return None
        buf[: len(data)] = data
        return len(data)

    def flush(self):
        pass

    def txdone(self):
        return True


class WDT:
    """Started, it cannot be stopped: unfed for ``timeout`` ms, the process ends (a reset)."""

    def __init__(self, id=0, timeout=5000):
        limit = _board.get("watchdog_max_ms")
        if limit is not None and timeout > limit:
            raise ValueError("watchdog timeout %d ms over the board's %d ms" % (timeout, limit))
        import time

        self.timeout = timeout
        self.feeds = 0
        # one slot, written in place: the watching thread reads it without a lock
        self._fed = [time.ticks_ms()]
        import _thread

        _thread.start_new_thread(self._watch, ())

    def feed(self):
        import time

        self.feeds += 1
        self._fed[0] = time.ticks_ms()

    def _watch(self):
        import os
        import time

        while True:
            time.sleep_ms(50)
            if time.ticks_diff(time.ticks_ms(), self._fed[0]) > self.timeout:
                _next_cause(WDT_RESET)
                print("sim_machine: watchdog not fed for %d ms: reset" % self.timeout)
                # no way to end a process from a thread but a signal: $PPID is this process
                os.system("kill -s %s $PPID" % WDT_SIGNAL)
                time.sleep_ms(1000)


class RTC:
    """The host clock, moved by ``rtc_offset_s`` of sim.json (a board's RTC is often wrong)."""

    def datetime(self, dt=None):
        import time

        if dt is not None:
            raise OSError("the stand-in's RTC is read-only")
        t = time.time() + _sim.get("rtc_offset_s", 0)
        y, mo, d, h, mi, s, wd, _yd = time.localtime(int(t))[:8]
        return (y, mo, d, wd, h, mi, s, 0)


class SPI:
    def __init__(self, spi_id, baudrate=1000000, **kw):
        self.id = spi_id
        self.kw = kw
