"""A serial line opened as a file (a tty or pty under the unix port), for RTU outside a board.

``link.StreamLink`` flushes after each write; MicroPython's ``flush`` on a
file is ``fsync``, which a tty refuses (EINVAL), and its file writes are
unbuffered anyway. This link writes without the flush.

    from lightnode.drivers.modbus import line
    l = line.TtyLink(open("/dev/ttyUSB0", "r+b"), timeout_ms=1000)   # line settings made outside
"""

from lightnode.drivers.link import LinkError, StreamLink


class TtyLink(StreamLink):
    def send(self, data):
        try:
            n = self.stream.write(data)
        except OSError as e:
            raise LinkError("write failed: %s" % e)
        if n is not None and n != len(data):
            raise LinkError("write took %d of %d bytes" % (n, len(data)))
