"""Listen-only Modbus RTU: pair a SCADA master's requests with the slaves' answers, never transmit.

One master owns an RS-485 bus; a light node wired to the same pair only
listens. Both directions arrive as one byte stream, so the tap reads each
frame as the answer to the outstanding request when its CRC and function
fit, else as a new request, else drops a byte and looks again (it
started mid-frame, or a frame was damaged).

    t = tap.Tap()
    for unit, request, result in t.feed(data):   # result None: the request went unanswered
        ...
    t.readings(unit, request, result, reads)      # [(index, value)] for the map points it covers
    for exchange in tap.listen(link, seconds=10):   # the blocking loop; reads only
        ...
"""

try:
    from lightnode.drivers import link as _link
except ImportError:  # a port without sockets (the WebAssembly one): the sans-IO part still works
    _link = None
from lightnode.drivers import ticks

from . import ExceptionResponse, RemoteProtocolError, pdu, registers, rtu


class Tap:
    """The sans-IO decoder. ``feed`` returns the exchanges the bytes completed."""

    def __init__(self, unit=None):
        self.unit = unit  # None: every unit on the bus
        self.framer = rtu.RtuFramer()
        self.pending = None  # (unit, request) awaiting its answer
        self.frames = 0
        self.dropped = 0  # bytes thrown away while looking for a frame
        self.unanswered = 0

    def gap(self):
        """The line was silent for t3.5: bytes that are not a whole frame by now never will be."""
        n = self.framer.pending()
        if n:
            self.dropped += n
            self.framer.reset()

    def feed(self, data):
        out = []
        data = memoryview(data)
        while len(data):
            room = rtu.MAX_ADU - self.framer.pending()
            if room == 0:
                self.framer.skip(1)
                self.dropped += 1
                continue
            k = min(room, len(data))
            self.framer.feed(data[:k])
            data = data[k:]
            self._scan(out)
        return out

    def _emit(self, out, unit, request, result):
        if self.unit is None or unit == self.unit:
            out.append((unit, request, result))

    def _scan(self, out):
        f = self.framer
        while f.pending() >= 4:
            wait = False
            if self.pending is not None:
                unit, request = self.pending
                try:
                    got = f.response(False)
                    if got is None:
                        wait = True
                    elif got[0] == unit:
                        result = pdu.decode_response(got[1], request)
                        f.response()
                        self.frames += 1
                        self.pending = None
                        self._emit(out, unit, request, result)
                        continue
                except RemoteProtocolError:
                    pass
            try:
                got = f.request(False)
                if got is None:
                    wait = True
                else:
                    request = pdu.decode_request(got[1])
                    unit = got[0]
                    f.request()
                    self.frames += 1
                    if self.pending is not None:
                        self.unanswered += 1
                        self._emit(out, self.pending[0], self.pending[1], None)
                    self.pending = None if unit == 0 else (unit, request)  # a broadcast gets no answer
                    continue
            except RemoteProtocolError:
                pass
            if wait:
                return
            f.skip(1)
            self.dropped += 1

    def readings(self, unit, request, result, reads):
        """``[(index, value)]`` for each of ``reads`` (a map's ``read`` objects) this exchange answered."""
        if result is None or isinstance(result, ExceptionResponse) or request[0] > 4:
            return []
        table = pdu.TABLE_OF[request[0]]
        base = request[1]
        out = []
        for i in range(len(reads)):
            r = reads[i]
            if r["table"] != table:
                continue
            first, last = registers.span(r)
            if first >= base and last < base + len(result):
                out.append((i, registers.decode_point(r, result, base)))
        return out


def listen(link, seconds=None, tap=None, baud=rtu.DEFAULT_LINE[0]):
    """Yield ``(unit, request, result)`` from ``link`` for ``seconds`` (None: forever). Never sends."""
    tap = tap or Tap()
    quiet_ms = max(1, (rtu.t35_us(baud) + 999) // 1000)
    end = None if seconds is None else ticks.ticks_add(ticks.ticks_us(), int(seconds * 1000000))
    while end is None or ticks.ticks_diff(end, ticks.ticks_us()) > 0:
        try:
            data = link.recv(rtu.MAX_ADU, quiet_ms)
        except _link.LinkTimeout:
            tap.gap()
            continue
        for exchange in tap.feed(data):
            yield exchange
