"""A simulated meter on Modbus: a pymodbus server serving a point map's registers, values moving.

The server is pymodbus's own (an implementation nobody here wrote), run
on an asyncio loop in a thread; what it serves comes from a point map
(``drivers/maps/meter_modbus.json`` by default): each point's register
block is recomputed from a signal model whenever a master reads, encoded
by pymodbus's converters, so the driver's decoding is checked against a
second encoder. Registers outside the map's points are plain memory a
master may write (holding 0-299, coils 0-63).

    from lightnode.simulator.modbus_server import MeterServer
    with MeterServer() as srv:
        host, port = srv.start_tcp()          # 127.0.0.1 and a free port
        ...
    with MeterServer() as srv:
        path = srv.start_rtu(baud=9600, parity="E")   # a pty a master opens (raw mode)

Fed by a grid instead (``source=``, a callable giving every point's
engineering value by name, as ``lightnode.simulator.devices`` makes for a
meter or an EV charger on the simulated grid), each read serves what the
source says at that moment, bits (coils, discrete inputs) included.

``PtyBus`` joins pseudo-terminals as one RS-485 bus (what one writes, the
others read), and ``ScadaPoller`` is a pymodbus master polling on it, for
the listen-only tap's tests.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymodbus.client import ModbusSerialClient
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

MAPS = Path(__file__).resolve().parent.parent / "drivers" / "maps"
METER_MAP = MAPS / "meter_modbus.json"
TAP_MAP = MAPS / "meter_tap.json"
TABLE_SIZE = {"coil": 64, "discrete": 64, "holding": 300, "input": 100}
_FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_DT = ModbusClientMixin.DATATYPE
_PYMODBUS_TYPE = {"u16": _DT.UINT16, "s16": _DT.INT16, "u32": _DT.UINT32, "s32": _DT.INT32,
                  "u64": _DT.UINT64, "s64": _DT.INT64, "f32": _DT.FLOAT32, "f64": _DT.FLOAT64}
SUNSPEC_SF = 1  # the scale factor the simulated meter reports for its SunSpec-style points


def load_map(path: str | os.PathLike = METER_MAP) -> dict[str, Any]:
    with open(path, "rb") as f:
        return json.loads(f.read())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def signal(quantity: str, name: str, t: float) -> float:
    """The meter's value of a point at ``t`` seconds since it started: moving, plausible, bounded."""
    phase = sum(map(ord, name)) % 7
    wave = math.sin(2 * math.pi * t / 7.0 + phase)
    if quantity == "voltage":
        return 230.0 + 2.0 * wave
    if quantity == "current":
        return 10.0 + 3.0 * wave
    if quantity == "frequency":
        return 50.0 + 0.05 * math.sin(2 * math.pi * t / 11.0)
    if quantity == "power":
        return (2200.0 if name.endswith(("L1", "L2", "L3")) else 6600.0) + 300.0 * wave
    if quantity == "reactive-power":
        return -1200.0 + 150.0 * wave
    if quantity == "apparent-power":
        return 6900.0 + 250.0 * wave
    if quantity == "power-factor":
        return 0.95 + 0.02 * wave
    if quantity == "energy":
        start = {"E_import": 123456789012.0, "E_export": 98765.0, "E_net": -4242.0}.get(name, 1000.0)
        return start + 6600.0 * t / 3600.0 * (1 if not name.endswith("export") else 0.01)
    if quantity == "temperature":
        return 35.0 + wave
    if quantity in ("position", "status"):
        return 1.0
    return wave


def encode_registers(value: float, type_: str, order: str = "ABCD") -> list[int]:
    """Registers for ``value``, encoded by pymodbus (ABCD, CDAB), bytes swapped for BADC, DCBA."""
    v: int | float = value if type_.startswith("f") else int(round(value))
    regs = list(ModbusClientMixin.convert_to_registers(
        v, _PYMODBUS_TYPE[type_], word_order="little" if order in ("CDAB", "DCBA") else "big"))
    if order in ("BADC", "DCBA"):
        regs = [(r >> 8) | ((r & 0xFF) << 8) for r in regs]
    return regs


def raw_for(read: dict[str, Any], value: float) -> float:
    """The raw register value for a point's engineering value (its scale undone)."""
    if "scale_register" in read:
        return value / 10.0 ** SUNSPEC_SF
    if "scale" in read:
        return value / float(read["scale"])
    return value


