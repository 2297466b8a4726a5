"""The bytes a framer holds between reads: one buffer allocated at start, kept at the front.

``rtu.RtuFramer`` and ``tcp.TcpFramer`` build on it; ``window``/``wrote``
let a link read straight into the free part (``recv_into``) with no copy.
"""

from . import RemoteProtocolError


class FrameBuffer:
    def __init__(self, size):
        self.size = size
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0

    def reset(self):
        self.start = self.end = 0

    def pending(self):
        return self.end - self.start

    def compact(self):
        """Move the held bytes to the front of the buffer; how many there are."""
        n = self.end - self.start
        if self.start:
            if n:
                self.buf[0:n] = self.buf[self.start:self.end]
            self.start, self.end = 0, n
        return n

    def put(self, data, k):
        """Append the first ``k`` bytes of ``data`` (the caller made room)."""
        self.mv[self.end:self.end + k] = memoryview(data)[:k] if k < len(data) else data
        self.end += k
        return k

    def window(self):
        """The free buffer after the bytes held: read into it, then ``wrote(n)``.

        ``feed`` without the copy, for a link's ``recv_into``.
        """
        n = self.compact()
        if n == self.size:
            self.reset()
            raise RemoteProtocolError("more than %d bytes without a frame" % self.size)
        return self.mv[n:]

    def wrote(self, n):
        """``n`` bytes were read into the last ``window``."""
        self.end += n
