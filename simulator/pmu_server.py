"""A simulated PMU that speaks IEEE C37.118.2 over TCP, for tests, demos and the simulator.

It answers the commands (send CFG-1/CFG-2/header, data on, data off) and
streams data frames at its rate from the signal of
``lightnode.simulator.signals`` (a 132 kV bay: frequency, ROCOF, three
voltage and three current phasors), each frame with its own timestamp. The
frames are made by the driver's own encoder (``lightnode.drivers.c37118``),
so the driver and this server share one definition of the format; tshark
checks that definition from outside (tests/test_c37118_peers.py).

    from lightnode.simulator.pmu_server import PmuServer
    with PmuServer(fmt="int-polar", speed=20) as pmu:    # 20 x real time
        host, port = pmu.address
        ...                                               # a client reads IDCODE pmu.idcode

Fed by a grid instead (``source=``, an object with ``frame(k) -> (time_us,
{point id: value})`` and ``first_frame() -> k``, as
``lightnode.simulator.devices`` makes for a PMU on the simulated grid), frame
``k`` carries the source's values and timestamp, and a client that turns
data on starts at the source's current frame rather than at frame 0.

``faults`` makes it misbehave on purpose (per connection, counted in data
frames): ``bad_crc`` (frame numbers whose CHK is wrong), ``truncate``
(frames cut short by 10 bytes), ``oversize`` (frames whose FRAMESIZE
points 100 bytes past their end), ``garbage`` (frames preceded by junk),
``split`` (every frame written in pieces of 1-7 bytes), ``stall_after``
(stop sending and answering after n frames, link left open),
``close_mid_frame_after`` (after n frames, write half a frame and close),
``silent`` (never answer anything).
"""

from __future__ import annotations

import math
import random
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from lightnode.drivers.c37118 import frames
from lightnode.simulator import signals

FORMATS = {
    "float-polar": frames.FMT_POLAR | frames.FMT_PHASOR_FLOAT | frames.FMT_ANALOG_FLOAT | frames.FMT_FREQ_FLOAT,
    "float-rect": frames.FMT_PHASOR_FLOAT | frames.FMT_ANALOG_FLOAT | frames.FMT_FREQ_FLOAT,
    "int-polar": frames.FMT_POLAR,
    "int-rect": 0,
}
TIME_BASE = 1_000_000  # FRACSEC counts microseconds: the signal's timestamps survive exactly
CHUNK_S = 10  # the signal is drawn this many seconds at a time


def phunit(nominal: float, current: bool, polar: bool) -> int:
    """PHUNIT for a phasor: kind in the top byte, 10**-5 V or A per integer step below.

    Chosen so that 1.6 times nominal still fits the 16-bit field (unsigned
    magnitude in polar form, signed components in rectangular form).
    """
    top = 65535 if polar else 32767
    scale = math.ceil(nominal * 1.6 / top * 1e5)
    return ((1 if current else 0) << 24) | scale


def make_config(idcode: int = 7, fmt: str = "float-polar", rate: int = 50, station: str = "LN PMU 132KV",
                extras: bool = False, version: int = frames.VERSION, cfgcnt: int = 1) -> frames.Config:
    """The CFG-2 of the simulated PMU: VA VB VC IA IB IC, FREQ, DFREQ (and, with ``extras``, one
    analog, three-phase active power in MW, and one digital word, bit 0 breaker closed)."""
    if fmt not in FORMATS:
        raise ValueError("format %r is not one of %s" % (fmt, ", ".join(FORMATS)))
    f = FORMATS[fmt]
    polar = bool(f & frames.FMT_POLAR)
    units = [phunit(signals.BY_NAME[n + ".mag"].nominal or 1.0, n.startswith("I"), polar)
             for n in signals.PHASORS]
    an, anunit, dg, digunit = [], [], [], []
    if extras:
        an, anunit = ["P3PH_MW"], [(1 << 24) | 1]  # rms, scale 1
        dg = ["BRK_CLOSED"] + ["SPARE%d" % i for i in range(1, 16)]
        digunit = [(0x0001, 0x0001)]
    pmu = frames.PmuConfig(station, idcode, f, list(signals.PHASORS), an, dg, units, anunit, digunit,
                           fnom=int(signals.NOMINAL_HZ), cfgcnt=cfgcnt)
    return frames.Config(idcode, [pmu], time_base=TIME_BASE, data_rate=rate, version=version)


def frame_values(cfg: frames.Config, window: signals.PmuWindow, i: int, stat: int = 0,
                 quality: int = 0) -> frames.DataFrame:
    """Frame ``i`` of ``window`` as a DataFrame laid out by ``cfg`` (values in wire form)."""
    values = {pid: col[i] for pid, col in window.floats.items()}
    return frame_of(cfg, window.times[i], values, stat, quality)


