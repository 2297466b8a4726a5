"""A blocking C37.118 client over a TCP link, on the sans-IO ``client.Session``.

``Connection`` moves bytes between a ``Session`` and a link
(``link.TcpLink``), each wait bounded by one deadline. Under CPython,
``client.connect`` and ``client.Connection`` are these.

    pmu = connect("127.0.0.1", 4712, idcode=7, timeout_ms=2000)
    cfg = pmu.config()
    pmu.start()
    f = pmu.read()                      # the session's DataFrame, refilled on each read
    pmu.stop(); pmu.close()
"""

from lightnode.drivers import ticks

from . import frames
from .client import Session
from .frames import CMD_DATA_OFF, CMD_DATA_ON, CMD_SEND_CFG2, CMD_SEND_HDR
from .stream import DEFAULT_MAX_FRAME


class Connection:
    """A blocking C37.118 client over a link with ``send``, ``recv_into(buf, timeout_ms)`` and ``close``."""

    def __init__(self, link, idcode, timeout_ms=3000, max_frame=DEFAULT_MAX_FRAME):
        # Imported here: Session runs where there are no sockets (the WebAssembly port).
        from lightnode.drivers.link import LinkClosed, LinkTimeout

        self._closed, self._timeout = LinkClosed, LinkTimeout
        self.link = link
        self.session = Session(idcode, max_frame)
        self.timeout_ms = timeout_ms

    @property
    def cfg(self):
        return self.session.config

    def send(self, cmd):
        self.link.send(self.session.command(cmd))

    def _wait(self, kinds, what, timeout_ms=None):
        s = self.session
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        deadline = ticks.ticks_add(ticks.ticks_us(), t * 1000)
        while True:
            ev = s.next_event()
            if ev is not None:
                if isinstance(ev, kinds):
                    return ev
                continue
            left = ticks.ticks_diff(deadline, ticks.ticks_us()) // 1000
            have = s.reader.want()
            try:
                if left <= 0:
                    raise self._timeout("")
                n = self.link.recv_into(s.receive_buffer(512), left)
            except self._timeout:
                raise self._timeout(self._stuck("no %s within %d ms" % (what, t), have))
            except self._closed:
                raise self._closed(self._stuck("peer closed the link while waiting for a %s" % what, have))
            s.received(n)

    @staticmethod
    def _stuck(msg, have):
        if have is None:
            return msg
        return "%s (mid-frame: %d of %d bytes)" % (msg, have[0], have[1])

    def config(self, cmd=CMD_SEND_CFG2):
        """Asks for the configuration (CFG-2 by default) and waits for it."""
        self.send(cmd)
        return self._wait(frames.Config, "configuration frame")

    def header(self):
        """Asks for the header frame and returns its text."""
        self.send(CMD_SEND_HDR)
        return self._wait(frames.Header, "header frame").text

    def start(self):
        if self.session.config is None:
            raise ValueError("ask for the configuration before starting: data frames need it")
        self.send(CMD_DATA_ON)

    def stop(self):
        self.send(CMD_DATA_OFF)

    def read(self, timeout_ms=None):
        """The next data frame (the session's DataFrame, refilled in place)."""
        return self._wait(frames.DataFrame, "data frame", timeout_ms)

    def close(self):
        self.link.close()


def connect(host, port, idcode, timeout_ms=3000, max_frame=DEFAULT_MAX_FRAME):
    """A Connection over a new TCP link."""
    from lightnode.drivers.link import TcpLink

    return Connection(TcpLink(host, port, timeout_ms), idcode, timeout_ms, max_frame)
