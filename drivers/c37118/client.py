"""A C37.118.2 client's session, sans-IO: received bytes in, frames out as events.

``Session`` takes received bytes and gives back frames as events; it makes
the command frames to send, and never touches a socket. The blocking
helper over a TCP link (``Connection``, ``connect``) is in ``connection``;
it is reachable here too (``client.connect``), loaded on first use.

    s = Session(idcode=7)
    sock.send(s.command(CMD_SEND_CFG2))
    s.receive_data(sock.recv(512))
    ev = s.next_event()                 # Config, DataFrame, Header, or None for "need more"

A data frame is decoded into one ``DataFrame`` the session allocates when
the configuration arrives; ``copy()`` it to keep it past the next read.
"""


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
            if t == frames.HEADER or t == frames.COMMAND:
                # rare on a stream (a header only when asked): read by the codec, loaded then
                from . import codec

                return codec.decode(mv)
            self.skipped += 1  # CFG-3: not read here


def __getattr__(name):
    # the blocking helper (``connection``) is found here too, loaded on first use:
    # a board's loop reads with asyncio and never loads it
    from . import connection

    try:
        return getattr(connection, name)
    except AttributeError:
        raise AttributeError("module %r has no attribute %r" % (__name__, name)) from None
