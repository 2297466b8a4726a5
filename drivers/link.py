"""Thin byte links under the sans-IO drivers: a TCP socket, or a serial stream.

The protocol cores in this package take and return bytes; these links only
move them, each read bounded by a timeout through ``select.poll`` (on
CPython and MicroPython alike), and turn what the link does into one error
family: ``LinkTimeout``, ``LinkClosed``, ``LinkError``.

    from lightnode.drivers import link
    tcp = link.TcpLink("127.0.0.1", 502, timeout_ms=2000)
    tcp.send(request)
    data = tcp.recv(260)                 # some bytes, or LinkTimeout
    tcp.close()

    uart = link.StreamLink(open("/dev/pts/3", "r+b"))   # a UART, or a pty in tests
"""

import select
import socket

try:
    import errno as _errno

    _EAGAIN = (_errno.EAGAIN, getattr(_errno, "EWOULDBLOCK", _errno.EAGAIN))
    _EINVAL = _errno.EINVAL
except ImportError:  # pragma: no cover
    _EAGAIN = (11,)
    _EINVAL = 22


class LinkError(Exception):
    """The link failed (refused, reset, unreachable)."""


class LinkTimeout(LinkError):
    """Nothing arrived within the timeout."""


class LinkClosed(LinkError):
    """The peer closed the link."""


_POLL_ERR = select.POLLERR | select.POLLHUP


class _Polled:
    def _setup(self, obj, timeout_ms):
        self.timeout_ms = timeout_ms
        self._poll = select.poll()
        self._poll.register(obj, select.POLLIN)

    def wait(self, timeout_ms=None):
        """True when bytes (or the peer's close) are ready, False after ``timeout_ms``."""
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        return bool(self._poll.poll(t))

    def recv_into(self, buf, timeout_ms=None):
        """Read into ``buf`` (a memoryview or bytearray): how many bytes, at least 1.

        LinkTimeout if none arrive within the timeout, LinkClosed at EOF.
        """
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        if not self._poll.poll(t):
            raise LinkTimeout("no bytes within %d ms" % t)
        n = self._read_into(buf)
        if not n:
            raise LinkClosed("peer closed the link")
        return n

    def _read_into(self, buf):
        data = self._read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def recv(self, n=512, timeout_ms=None):
        """Between 1 and ``n`` bytes; LinkTimeout if none within the timeout, LinkClosed at EOF."""
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        events = self._poll.poll(t)
        if not events:
            raise LinkTimeout("no bytes within %d ms" % t)
        data = self._read(n)
        if not data:
            raise LinkClosed("peer closed the link")
        return data

    def drain(self):
        """Throw away whatever has arrived and not been read (before a new request)."""
        while self._poll.poll(0):
            if not self._read(512):
                return


class TcpLink(_Polled):
    """A TCP client connection with bounded reads."""

    def __init__(self, host, port, timeout_ms=3000):
        try:
            addr = socket.getaddrinfo(host, port)[0][-1]
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.settimeout(timeout_ms / 1000)
            self.sock.connect(addr)
        except OSError as e:
            raise LinkError("cannot connect to %s:%d: %s" % (host, port, e))
        self._setup(self.sock, timeout_ms)

    def _read(self, n):
        try:
            return self.sock.recv(n)
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                raise LinkTimeout("no bytes ready")
            raise LinkError("receive failed: %s" % e)

    def _read_into(self, buf):
        # No allocation: the socket writes into the caller's buffer. MicroPython's
        # readinto waits for the whole buffer on a blocking socket, so the read
        # is made non-blocking (the poll has said bytes are there).
        if hasattr(self.sock, "recv_into"):  # CPython
            try:
                return self.sock.recv_into(buf)
            except OSError as e:
                raise LinkError("receive failed: %s" % e)
        self.sock.settimeout(0)
        try:
            n = self.sock.readinto(buf)
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                raise LinkTimeout("no bytes ready")
            raise LinkError("receive failed: %s" % e)
        finally:
            self.sock.settimeout(self.timeout_ms / 1000)
        if n is None:  # nothing after all (non-blocking): not a close
            raise LinkTimeout("no bytes ready")
        return n

    def send(self, data):
        try:
            self.sock.sendall(data) if hasattr(self.sock, "sendall") else self.sock.write(data)
        except OSError as e:
            raise LinkError("send failed: %s" % e)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class StreamLink(_Polled):
    """A serial-like stream: a UART, or a pseudo-terminal in tests (opened binary, raw mode)."""

    def __init__(self, stream, timeout_ms=1000):
        self.stream = stream
        self._setup(stream, timeout_ms)

    def _read(self, n):
        # A file's read(n) waits for all n bytes on MicroPython; take what the
        # poll says is there, a byte at a time (RTU frames are short).
        out = bytearray()
        try:
            while len(out) < n:
                b = self.stream.read(1)
                if not b:
                    break
                out.extend(b)
                if not self._poll.poll(0):
                    break
        except OSError as e:
            raise LinkError("read failed: %s" % e)
        return bytes(out)

    def send(self, data):
        try:
            n = self.stream.write(data)
        except OSError as e:
            raise LinkError("write failed: %s" % e)
        if n is not None and n != len(data):
            raise LinkError("write took %d of %d bytes" % (n, len(data)))
        try:
            self.stream.flush()
        except AttributeError:
            pass
        except OSError as e:
            # MicroPython's flush on a file is fsync, which a tty refuses
            # (EINVAL); its file writes are unbuffered, so nothing is lost.
            if not e.args or e.args[0] != _EINVAL:
                raise LinkError("flush failed: %s" % e)

    def close(self):
        try:
            self.stream.close()
        except OSError:
            pass
