"""A Modbus master (client): a sans-IO core, and a blocking loop over a link.

    from lightnode.drivers import link
    from lightnode.drivers.modbus import master
    m = master.Master(link.TcpLink("127.0.0.1", 502), master.TCP, timeout_ms=500, retries=2)
    m.read_holding(1, 0, 2)           # [230, 231], or ExceptionResponse(3, 2)
    m.write_register(1, 10, 1234)     # (10, 1234)
    m.read_points(1, reads)           # values of a point map's ``read`` objects

``MasterCore`` makes request frames and turns response bytes into
results; ``Master`` sends, waits (every wait bounded by ``timeout_ms``),
retries a timeout or a malformed answer ``retries`` times, keeps
``poll_delay_ms`` (and, on RTU, t3.5) of quiet between transactions, and
reconnects through ``connect`` when a TCP peer closed. On RTU the line
settings are the link's; the project's default is 9600 8E1
(``rtu.DEFAULT_LINE``).
"""

import time

try:
    from lightnode.drivers import link as _link
except ImportError:  # a port without sockets (the WebAssembly one): the sans-IO part still works
    _link = None
from lightnode.drivers import ticks

from . import (
    ExceptionResponse,
    ModbusLinkError,
    ModbusTimeout,
    RemoteProtocolError,
    pdu,
    registers,
    rtu,
    tcp,
)

RTU = "rtu"
TCP = "tcp"


def _sleep_us(us):
    if us <= 0:
        return
    try:
        time.sleep_us(us)
    except AttributeError:  # CPython
        time.sleep(us / 1000000)


class MasterCore:
    """Request bytes out, results in; one outstanding request at a time."""

    def __init__(self, framing):
        if framing not in (RTU, TCP):
            raise ValueError("framing is master.RTU or master.TCP")
        self.framing = framing
        self.framer = rtu.RtuFramer() if framing == RTU else tcp.TcpFramer()
        self.tid = 0
        self.unit = 0
        self.request = None
        self.stale = None  # a TCP transaction id seen instead of ours

    def start(self, unit, request):
        """The frame that sends ``request`` (``(function, address, arg)``) to ``unit``."""
        body = pdu.encode_request(*request)
        self.framer.reset()
        self.unit = unit
        self.request = request
        self.stale = None
        if self.framing == RTU:
            return rtu.encode(unit, body)
        self.tid = (self.tid + 1) & 0xFFFF
        return tcp.encode(self.tid, unit, body)

    def receive(self, data):
        """The result once ``data`` completes the answer, else None; RemoteProtocolError if wrong."""
        if self.request is None:
            raise RemoteProtocolError("%d bytes arrived with no request outstanding" % len(data))
        framer = self.framer
        while len(data):
            k = framer.feed(data)
            if k == 0:
                raise RemoteProtocolError("receive buffer full without a frame")
            data = data[k:] if k < len(data) else b""
            result = self._take()
            if result is not None:
                return result
        return None

    def receive_buffer(self):
        """Where the answer's next bytes go (the framer's buffer); then ``received(n)``.

        ``receive`` without a copy: a link reads straight into it with ``recv_into``.
        """
        if self.request is None:
            raise RemoteProtocolError("bytes arriving with no request outstanding")
        return self.framer.window()

    def received(self, n):
        """The result once the ``n`` bytes read into ``receive_buffer`` complete the answer, else None."""
        self.framer.wrote(n)
        return self._take()

    def _take(self):
        while True:
            if self.framing == RTU:
                got = self.framer.response()
                if got is None:
                    return None
                unit, body = got
            else:
                got = self.framer.frame()
                if got is None:
                    return None
                tid, unit, body = got
                if tid != self.tid:
                    self.stale = tid  # an answer to an earlier, abandoned request
                    continue
            if unit != self.unit:
                raise RemoteProtocolError("answer from unit %d, asked unit %d" % (unit, self.unit))
            result = pdu.decode_response(body, self.request)
            self.request = None
            return result

    def pending(self):
        return self.framer.pending()


