"""A C37.118.2 client: a sans-IO session, and a thin blocking helper over a TCP link.

``Session`` takes received bytes and gives back frames as events; it makes
the command frames to send, and never touches a socket. ``Connection``
moves bytes between a ``Session`` and a link (``link.TcpLink``), each wait
bounded by one deadline.

    s = Session(idcode=7)
    sock.send(s.command(CMD_SEND_CFG2))
    s.receive_data(sock.recv(512))
    ev = s.next_event()                 # Config, DataFrame, Header, or None for "need more"

    pmu = connect("127.0.0.1", 4712, idcode=7, timeout_ms=2000)
    cfg = pmu.config()
    pmu.start()
    f = pmu.read()                      # the session's DataFrame, refilled on each read
    pmu.stop(); pmu.close()

A data frame is decoded into one ``DataFrame`` the session allocates when
the configuration arrives; ``copy()`` it to keep it past the next read.
"""

from lightnode.drivers import ticks

from . import frames
from .errors import RemoteProtocolError
from .frames import (  # noqa: F401  (re-exported for callers)
    CMD_DATA_OFF,
    CMD_DATA_ON,
    CMD_SEND_CFG1,
    CMD_SEND_CFG2,
    CMD_SEND_HDR,
)
from .stream import DEFAULT_MAX_FRAME, FrameReader


class Session:
    """The client's side of one C37.118 stream, sans-IO."""

    def __init__(self, idcode, max_frame=DEFAULT_MAX_FRAME, version=frames.VERSION):
        if not 1 <= idcode <= 65534:
            raise ValueError("IDCODE %r is not 1-65534" % (idcode,))
        self.idcode = idcode
        self.version = version
        self.reader = FrameReader(max_frame)
        self.config = None
        self.frame = None  # the DataFrame each data frame is decoded into
        self.skipped = 0  # whole frames passed over: data before a configuration, other streams
        self._cmd = bytearray(frames.command_size())

    def command(self, cmd, soc=0, fracsec=0):
        """The bytes of command ``cmd`` to this stream (a fresh copy, 18 bytes)."""
        frames.encode_command_into(self._cmd, self.idcode, cmd, soc, fracsec, b"", self.version)
        return bytes(self._cmd)

    def receive_data(self, data):
        """Takes received bytes; returns how many fitted (feed the rest after ``next_event``)."""
        return self.reader.feed(data)

    def receive_buffer(self, most=512):
        """Where the next bytes go (a memoryview into the reader's buffer); then ``received(n)``.

        ``receive_data`` without a copy: a link reads straight into it with ``recv_into``.
        """
        return self.reader.window(most)

    def received(self, n):
        """``n`` bytes were read into the last ``receive_buffer``."""
        self.reader.wrote(n)

    def next_event(self):
        """The next frame as a Config, DataFrame, Header or Command; None when more bytes are needed.

        A bad frame raises ``RemoteProtocolError`` once; the next call goes
        on with the frames after it.
        """
        while True:
            mv = self.reader.next_frame()
            if mv is None:
                return None
            t = frames.frame_type(mv)
            idcode = (mv[4] << 8) | mv[5]
            if t == frames.DATA:
                cfg = self.config
                if cfg is None or idcode != self.idcode:
                    self.skipped += 1
                    continue
                if len(mv) != cfg.data_size:
                    raise RemoteProtocolError(
                        "data frame of %d bytes, the configuration says %d (configuration changed?)"
                        % (len(mv), cfg.data_size))
                return frames.decode_data(mv, cfg, self.frame)
            if idcode != self.idcode:
                self.skipped += 1
                continue
            if t in (frames.CFG1, frames.CFG2):
                cfg = frames.decode_config(mv)
                if cfg.idcode != self.idcode or not cfg.pmus:
                    raise RemoteProtocolError("configuration for IDCODE %d with %d PMUs"
                                              % (cfg.idcode, len(cfg.pmus)))
                if cfg.data_size > len(self.reader.buf):
                    raise RemoteProtocolError("data frames of %d bytes would not fit the %d-byte buffer"
                                              % (cfg.data_size, len(self.reader.buf)))
                self.config = None
                self.frame = None
                self.frame = frames.DataFrame(cfg)
                self.config = cfg
                return cfg
            if t == frames.HEADER:
                return frames.decode_header(mv)
            if t == frames.COMMAND:
                return frames.decode_command(mv)
            self.skipped += 1  # CFG-3: not read here


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
