"""RS-485 on a board: the transceiver's driver-enable pin around each UART write, our echo dropped.

A half-duplex transceiver drives the pair only while DE is high. DE goes
high, the frame is written, and DE drops only once the UART has shifted
out the last stop bit (``flush()`` on rp2 and recent ports, ``txdone()``
polled on esp32): dropping it when ``write()`` returns would cut the
frame's tail, since ``write`` returns once the bytes are in the FIFO.
With the receiver left enabled (RE tied low) the UART hears its own
frame; that echo is read back, compared and dropped, so the framer above
sees only the other side.

    from machine import UART, Pin
    from lightnode.drivers.modbus import rs485, master
    line = rs485.Rs485Link(rs485.open_uart(0, tx=0, rx=1), Pin(2, Pin.OUT), echo=True)
    m = master.Master(line, master.RTU, baud=9600)
"""

import time

from lightnode.drivers import ticks
from lightnode.drivers.link import LinkError, LinkTimeout

from . import rtu

# machine.UART's parity argument: None, 0 (even) or 1 (odd).
_PARITY = {"N": None, "E": 0, "O": 1}


def _sleep_ms(ms):
    try:
        time.sleep_ms(ms)
    except AttributeError:  # CPython
        time.sleep(ms / 1000)


def open_uart(uart_id, baud=rtu.DEFAULT_LINE[0], parity=rtu.DEFAULT_LINE[1], stop=rtu.DEFAULT_LINE[2], **pins):
    """A ``machine.UART`` set for Modbus RTU (default 9600 8E1)."""
    import machine

    if parity not in _PARITY:
        raise ValueError("parity is N, E or O")
    return machine.UART(uart_id, baudrate=baud, bits=8, parity=_PARITY[parity], stop=stop,
                        timeout=0, **pins)


class Rs485Link:
    """A link (send, recv, recv_into, drain, close) over a UART and a DE pin; reads poll ``uart.any()``."""

    def __init__(self, uart, de, baud=rtu.DEFAULT_LINE[0], echo=True, timeout_ms=1000):
        self.uart = uart
        self.de = de
        self.baud = baud
        self.echo = echo
        self.timeout_ms = timeout_ms
        self.buf = bytearray(rtu.MAX_ADU)
        self.mv = memoryview(self.buf)
        de.value(0)

    def _wait_sent(self):
        u = self.uart
        if hasattr(u, "flush"):
            u.flush()
        if hasattr(u, "txdone"):
            while not u.txdone():
                pass

    def send(self, data):
        self.de.value(1)
        try:
            self.uart.write(data)
            self._wait_sent()
        finally:
            self.de.value(0)
        if self.echo:
            self._drop_echo(data)

    def _drop_echo(self, data):
        n = len(data)
        # The echo is complete once the frame has been on the line; allow two
        # characters and a millisecond for the receive FIFO to hand it over.
        limit = (n + 2) * rtu.char_us(self.baud) // 1000 + 2
        got = self._read_exact(self.mv[:n], limit)
        if got < n:
            raise LinkError("echo missing: %d of %d bytes came back (receiver disabled, or set echo=False)"
                            % (got, n))
        if self.buf[:n] != data:
            raise LinkError("echo differs from what was sent: another driver on the bus (collision)")

    def _read_exact(self, into, limit_ms):
        n = len(into)
        got = 0
        t0 = ticks.ticks_us()
        while got < n:
            if self.uart.any():
                k = self.uart.readinto(into[got:])
                got += k or 0
                continue
            if ticks.ticks_diff(ticks.ticks_us(), t0) >= limit_ms * 1000:
                break
            _sleep_ms(1)
        return got

    def recv_into(self, buf, timeout_ms=None):
        """Read into ``buf`` what has arrived: how many bytes; LinkTimeout if none within the timeout."""
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        t0 = ticks.ticks_us()
        while not self.uart.any():
            if ticks.ticks_diff(ticks.ticks_us(), t0) >= t * 1000:
                raise LinkTimeout("no bytes within %d ms" % t)
            _sleep_ms(1)
        return self.uart.readinto(buf) or 0

    def recv(self, n=rtu.MAX_ADU, timeout_ms=None):
        k = self.recv_into(self.mv[:min(n, rtu.MAX_ADU)], timeout_ms)
        return bytes(self.mv[:k])

    def drain(self):
        while self.uart.any():
            self.uart.readinto(self.mv)

    def close(self):
        self.de.value(0)
