"""drivers/link.py on CPython and inside the unix port: TCP and a pty, reads bounded by the timeout."""

import os
import pty
import socket
import threading
import time
import tty

import pytest
from _need import need
from lightnode import micropython as mp
from lightnode.drivers import link


def _server(script):
    """A one-connection TCP server that plays ``script``: bytes to send, or a float to sleep."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run():
        c, _ = srv.accept()
        for step in script:
            if isinstance(step, bytes):
                c.sendall(step)
            else:
                time.sleep(step)
        c.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


_DEVICE = """
import sys, time
from lightnode.drivers import link
l = link.TcpLink("127.0.0.1", int(sys.argv[1]), 300)
buf = bytearray(16)
out = {"n": l.recv_into(memoryview(buf))}
out["data"] = bytes(buf[:out["n"]]).decode()
t = time.ticks_ms()
try:
    l.recv(16)
except link.LinkTimeout:
    out["timeout_ms"] = time.ticks_diff(time.ticks_ms(), t)
out["late"] = l.recv(16, 2000).decode()
try:
    l.recv(16, 2000)
except link.LinkClosed:
    out["closed"] = True
f = open(sys.argv[2], "r+b")
s = link.StreamLink(f, 300)
s.send(b"to-host")
out["pty"] = s.recv(16, 2000).decode()
mp_result(out)
"""


def _pty():
    m, s = pty.openpty()
    tty.setraw(m)
    tty.setraw(s)
    return m, s


def test_tcp_and_pty_on_cpython():
    port = _server([b"hello", 0.6, b"late"])
    tcp = link.TcpLink("127.0.0.1", port, 300)
    buf = bytearray(16)
    n = tcp.recv_into(memoryview(buf))
    assert bytes(buf[:n]) == b"hello"
    t0 = time.monotonic()
    with pytest.raises(link.LinkTimeout):
        tcp.recv(16)
    assert 0.25 < time.monotonic() - t0 < 1.0
    assert tcp.recv(16, 2000) == b"late"
    with pytest.raises(link.LinkClosed):
        tcp.recv(16, 2000)
    tcp.close()
    with pytest.raises(link.LinkError):
        link.TcpLink("127.0.0.1", port, 300)  # nobody listens any more

    m, s = _pty()
    stream = link.StreamLink(open(os.ttyname(s), "r+b", buffering=0), 300)
    stream.send(b"ping")
    assert os.read(m, 16) == b"ping"
    os.write(m, b"pong")
    assert stream.recv(16, 1000) == b"pong"
    with pytest.raises(link.LinkTimeout):
        stream.recv(16, 100)
    stream.close()


def test_tcp_and_pty_inside_the_unix_port():
    need(mp.find_micropython)
    port = _server([b"hello", 0.6, b"late"])
    m, s = _pty()
    got = []

    def host_side():
        got.append(os.read(m, 16))
        os.write(m, b"from-host")

    t = threading.Thread(target=host_side, daemon=True)
    t.start()
    run = mp.run_unix(code=_DEVICE, board="pico_w", args=(port, os.ttyname(s))).check()
    t.join(5)
    (out,) = run.results
    assert out["n"] == 5 and out["data"] == "hello"
    assert 250 <= out["timeout_ms"] < 1000
    assert out["late"] == "late" and out["closed"] is True
    assert got == [b"to-host"]  # the tty write went through despite MicroPython's fsync-flush
    assert out["pty"] == "from-host"


def test_long_arguments_are_refused_before_the_port_dies():
    with pytest.raises(ValueError, match="at most 255"):
        mp.run_unix(code="pass", args=("x" * 256,))