class Master:
    """Blocking requests over a link from ``lightnode.drivers.link`` (or ``rs485.Rs485Link``)."""

    def __init__(self, link, framing, timeout_ms=1000, retries=2, poll_delay_ms=0,
                 baud=rtu.DEFAULT_LINE[0], connect=None):
        self.link = link
        self.core = MasterCore(framing)
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.connect = connect
        gap = poll_delay_ms * 1000
        if framing == RTU:
            gap = max(gap, rtu.t35_us(baud))
        self.gap_us = gap
        self._last = ticks.ticks_add(ticks.ticks_us(), -gap)
        self.requests = 0
        self.retried = 0

    def close(self):
        if self.link is not None:
            self.link.close()

    def transact(self, unit, request):
        """The result of one request, retried; ModbusTimeout, RemoteProtocolError or ModbusLinkError."""
        self.requests += 1
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            try:
                return self._once(unit, request)
            except (ModbusTimeout, RemoteProtocolError) as e:
                last = e
                if self.core.framing == TCP and self.connect is not None and isinstance(e, RemoteProtocolError):
                    self._reconnect()  # a TCP stream that lost its framing is not worth reading on
            except _link.LinkError as e:
                last = ModbusLinkError("%s (unit %d, function %d)" % (e, unit, request[0]))
                if self.connect is None:
                    raise last
                try:
                    self._reconnect()
                except _link.LinkError as e2:
                    raise ModbusLinkError("reconnect failed: %s" % e2)
        raise last

    def _reconnect(self):
        try:
            self.link.close()
        except Exception:  # noqa: BLE001 - closing a broken link may fail any way
            pass
        self.link = self.connect()

    def _once(self, unit, request):
        link = self.link
        wait = self.gap_us - ticks.ticks_diff(ticks.ticks_us(), self._last)
        _sleep_us(wait)
        link.drain()
        frame = self.core.start(unit, request)
        link.send(frame)
        if unit == 0 and self.core.framing == RTU:
            self._last = ticks.ticks_us()
            self.core.request = None
            return None  # a broadcast gets no answer
        deadline = ticks.ticks_add(ticks.ticks_us(), self.timeout_ms * 1000)
        try:
            while True:
                left = ticks.ticks_diff(deadline, ticks.ticks_us()) // 1000
                if left <= 0:
                    raise _link.LinkTimeout("")
                result = self.core.received(link.recv_into(self.core.receive_buffer(), left))
                if result is not None:
                    return result
        except _link.LinkTimeout:
            raise self._timeout(unit, request)
        except _link.LinkClosed:
            raise _link.LinkClosed("peer closed the link after %d bytes of the answer"
                                   % self.core.pending())
        finally:
            self._last = ticks.ticks_us()

    def _timeout(self, unit, request):
        if self.core.stale is not None:
            return RemoteProtocolError("answer carried transaction id %d, expected %d"
                                       % (self.core.stale, self.core.tid))
        got = self.core.pending()
        if got:
            return ModbusTimeout("incomplete answer from unit %d: %d bytes within %d ms (function %d)"
                                 % (unit, got, self.timeout_ms, request[0]))
        return ModbusTimeout("no answer from unit %d within %d ms (function %d)"
                             % (unit, self.timeout_ms, request[0]))

    # One method per function code.
    def read_coils(self, unit, address, count):
        return self.transact(unit, (1, address, count))

    def read_discrete_inputs(self, unit, address, count):
        return self.transact(unit, (2, address, count))

    def read_holding(self, unit, address, count):
        return self.transact(unit, (3, address, count))

    def read_input(self, unit, address, count):
        return self.transact(unit, (4, address, count))

    def write_coil(self, unit, address, value):
        return self.transact(unit, (5, address, bool(value)))

    def write_register(self, unit, address, value):
        return self.transact(unit, (6, address, value))

    def write_coils(self, unit, address, values):
        return self.transact(unit, (15, address, [bool(v) for v in values]))

    def write_registers(self, unit, address, values):
        return self.transact(unit, (16, address, list(values)))

    def read(self, unit, table, address, count):
        """Read ``count`` items of a point map's ``table`` (coil, discrete, holding, input)."""
        try:
            function = pdu.READ_FUNCTION[table]
        except KeyError:
            raise ValueError("unknown table %r" % (table,))
        return self.transact(unit, (function, address, count))

    def read_value(self, unit, table, address, type_="u16", order="ABCD"):
        """One typed value, or the ExceptionResponse the device gave."""
        regs = self.read(unit, table, address, registers.count(type_))
        if isinstance(regs, ExceptionResponse):
            return regs
        return registers.decode(regs, type_, order)

    def read_points(self, unit, reads, max_gap=8):
        """Values of a point map's ``read`` objects, in their order, in as few requests as fit.

        A point in a block the device refused gets that ExceptionResponse.
        """
        out = [None] * len(reads)
        for table, address, count in registers.plan(reads, max_gap=max_gap):
            got = self.read(unit, table, address, count)
            for i in range(len(reads)):
                r = reads[i]
                if r["table"] != table:
                    continue
                first, last = registers.span(r)
                if first < address or last >= address + count:
                    continue
                if isinstance(got, ExceptionResponse):
                    out[i] = got
                else:
                    out[i] = registers.decode_point(r, got, address)
        return out
