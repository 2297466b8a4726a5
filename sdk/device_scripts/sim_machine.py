# A stand-in for MicroPython's ``machine`` on the unix port: enough of
# Pin, UART, WDT and the reset functions for the firmware and drivers to
# import and run as on a board. A script installs it before any import:
#     import sim_machine; sim_machine.install(board_facts)
# The watchdog refuses a timeout the board's own would refuse.
import sys

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_board = {}  # type: dict
_cause = [PWRON_RESET]


def install(facts=None):
    """Make ``import machine`` give this module; ``facts`` is the board.json being stood in for."""
    _board.clear()
    _board.update(facts or {})
    sys.modules["machine"] = sys.modules[__name__]


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
        self._v = 0 if value is None else value

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
    def __init__(self, id=0, timeout=5000):
        limit = _board.get("watchdog_max_ms")
        if limit is not None and timeout > limit:
            raise ValueError("watchdog timeout %d ms over the board's %d ms" % (timeout, limit))
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class SPI:
    def __init__(self, spi_id, baudrate=1000000, **kw):
        self.id = spi_id
        self.kw = kw