def frame_of(cfg: frames.Config, time_us: int, values: Mapping[int, float], stat: int = 0,
             quality: int = 0) -> frames.DataFrame:
    """A DataFrame laid out by ``cfg`` at ``time_us`` from ``{point id: value}`` (signals' ids)."""
    p = cfg.pmus[0]
    soc, fracsec = frames.fracsec_of(time_us, cfg.time_base, quality)
    f = frames.DataFrame(cfg, soc=soc, fracsec=fracsec)
    d = f.pmus[0]
    d.stat = stat
    ph = []
    mw = 0.0
    for k, name in enumerate(signals.PHASORS):
        mag = values[signals.BY_NAME[name + ".mag"].id]
        ang = math.radians(values[signals.BY_NAME[name + ".ang"].id])
        ph.extend(p.phasor_raw(k, mag, ang))
    d.ph = ph
    d.freq = p.freq_raw(values[signals.FREQ])
    d.dfreq = p.dfreq_raw(values[signals.ROCOF])
    if p.annmr:
        for ph_name in "ABC":
            vm = values[signals.BY_NAME["V%s.mag" % ph_name].id]
            va = values[signals.BY_NAME["V%s.ang" % ph_name].id]
            im = values[signals.BY_NAME["I%s.mag" % ph_name].id]
            ia = values[signals.BY_NAME["I%s.ang" % ph_name].id]
            mw += vm * im * math.cos(math.radians(va - ia)) / 1e6
        d.an = [mw if p.fmt & frames.FMT_ANALOG_FLOAT else max(-32767, min(32767, round(mw)))]
    if p.dgnmr:
        d.dg = [0x0001]
    return f


class FrameSource(Protocol):
    """Where a grid-fed PMU's frames come from (see the module's docstring)."""

    def frame(self, k: int) -> tuple[int, Mapping[int, float]]: ...

    def first_frame(self) -> int: ...


