"""Whole C37.118 frames out of a byte stream split anywhere, with resync after a bad one.

TCP delivers a PMU's frames in pieces of any size. ``FrameReader`` keeps
one receive buffer, allocated once, and hands out each complete frame whose
SYNC, FRAMESIZE and CHK check, as a memoryview into that buffer (valid until
the next ``feed``). A bad frame raises one ``RemoteProtocolError`` and the
reader moves on a byte, silently skipping what follows until the next good
frame: a caller that catches the error and goes on has resynchronised.

    r = FrameReader(2048)
    taken = r.feed(chunk)               # how many bytes fitted; feed the rest later
    while True:
        frame = r.next_frame()          # memoryview, or None until more bytes come
        if frame is None:
            break
"""

from .errors import CrcError, RemoteProtocolError
from .frames import CFG3, MIN_FRAME, SYNC_BYTE, crc_ccitt

DEFAULT_MAX_FRAME = 2048  # a one-PMU CFG-2 with 8 digital words fits; raise it for PDC streams


class FrameReader:
    def __init__(self, max_frame=DEFAULT_MAX_FRAME):
        if not MIN_FRAME <= max_frame <= 65535:
            raise ValueError("max_frame %r is not %d-65535" % (max_frame, MIN_FRAME))
        self.buf = bytearray(max_frame)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.dropped = 0  # bytes thrown away while looking for a frame
        self.errors = 0  # bad frames met (each raised once)
        self._resync = False
        self._found = False  # bytes before the first frame (joining a stream mid-frame) pass silently

    @property
    def pending(self):
        """Bytes received and not yet handed out or dropped."""
        return self.end - self.start

    def want(self):
        """(bytes of the frame being gathered so far, its FRAMESIZE), or None before a header."""
        if self.end - self.start < 4 or self.buf[self.start] != SYNC_BYTE:
            return None
        b = self.buf
        return self.end - self.start, (b[self.start + 2] << 8) | b[self.start + 3]

    def room(self):
        """How many bytes the next ``feed`` can take."""
        return len(self.buf) - (self.end - self.start)

    def _compact(self):
        s, n = self.start, self.end - self.start
        if s == 0:
            return
        mv = self.mv
        # Forward copy in pieces no longer than the gap, so source and
        # destination never overlap (MicroPython's slice copy is memcpy).
        i = 0
        while i < n:
            c = min(s, n - i)
            mv[i:i + c] = mv[s + i:s + i + c]
            i += c
        self.start, self.end = 0, n

    def feed(self, data):
        """Appends as much of ``data`` as fits; returns how many bytes were taken."""
        k = len(data)
        if k > len(self.buf) - self.end:
            self._compact()
        k = min(k, len(self.buf) - self.end)
        if k:
            self.mv[self.end:self.end + k] = data[:k] if k < len(data) else data
            self.end += k
        return k

    def window(self, most):
        """Free buffer after the bytes held, at most ``most`` bytes: read into it, then ``wrote(n)``.

        ``feed`` without the copy, for a link's ``recv_into``.
        """
        if most > len(self.buf) - self.end:
            self._compact()
        return self.mv[self.end:min(len(self.buf), self.end + most)]

    def wrote(self, n):
        """``n`` bytes were read into the last ``window``."""
        self.end += n

    def _skip(self, n, err=None):
        self.start += n
        self.dropped += n
        if err is not None and not self._resync:
            self._resync = True
            self.errors += 1
            raise err

    def next_frame(self):
        """The next whole frame that checks (a memoryview), or None until more bytes arrive."""
        b = self.buf
        while True:
            s, avail = self.start, self.end - self.start
            if avail == 0:
                self.start = self.end = 0
                return None
            if b[s] != SYNC_BYTE:
                j = s + 1
                while j < self.end and b[j] != SYNC_BYTE:
                    j += 1
                self._skip(j - s, RemoteProtocolError(
                    "%d bytes of no frame where a SYNC word was due" % (j - s)) if self._found else None)
                continue
            if avail < 4:
                return None
            t = b[s + 1]
            if t & 0x80 or (t >> 4) & 0x7 > CFG3 or not t & 0x0F:
                self._skip(1, RemoteProtocolError("SYNC 0xAA%02x is no C37.118 frame type" % t))
                continue
            size = (b[s + 2] << 8) | b[s + 3]
            if size < MIN_FRAME:
                self._skip(1, RemoteProtocolError("FRAMESIZE %d is below the %d-byte minimum"
                                                  % (size, MIN_FRAME)))
                continue
            if size > len(b):
                self._skip(1, RemoteProtocolError("FRAMESIZE %d is over this reader's %d-byte limit"
                                                  % (size, len(b))))
                continue
            if avail < size:
                return None
            chk = (b[s + size - 2] << 8) | b[s + size - 1]
            crc = crc_ccitt(b, s, s + size - 2)
            if chk != crc:
                self._skip(1, CrcError("bad CHK 0x%04x (computed 0x%04x) on a %d-byte frame"
                                       % (chk, crc, size)))
                continue
            self.start = s + size
            self._resync = False
            self._found = True
            return self.mv[s:s + size]