class MeterServer:
    """A pymodbus server (TCP or RTU) serving a meter map; start, use, ``stop()`` (or ``with``)."""

    def __init__(self, pointmap: dict[str, Any] | None = None, unit: int | None = None,
                 frozen: bool = False, source: Callable[[], dict[str, float]] | None = None) -> None:
        self.map = pointmap or load_map()
        self.source = source
        self.unit = unit if unit is not None else int(self.map["source"].get("unit", 1))
        self.frozen = frozen  # values fixed at t=0 (reproducible tests)
        self.t0 = time.monotonic()
        self.reads = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.bus: PtyBus | None = None

    # -- values --
    def now(self) -> float:
        return 0.0 if self.frozen else time.monotonic() - self.t0

    def values(self, t: float | None = None) -> dict[str, float]:
        """Every point's engineering value at ``t`` (default: now), by name."""
        if self.source is not None:
            return dict(self.source())
        t = self.now() if t is None else t
        return {p["name"]: signal(p["quantity"], p["name"], t) for p in self.map["points"]}

    def _fill(self, table: str, regs: list[int], start: int) -> None:
        t = self.now()
        got = self.source() if self.source is not None else None
        for p in self.map["points"]:
            r = p["read"]
            if r["table"] != table:
                continue
            value = got[p["name"]] if got is not None else signal(p["quantity"], p["name"], t)
            if r["type"] == "bool":  # a bit: where pymodbus keeps it (see _set_bit)
                _set_bit(regs, r["address"] - start, bool(value))
                continue
            words = encode_registers(raw_for(r, value), r["type"], r.get("order", "ABCD"))
            at = r["address"] - start
            regs[at:at + len(words)] = words
            if "scale_register" in r:
                regs[r["scale_register"] - start] = SUNSPEC_SF & 0xFFFF

    def _device(self) -> SimDevice:
        blocks: dict[str, list[int] | list[bool]] = {
            "coil": [False] * TABLE_SIZE["coil"], "discrete": [False] * TABLE_SIZE["discrete"],
            "holding": [0] * TABLE_SIZE["holding"], "input": [0] * TABLE_SIZE["input"]}
        for p in self.map["points"]:
            r = p["read"]
            if r["type"] == "bool":
                blocks[r["table"]][r["address"]] = bool(signal(p["quantity"], p["name"], 0.0))
        for table in ("holding", "input"):
            self._fill(table, blocks[table], 0)  # type: ignore[arg-type]

        async def action(fc: int, start: int, address: int, count: int, regs: list[int],
                         set_values: Any) -> None:
            table = _FC_TABLE.get(fc)
            if table in ("holding", "input") and set_values is None:
                self.reads += 1
                self._fill(table, regs, start)
            elif table in ("coil", "discrete") and set_values is None and self.source is not None:
                self.reads += 1
                self._fill(table, regs, start)

        return SimDevice(self.unit, simdata=(
            [SimData(0, values=blocks["coil"], datatype=DataType.BITS)],
            [SimData(0, values=blocks["discrete"], datatype=DataType.BITS)],
            [SimData(0, values=blocks["holding"], datatype=DataType.REGISTERS)],
            [SimData(0, values=blocks["input"], datatype=DataType.REGISTERS)],
        ), action=action)

    # -- running --
    def _run(self, make: Any) -> None:
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def serve() -> None:
                try:
                    self._server = make()
                    await self._server.serve_forever(background=True)
                except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                    failed.append(e)
                finally:
                    ready.set()
                if not failed:
                    while self._server is not None:
                        await asyncio.sleep(0.05)

            loop.run_until_complete(serve())
            loop.close()

        self._thread = threading.Thread(target=main, name="modbus-sim", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failed:
            raise RuntimeError("the pymodbus server did not start: %s" % (failed[0] if failed else "timeout"))

    def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        port = port or free_port(host)
        device = self._device()
        self._run(lambda: ModbusTcpServer(device, address=(host, port)))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, port), timeout=0.2).close()
                return host, port
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the pymodbus TCP server is not listening on %s:%d" % (host, port))

    def start_rtu(self, baud: int = 9600, parity: str = "E", stop: int = 1,
                  bus: PtyBus | None = None, end: int = -1) -> str:
        """Serve RTU on end ``end`` of a pty bus (a new two-end one by default); the path of end 0.

        A pty carries bytes, not bits: Linux refuses a parity setting on one
        (EINVAL), so the server's end is opened without parity whatever
        ``parity`` says; on a real line the setting matters and is kept.
        """
        self.bus = bus or PtyBus(2)
        device = self._device()
        server_end = self.bus.paths[end]
        self.line = (baud, parity, stop)
        self._run(lambda: ModbusSerialServer(device, port=server_end, baudrate=baud, parity="N",
                                             stopbits=stop, timeout=0.05))
        time.sleep(0.2)  # pyserial opens the pty in the server's loop
        return self.bus.paths[0]

    def stop(self) -> None:
        server, loop = self._server, self._loop
        if server is not None and loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(5)
            except Exception:  # noqa: BLE001 - stopping is best effort
                pass
        self._server = None
        if self._thread is not None:
            self._thread.join(5)
        if self.bus is not None:
            self.bus.close()
            self.bus = None

    def __enter__(self) -> MeterServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _set_bit(regs: list[int], address: int, on: bool) -> None:
    """Bit ``address`` of a pymodbus bit block, laid out as its simulator reads it back
    (register ``address``, bit ``address % 16``, when not bit-addressed)."""
    from pymodbus.simulator.simutils import SimUtils

    bits = SimUtils.registersToBits(regs[address:address + 1])
    bits[address % 16] = on
    regs[address] = SimUtils.bitsToRegisters(bits)[0]