class PmuServer:
    """A C37.118.2 PMU on a TCP port (a free one by default); one thread per client."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, idcode: int = 7, rate: int = 50,
                 fmt: str = "float-polar", speed: float = 1.0, seed: int = 1, t0_us: int | None = None,
                 extras: bool = False, version: int = frames.VERSION, station: str = "LN PMU 132KV",
                 faults: dict[str, Any] | None = None, header: str = "lightnode simulated PMU, 132 kV bay",
                 record: int = 100_000, source: FrameSource | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.idcode = idcode
        self.rate = rate
        self.speed = speed
        self.seed = seed
        self.source = source
        if t0_us is None:  # the next whole second
            t0_us = (time.time_ns() // 1000 // 1_000_000 + 1) * 1_000_000
        self.t0_us = t0_us
        self.cfg = make_config(idcode, fmt, rate, station, extras, version)
        self.cfg.soc, self.cfg.fracsec = frames.fracsec_of(t0_us, TIME_BASE)
        self.cfg_bytes = frames.encode_config(self.cfg)
        cfg1 = make_config(idcode, fmt, rate, station, extras, version)
        cfg1.ftype = frames.CFG1
        cfg1.soc, cfg1.fracsec = self.cfg.soc, self.cfg.fracsec
        self.cfg1_bytes = frames.encode_config(cfg1)
        self.header_bytes = frames.encode_header(frames.Header(idcode, header.encode(), self.cfg.soc, 0,
                                                               version))
        self.faults = dict(faults or {})
        self.sent: deque[bytes] = deque(maxlen=record)  # intact data frames written, all clients
        self.commands: list[int] = []
        self.connections = 0
        self._windows: dict[int, signals.PmuWindow] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(8)
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    # -- the signal ----------------------------------------------------------

    def _window(self, chunk: int) -> signals.PmuWindow:
        with self._lock:
            w = self._windows.get(chunk)
            if w is None:
                if len(self._windows) > 4:
                    self._windows.pop(min(self._windows))
                w = signals.pmu_window(seconds=CHUNK_S, rate=self.rate, seed=self.seed + chunk,
                                       t0_us=self.t0_us + chunk * CHUNK_S * 1_000_000)
                self._windows[chunk] = w
            return w

    def data_frame(self, k: int) -> bytes:
        """Data frame number ``k`` of the stream (0 at ``t0_us``), as written on the wire."""
        if self.source is not None:
            t_us, values = self.source.frame(k)
            return frames.encode_data(self.cfg, frame_of(self.cfg, t_us, values))
        per = CHUNK_S * self.rate
        w = self._window(k // per)
        return frames.encode_data(self.cfg, frame_values(self.cfg, w, k % per))

    def frame_time_us(self, k: int) -> int:
        if self.source is not None:
            return self.source.frame(k)[0]
        per = CHUNK_S * self.rate
        return self._window(k // per).times[k % per]

    # -- life ------------------------------------------------------------------

    def start(self) -> PmuServer:
        t = threading.Thread(target=self._accept, name="pmu-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for c in list(self._clients):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self._sock.close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> PmuServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._sock], [], [], 0.05)
                if not r:
                    continue
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
            self._clients.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="pmu-client", daemon=True)
            t.start()
            self._threads.append(t)

    # -- one client ------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        try:
            _Client(self, conn).run()
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


class _Client:
    def __init__(self, server: PmuServer, conn: socket.socket) -> None:
        from lightnode.drivers.c37118.stream import FrameReader

        self.s = server
        self.conn = conn
        self.reader = FrameReader(1024)
        self.on = False
        self.k = 0  # data frames sent on this link (what faults count)
        self.at = 0  # the stream's frame number the next data frame carries
        self.next_at = 0.0
        self.rnd = random.Random(server.seed)
        f = server.faults
        self.bad_crc = set(f.get("bad_crc", ()))
        self.truncate = set(f.get("truncate", ()))
        self.oversize = set(f.get("oversize", ()))
        self.garbage = set(f.get("garbage", ()))
        self.split = bool(f.get("split"))
        self.stall_after = f.get("stall_after")
        self.close_after = f.get("close_mid_frame_after")
        self.silent = bool(f.get("silent"))

    def write(self, data: bytes) -> None:
        if not self.split:
            self.conn.sendall(data)
            return
        i = 0
        while i < len(data):
            n = self.rnd.randint(1, 7)
            self.conn.sendall(data[i:i + n])
            i += n

    def run(self) -> None:
        s = self.s
        period = 1.0 / (s.rate * s.speed)
        while not s._stop.is_set():
            stalled = self.stall_after is not None and self.k >= self.stall_after
            wait = 0.05
            if self.on and not stalled:
                wait = max(0.0, self.next_at - time.monotonic())
            r, _, _ = select.select([self.conn], [], [], wait)
            if r:
                data = self.conn.recv(4096)
                if not data:
                    return
                if not (self.silent or stalled):
                    self.commands(data)
                continue
            if self.on and not stalled and time.monotonic() >= self.next_at:
                if not self.send_data():
                    return
                self.next_at += period
                if self.next_at < time.monotonic() - 1.0:  # fell far behind: do not burst
                    self.next_at = time.monotonic()

    def commands(self, data: bytes) -> None:
        s = self.s
        taken = 0
        while taken < len(data):
            taken += self.reader.feed(data[taken:])
            while True:
                try:
                    mv = self.reader.next_frame()
                except frames.RemoteProtocolError:
                    continue
                if mv is None:
                    break
                if frames.frame_type(mv) != frames.COMMAND:
                    continue
                cmd = frames.decode_command(bytes(mv))
                if cmd.idcode != s.idcode:
                    continue
                s.commands.append(cmd.cmd)
                if cmd.cmd == frames.CMD_SEND_CFG2:
                    self.write(s.cfg_bytes)
                elif cmd.cmd == frames.CMD_SEND_CFG1:
                    self.write(s.cfg1_bytes)
                elif cmd.cmd == frames.CMD_SEND_HDR:
                    self.write(s.header_bytes)
                elif cmd.cmd == frames.CMD_DATA_ON:
                    if not self.on:
                        self.next_at = time.monotonic()
                        if s.source is not None:  # the grid's present, not frame 0
                            self.at = s.source.first_frame()
                    self.on = True
                elif cmd.cmd == frames.CMD_DATA_OFF:
                    self.on = False

    def send_data(self) -> bool:
        """Writes the next data frame, with this link's faults; False when the link is to close."""
        s, k = self.s, self.k
        wire = s.data_frame(self.at)
        self.k += 1
        self.at += 1
        if self.close_after is not None and k >= self.close_after:
            self.conn.sendall(wire[: len(wire) // 2])
            self.conn.shutdown(socket.SHUT_RDWR)
            return False
        if k in self.garbage:
            self.write(b"\x00\x13\x37\xaa\xff\x10")
        if k in self.bad_crc:
            self.write(wire[:-1] + bytes([wire[-1] ^ 0x5A]))
        elif k in self.truncate:
            self.write(wire[:-10])
        elif k in self.oversize:
            big = bytearray(wire)
            size = len(wire) + 100
            big[2], big[3] = size >> 8, size & 0xFF
            self.write(bytes(big))
        else:
            self.write(wire)
            s.sent.append(wire)
        return True
