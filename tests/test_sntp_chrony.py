"""The device SNTP client against a real NTP server: chronyd on loopback.

chronyd runs in the foreground as root, on a free UDP port of 127.0.0.1
only, with ``-x`` so that it never touches the system clock, as a local
stratum-8 server. The same host clock is on both sides, so the offset must
be close to 0. The client is asked from CPython and from inside the unix
port; a relay that flips one byte of the echoed originate timestamp, and a
server that never answers, must both end in ``SntpError``.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _need import missing, need
from lightnode import micropython as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware"))
from ln import clock, sntp, wire  # noqa: E402

CHRONYD = "/usr/sbin/chronyd"
STRATUM = 8
FEW_MS_US = 5000


def _free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def chrony(tmp_path_factory):
    exe = CHRONYD if os.path.exists(CHRONYD) else shutil.which("chronyd")
    if not exe:
        missing("chronyd is not installed (apt-get install chrony)")
    if os.geteuid() != 0:
        missing(
            "chronyd must start as root (it drops privileges itself); these tests run as uid %d"
            % os.geteuid()
        )
    tmp = tmp_path_factory.mktemp("chrony")
    port = _free_udp_port()
    conf = tmp / "chrony.conf"
    conf.write_text(
        "port %d\nbindaddress 127.0.0.1\nlocal stratum %d\nallow 127.0.0.1\n"
        "cmdport 0\npidfile %s\n" % (port, STRATUM, tmp / "chronyd.pid")
    )
    log = open(tmp / "chronyd.log", "w+")
    proc = subprocess.Popen(
        [exe, "-d", "-x", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                log.seek(0)
                missing("chronyd exited (%s) at start: %s" % (proc.returncode, log.read()[-2000:]))
            try:
                sntp.query("127.0.0.1", port, samples=1, timeout_ms=200)
                break
            except sntp.SntpError:
                if time.monotonic() > deadline:
                    log.seek(0)
                    missing(
                        "chronyd did not answer on 127.0.0.1:%d: %s" % (port, log.read()[-2000:])
                    )
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Relay:
    """A UDP relay on loopback that flips one byte of every reply on its way back."""

    def __init__(self, upstream_port, flip_at=31):
        self.down = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.down.bind(("127.0.0.1", 0))
        self.down.settimeout(0.1)
        self.port = self.down.getsockname()[1]
        self.upstream = ("127.0.0.1", upstream_port)
        self.flip_at = flip_at
        self.relayed = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.settimeout(1)
        while not self.stop:
            try:
                data, client = self.down.recvfrom(512)
            except TimeoutError:
                continue
            up.sendto(data, self.upstream)
            try:
                reply, _ = up.recvfrom(512)
            except TimeoutError:
                continue
            reply = bytearray(reply)
            reply[self.flip_at] ^= 0x01
            self.down.sendto(bytes(reply), client)
            self.relayed += 1
        up.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.down.close()


def _silent_port():
    # Bound and never read: the datagrams are taken and nothing comes back.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def test_cpython_query(chrony):
    s = sntp.query("127.0.0.1", chrony, samples=4, timeout_ms=2000)
    assert abs(s.offset_us) <= FEW_MS_US, s
    assert 0 <= s.delay_us <= FEW_MS_US, s
    assert s.stratum == STRATUM
    assert s.leap == 0
    assert s.root_delay_us // 2 + s.root_disp_us < sntp.MAX_ROOT_DISTANCE_US


def test_cpython_clock_synced(chrony):
    c = clock.Clock(initial_us=time.time_ns() // 1000 - 10_000_000)  # 10 s off
    step = c.sync_sample(sntp.query("127.0.0.1", chrony, now_us=c.now_us, timeout_ms=2000))
    assert step is not None and abs(step - 10_000_000) <= FEW_MS_US
    assert abs(c.now_us() - time.time_ns() // 1000) <= FEW_MS_US
    q, u = c.quality()
    assert q == wire.TQ_NTP and u < FEW_MS_US
    # A second query finds nothing to step.
    assert c.sync_sample(sntp.query("127.0.0.1", chrony, now_us=c.now_us, timeout_ms=2000)) is None


def test_cpython_wrong_originate_refused(chrony):
    relay = Relay(chrony)
    try:
        t0 = time.monotonic()
        with pytest.raises(sntp.SntpError) as e:
            sntp.query("127.0.0.1", relay.port, samples=2, timeout_ms=600)
        assert e.value.reason == sntp.R_ORIGIN
        assert relay.relayed >= 1
        assert time.monotonic() - t0 < 1.5
    finally:
        relay.close()


def test_cpython_silent_server_times_out():
    s = _silent_port()
    try:
        t0 = time.monotonic()
        with pytest.raises(sntp.SntpError) as e:
            sntp.query("127.0.0.1", s.getsockname()[1], samples=3, timeout_ms=400)
        took = time.monotonic() - t0
        assert e.value.reason == sntp.R_TIMEOUT
        assert 0.35 < took < 1.0, took
    finally:
        s.close()


_MP_QUERY = """
import sys, time
from ln import clock, sntp, wire
port = int(sys.argv[1])
timeout_ms = int(sys.argv[2])
c = clock.Clock()
out = {}
t0 = time.ticks_ms()
try:
    s = sntp.query("127.0.0.1", port, now_us=c.now_us, samples=4, timeout_ms=timeout_ms)
    out = {"offset": s.offset_us, "delay": s.delay_us, "stratum": s.stratum, "leap": s.leap}
    out["step"] = c.sync_sample(s)
    out["quality"] = list(c.quality())
except sntp.SntpError as e:
    out = {"error": e.reason}
out["ms"] = time.ticks_diff(time.ticks_ms(), t0)
mp_result(out)
"""


def _mp_query(port, timeout_ms):
    need(mp.find_micropython)
    # At the smallest board budget (esp32, 80 KB).
    run = mp.run_unix(code=_MP_QUERY, board="esp32", args=(port, timeout_ms), timeout=60).check()
    return run.results[0]


@pytest.mark.micropython
def test_micropython_query(chrony):
    r = _mp_query(chrony, 2000)
    assert "error" not in r, r
    assert abs(r["offset"]) <= FEW_MS_US, r
    assert 0 <= r["delay"] <= FEW_MS_US, r
    assert r["stratum"] == STRATUM and r["leap"] == 0
    assert r["step"] is not None  # the first sync always steps
    assert r["quality"][0] == wire.TQ_NTP and r["quality"][1] < FEW_MS_US


@pytest.mark.micropython
def test_micropython_wrong_originate_refused(chrony):
    relay = Relay(chrony)
    try:
        r = _mp_query(relay.port, 600)
        assert r.get("error") == sntp.R_ORIGIN, r
        assert relay.relayed >= 1
    finally:
        relay.close()


@pytest.mark.micropython
def test_micropython_silent_server_times_out():
    s = _silent_port()
    try:
        r = _mp_query(s.getsockname()[1], 400)
        assert r.get("error") == sntp.R_TIMEOUT, r
        assert 350 <= r["ms"] < 1000, r
    finally:
        s.close()