class PtyBus:
    """Pseudo-terminals (raw mode) joined as one bus: bytes written on any end reach all others.

    ``paths[i]`` is the device path of end ``i``. ``listen_only`` ends
    receive every byte, and anything they write is kept in ``written``
    instead of reaching the bus, so a test can say a tap never transmitted.
    """

    def __init__(self, ends: int = 2, listen_only: tuple[int, ...] = ()) -> None:
        self.paths: list[str] = []
        self._masters: list[int] = []
        self._slaves: list[int] = []
        for _ in range(ends):
            m, s = os.openpty()
            tty.setraw(s)
            tty.setraw(m)
            os.set_blocking(m, False)
            self._masters.append(m)
            self._slaves.append(s)  # held open so the settings stay while the end is not in use
            self.paths.append(os.ttyname(s))
        self.listen_only = set(listen_only)
        self.written: dict[int, bytearray] = {i: bytearray() for i in self.listen_only}
        self.carried = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="pty-bus", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        poller = select.poll()
        for m in self._masters:
            poller.register(m, select.POLLIN)
        while not self._stop.is_set():
            for fd, _ev in poller.poll(20):
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                i = self._masters.index(fd)
                if i in self.listen_only:
                    self.written[i] += data
                    continue
                self.carried += len(data)
                for j, m in enumerate(self._masters):
                    if j != i:
                        try:
                            os.write(m, data)
                        except OSError:
                            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in self._masters + self._slaves:
            try:
                os.close(fd)
            except OSError:
                pass


class ScadaPoller:
    """A pymodbus master polling a meter map's blocks on a serial line: the SCADA side of a tap."""

    def __init__(self, path: str, requests: list[tuple[str, int, int]], unit: int = 1,
                 baud: int = 9600, parity: str = "E", period_s: float = 0.05) -> None:
        # parity is not set on a pty (see MeterServer.start_rtu)
        self.client = ModbusSerialClient(path, baudrate=baud, parity="N", timeout=0.5, retries=0)
        self.requests = requests
        self.unit = unit
        self.period_s = period_s
        self.answers: list[tuple[str, int, list[Any]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        calls = {"coil": self.client.read_coils, "discrete": self.client.read_discrete_inputs,
                 "holding": self.client.read_holding_registers,
                 "input": self.client.read_input_registers}
        for table, address, count in self.requests:
            rr = calls[table](address, count=count, device_id=self.unit)
            if not rr.isError():
                got = rr.bits[:count] if table in ("coil", "discrete") else rr.registers
                self.answers.append((table, address, list(got)))
            time.sleep(self.period_s)

    def start(self, rounds: int = 3) -> None:
        if not self.client.connect():
            raise RuntimeError("the SCADA poller cannot open its line")

        def run() -> None:
            for _ in range(rounds):
                if self._stop.is_set():
                    break
                self.poll_once()

        self._thread = threading.Thread(target=run, name="scada-poller", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 10) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.close()

    def stop(self) -> None:
        self._stop.set()
        self.join()
