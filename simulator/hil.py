"""Hardware in the loop: a scenario run in which one light node is a board running the firmware.

The board is a real one on a serial port (``pico_w``, ``pico2_w``,
``esp32``, ``esp32s3``), or by default the MicroPython unix port standing
in for one (``unix``: a board directory made and provisioned in the run's
folder, run at the board's heap budget), so the test suite takes the same
path as a bench with a board on it.

The run is the scenario's own (``lightnode.simulator.run``: the grid, the
other light nodes emulated in CPython, a producing full node and two
witnesses, the attacks, the record, the expectations of
``lightnode.simulator.expect``), with one light node taken by the board:

1. the board: a unix-port board is made in ``<run>/board``; a real board
   must already run the application (``lightnode firmware flash``) and
   have booted once (it made its key); it is provisioned over mpremote
   (``lightnode.provision``) for the run's registry, segment and broker;
2. its device, served the real way on the board's field bus: a PMU over
   C37.118 on the network (what ``firmware/ln/app.py`` reads today), on
   ``device_host``; the board's ``lightnode/app.json`` says where;
3. the broker: ``broker`` if given, else amqtt in this process listening
   on ``broker_listen`` (loopback by default; a real board needs an
   address of this host that it can reach);
4. the board's uplink watched on the broker (its transactions' first
   sighting, the block acks that cover them), and at the end the board's
   line of the run record: what it signed against what the ledger
   committed (each once, its hash chain intact), readings, latency from
   publish to final block ack.

Attacks on the board's own transactions (replay, tamper, clone, revoke)
need the emulated light node's internals, so they are left out of a HIL
run and the record says so; attacks on its device (GPS spoofing) stay: they
are in the frames the board reads.

    from lightnode.simulator.hil import HilOptions, run
    record = run(HilOptions("normal_day", duration_s=20))       # unix port
    record = run(HilOptions("substation", board="pico_w", port="/dev/ttyACM0",
                            broker_listen="192.168.1.20"))
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightnode import boards, provision, wire
from lightnode.errors import DecodeError, LightnodeError, VerifyError
from lightnode.firmware.ln import keystore
from lightnode.firmware.ln import wire as spec
from lightnode.simulator import expect
from lightnode.simulator.cluster import PRODUCER
from lightnode.simulator.run import SERIES_HZ, Options, Runner, _latency

__all__ = ["FIRMWARE_READS", "HilError", "HilOptions", "check_options", "run"]

UNIX = "unix"
# The protocol of each device kind, and which of them the firmware's
# application reads today (firmware/ln/app.py refuses any other point map).
DEVICE_PROTOCOLS = {"pmu": "c37118", "relay": "mms", "meter": "modbus-rtu", "charger": "modbus-rtu",
                    "scada": "modbus-tap"}
FIRMWARE_READS = ("c37118",)
# Attacks that live in the device's signals, not in a light node's transactions:
# they stay in a HIL run when they target the board's device.
DEVICE_ATTACKS = ("gps_step", "gps_drift")
BOARD_START_S = 60.0  # a unix-port board boots and connects well within this
BOARD_DRAIN_S = 30.0  # after the run, for the board's last block acks
STALL_S = 8.0  # ... and no longer than this once its acks stop coming
APP_PATH = keystore.DIR.lstrip("/") + "/app.json"  # firmware/ln/run.py reads it there
HEARTBEAT_EVERY = 2


class HilError(LightnodeError):
    """A HIL run that cannot start: a board, port, broker or device the run cannot use."""


@dataclass
class HilOptions:
    scenario: str = "substation"
    board: str = UNIX
    port: str | None = None  # a real board's serial port (mpremote)
    device_port: str | None = None  # a USB RS-485 adapter for a Modbus RTU device
    light_node: str | None = None  # the scenario's light node the board is (default: its first PMU's)
    stands_in_for: str = "pico_w"  # the board a unix-port board stands in for (its heap budget)
    heap_kb: int | None = None  # a unix-port board's heap instead of that budget
    duration_s: float | None = None
    broker: str | None = None
    broker_listen: str | None = None
    out: str | None = None
    profile: str = "full"
    json: bool = False
    quiet: bool = False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port_missing(port: str) -> str | None:
    """Why ``port`` cannot be a serial port here, or None."""
    if port.startswith("/dev/") and not os.path.exists(port):
        try:
            import serial.tools.list_ports

            found = [p.device for p in serial.tools.list_ports.comports()]
        except ImportError:
            found = []
        return "no such port %s; serial ports here: %s" % (port, ", ".join(found) or "none")
    return None


def check_options(opts: HilOptions) -> None:
    """HilError for what cannot work, before anything is started."""
    names = boards.names()
    if opts.board not in names:
        raise HilError("--board %s: one of %s" % (opts.board, ", ".join(names)))
    if opts.board == UNIX:
        if opts.port:
            raise HilError("--board unix runs the firmware in the MicroPython unix port on a board "
                           "directory made in the run's folder: it takes no --port")
        if opts.stands_in_for == UNIX or opts.stands_in_for not in names:
            raise HilError("--stands-in-for %s: one of %s" % (
                opts.stands_in_for, ", ".join(n for n in names if n != UNIX)))
    else:
        if not opts.port:
            raise HilError(
                "--board %s is a real board: give its serial port with --port (for example "
                "/dev/ttyACM0), after 'lightnode firmware flash --board %s --port PORT'; or run "
                "--board unix to use the MicroPython unix port instead" % (opts.board, opts.board))
        why = _port_missing(opts.port)
        if why:
            raise HilError("--port: %s (is the board plugged in?)" % why)
        if opts.heap_kb is not None:
            raise HilError("--heap is for a unix-port board: a real board has the heap it has")
        if opts.broker:
            from urllib.parse import urlsplit

            host = urlsplit(opts.broker).hostname or ""
            if _is_loopback(host):
                raise HilError("--broker %s is this host's loopback, which the board cannot reach: "
                               "give a broker address on the board's network" % opts.broker)
        if not opts.broker_listen or _is_loopback(opts.broker_listen):
            raise HilError(
                "a real board must reach the simulator's devices (and broker) over its network: give "
                "--broker-listen ADDRESS, this host's address on that network (e.g. 192.168.1.20); "
                "the broker listens there too unless --broker names one the board can reach")
    if opts.broker_listen == "0.0.0.0":
        raise HilError("--broker-listen: give this host's address on the board's network, not "
                       "0.0.0.0 (the board is told this address)")
    if opts.device_port:
        why = _port_missing(opts.device_port)
        if why:
            raise HilError("--device-port: %s (is the RS-485 adapter plugged in?)" % why)


# -- the broker when none is given ---------------------------------------------------------


class _Amqtt:
    """amqtt (``lightnode.node.embedded``'s broker) on ``host``, in a thread and loop of its own."""

    def __init__(self, host: str) -> None:
        self.host = host
        with socket.socket() as s:
            s.bind((host, 0))
            self.port = int(s.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="hil-broker", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _main(self) -> None:
        from amqtt.broker import Broker
        from lightnode.node import embedded

        cfg = embedded.config(self.port)
        cfg["listeners"]["default"]["bind"] = "%s:%d" % (self.host, self.port)
        loop = self._loop
        asyncio.set_event_loop(loop)
        broker = Broker(cfg, loop=loop)
        try:
            loop.run_until_complete(broker.start())
        except BaseException as e:  # noqa: BLE001 - said by start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(broker.shutdown())
        loop.close()

    def start(self) -> _Amqtt:
        import logging

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self._ready.is_set():
            raise HilError("the broker could not listen on %s:%d: %s" % (self.host, self.port, self._error))
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)


# -- the board ----------------------------------------------------------------------------


class UnixPortBoard:
    """A unix-port board made in the run's folder; the firmware runs in a thread's child process."""

    def __init__(self, root: Path, stands_in_for: str, heap_kb: int | None) -> None:
        self.root = root
        self.stands_in_for = stands_in_for
        self.heap_kb = heap_kb
        self.name = "unix (as %s)" % stands_in_for
        self.result: Any = None

    def prepare(self) -> provision.Identity:
        return provision.init_unix_board(self.root, self.stands_in_for)

    def target(self) -> provision.Board:
        return provision.UnixBoard(self.root)

    def write_app(self, data: bytes) -> None:
        (self.root / APP_PATH).write_bytes(data)

    def run(self, seconds: float) -> dict[str, Any] | None:
        """The firmware for ``seconds`` (then its own drain); its counters, the log in the run folder."""
        from lightnode.firmwarecli import run_board

        res = self.result = run_board(self.root, seconds, heap=self.heap_kb)
        (self.root.parent / "board.log").write_text(res.stdout + res.stderr)
        if res.returncode != 0 or not res.results:
            said = [x for x in (res.stdout + res.stderr).splitlines() if x.strip()]
            raise HilError("the firmware exited with %d: %s (board.log has all it printed)" % (
                res.returncode, said[-1].strip() if said else "no output"))
        return dict(res.results[-1])

    def stop(self) -> None:
        pass  # it stops on its own after its seconds


class SerialBoard:
    """A real board on a serial port, running the application ``lightnode firmware flash`` put there."""

    def __init__(self, board: str, port: str, log: Path) -> None:
        self.board = board
        self.port = port
        self.name = "%s on %s" % (board, port)
        self.log = log
        self._transport: Any = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._app: bytes | None = None

    def prepare(self) -> provision.Identity:
        try:
            ident = provision.MpremoteBoard(self.port).read_identity()
        except provision.ProvisionError as e:
            raise HilError(
                "%s: %s. Flash the application first (lightnode firmware flash --board %s --port %s) "
                "and let the board boot once, so it makes its key" % (self.name, str(e).rstrip("."), self.board, self.port)) from None
        return ident

    def target(self) -> provision.Board:
        return provision.MpremoteBoard(self.port)

    def write_app(self, data: bytes) -> None:
        self._app = data

    def run(self, seconds: float) -> dict[str, Any] | None:
        """Write app.json, soft-reset the board so main.py runs, keep its output until ``stop``."""
        from lightnode import fwflash

        t = self._transport = fwflash._connect(self.port)
        if self._app is not None:
            t.fs_writefile(APP_PATH, self._app)
        t.exit_raw_repl()
        t.serial.write(b"\x04")  # a soft reset in the friendly REPL runs main.py
        with open(self.log, "ab") as log:
            while not self._stop.is_set():
                data = t.serial.read(t.serial.in_waiting or 1)
                if data:
                    log.write(data)
                    log.flush()
        return None

    def stop(self) -> None:
        self._stop.set()
        t = self._transport
        if t is not None:
            with contextlib.suppress(Exception):
                t.serial.write(b"\x03\x03")  # the application stops; its journal keeps what is pending
                time.sleep(0.2)
                t.close()


# -- what the board put on the wire -------------------------------------------------------


class Watcher:
    """The board's transactions and block acks, as the broker carries them."""

    def __init__(self, broker: str, segment: str, device: bytes, node_keys: dict[bytes, bytes],
                 witness_keys: dict[bytes, bytes]) -> None:
        from lightnode.node.mqtt import Transport

        self.device = device
        self.node_keys, self.witness_keys = node_keys, witness_keys
        self.lock = threading.Lock()
        self.seen: dict[int, tuple[bytes, float]] = {}  # seq -> (tx id, first seen)
        self.forks: list[int] = []  # a second, different transaction under one seq
        self.acked: dict[int, float] = {}  # seq -> when a final block ack covered it
        self.acked_through = -1
        self.t = Transport.from_url(broker, "hil-watch-" + os.urandom(3).hex(), clean_session=True)
        dev = device.hex()
        self.t.subscribe(spec.TOPIC_TX % (segment, dev), self._tx)
        self.t.subscribe(spec.TOPIC_ACK % (segment, dev), self._ack)

    def start(self) -> None:
        self.t.start()

    def close(self) -> None:
        self.t.close()

    def _tx(self, topic: str, payload: bytes) -> None:
        try:
            tx = wire.decode(payload)
        except (DecodeError, VerifyError, TypeError):
            return  # not the board's (the node refuses it, and the record counts it there)
        now = time.time()
        with self.lock:
            have = self.seen.get(tx.seq)
            if have is None:
                self.seen[tx.seq] = (tx.id, now)
            elif have[0] != tx.id:
                self.forks.append(tx.seq)

    def _ack(self, topic: str, payload: bytes) -> None:
        from lightnode.node import acks

        try:
            a = acks.verify_ack(payload, self.node_keys, self.witness_keys, device_id=self.device)
        except (acks.AckError, ValueError, TypeError):
            return  # a NACK, or an ack not final yet
        now = time.time()
        with self.lock:
            for seq in self.seen:
                if seq <= a.seq and seq not in self.acked:
                    self.acked[seq] = now
            self.acked_through = max(self.acked_through, a.seq)

    def latencies_ms(self) -> list[float]:
        with self.lock:
            return [(self.acked[s] - t) * 1000 for s, (_i, t) in self.seen.items() if s in self.acked]


# -- the run --------------------------------------------------------------------------------


@dataclass
class BoardNode:
    """The board where the run and the expectations look for a light node by name."""

    name: str
    device_id: bytes
    runner: Any

    @property
    def hex(self) -> str:
        return self.device_id.hex()

    def pause(self, secs: float) -> None:
        # a storm's comm loss would need the board's link cut (a netem proxy): said, not done
        self.runner.timeline("comm_loss", "hil", "not applied to the board %s (%.0f s)" % (self.name, secs))


def _pick(scn: Any, name: str | None) -> Any:
    by_dev = {d.name: d for d in scn.devices}
    if name is not None:
        for ln in scn.light_nodes:
            if ln.name == name:
                return ln
        raise HilError("scenario %s has no light node %r; it has %s" % (
            scn.name, name, ", ".join(ln.name for ln in scn.light_nodes)))
    for ln in scn.light_nodes:
        dev = by_dev.get(ln.device)
        if dev is not None and DEVICE_PROTOCOLS.get(dev.kind) in FIRMWARE_READS:
            return ln
    raise HilError("scenario %s has no light node on a device the firmware reads (%s)" % (
        scn.name, ", ".join(FIRMWARE_READS)))


class HilRunner(Runner):
    """``lightnode.simulator.run.Runner`` with one light node taken by the board."""

    scn: Any
    _nodes: list[Any]

    def __init__(self, hopts: HilOptions, opts: Options, console: Any, broker_for_board: str,
                 device_host: str) -> None:
        super().__init__(opts, console)
        self.hopts = hopts
        self.broker_for_board = broker_for_board
        self.device_host = device_host
        scn = self.scn
        self.ln_spec = _pick(scn, hopts.light_node)
        dev_spec = next((d for d in scn.devices if d.name == self.ln_spec.device), None)
        kind = dev_spec.kind if dev_spec is not None else "?"
        proto = DEVICE_PROTOCOLS.get(kind, kind)
        if proto not in FIRMWARE_READS:
            raise HilError(
                "light node %s reads %s %s over %s; the firmware's application reads %s only today "
                "(firmware/ln/app.py): pick a PMU's light node with --light-node" % (
                    self.ln_spec.name, kind, self.ln_spec.device, proto, ", ".join(FIRMWARE_READS)))
        if hopts.device_port:
            raise HilError("--device-port is the RS-485 line of a Modbus RTU device; %s is a %s, served "
                           "over the network (C37.118)" % (self.ln_spec.device, kind))
        mine = (self.ln_spec.name, self.ln_spec.device)
        kept, self.left_out = [], []
        for a in scn.attacks:
            if a.target in mine and a.kind not in DEVICE_ATTACKS:
                self.left_out.append(a.name)
            else:
                kept.append(a)
        exp = [x for x in scn.expect if x.params.get("attack") not in self.left_out]
        self.scn = dataclasses.replace(scn, attacks=kept, expect=exp)
        board = hopts.board
        self.hw: UnixPortBoard | SerialBoard
        if board == UNIX:
            self.hw = UnixPortBoard(self.out / "board", hopts.stands_in_for, hopts.heap_kb)
        else:
            self.hw = SerialBoard(board, str(hopts.port), self.out / "board.log")
        self.board_node: BoardNode | None = None
        self._provisioned = ""
        self.board_stats: dict[str, Any] | None = None
        self.board_error: str | None = None
        self.watcher: Watcher | None = None
        self._serving = contextlib.ExitStack()
        self._board_task: asyncio.Future[Any] | None = None

    # -- the board where the runner looks for light nodes --------------------------------

    def light_node(self, name: str) -> Any:
        b = self.board_node
        if b is not None and name in (b.name, self.ln_spec.device):
            return b
        return super().light_node(name)

    def light_node_of_device(self, name: str) -> Any:
        b = self.board_node
        if b is not None and name in (b.name, self.ln_spec.device):
            return b
        return super().light_node_of_device(name)

    def _device_name(self, device: bytes | None) -> str:
        b = self.board_node
        if b is not None and device == b.device_id:
            return b.name
        return super()._device_name(device)

    # -- set up ---------------------------------------------------------------------------

    def _make_fleet(self) -> None:
        super()._make_fleet()
        name = self.ln_spec.name
        self._nodes = [n for n in self._nodes if n.name != name]
        if self.nodes_by_device.get(self.ln_spec.device) is not None \
                and self.nodes_by_device[self.ln_spec.device].name == name:
            del self.nodes_by_device[self.ln_spec.device]

    def _pointmap(self) -> Path:
        """The device's point map, with its own IDCODE (a PMU answers only commands to it)."""
        dev = self.devices[self.ln_spec.device]
        m = json.loads(Path(dev.map_path).read_text())
        if "idcode" in dev.params:
            m["source"]["idcode"] = int(dev.params["idcode"])
        path = self.out / ("%s.json" % self.ln_spec.device)
        path.write_text(json.dumps(m, indent=1))
        return path

    def _provision(self) -> None:
        super()._provision()
        ident = self.hw.prepare()
        self.board_node = BoardNode(self.ln_spec.name, ident.device_id, self)
        done = provision.provision(self.hw.target(), self.cluster.reg, self.cluster.admin,  # type: ignore[arg-type]
                                   self.segment, self._pointmap(), self.broker_for_board,
                                   self.out / "device-passwords")
        self._provisioned = "board %s provisioned: device %s, segment %s, broker %s" % (
            self.hw.name, done.device_id, done.segment, self.broker_for_board)

    # -- the run ----------------------------------------------------------------------------

    async def _schedule_and_wait(self) -> None:
        assert self.board_node is not None
        dev = self.devices[self.ln_spec.device]
        dev.t0_us = int(self.t0_wall * 1e6)  # the device's clock is the run's, as the fleet's are
        t0 = self.t0
        ep = self._serving.enter_context(dev.serve(clock=lambda: time.monotonic() - t0,
                                                   host=self.device_host))
        window = self.ln_spec.window_s or boards.load(self._stands_for()).get("default_window_s", 5)
        app = {"source": {"host": ep.host, "port": ep.port}, "window_s": window,
               "heartbeat_every": HEARTBEAT_EVERY}
        self.hw.write_app(json.dumps(app).encode())
        self.watcher = Watcher(self.broker_url, self.segment, self.board_node.device_id,
                               self.cluster.node_keys(), self.cluster.witness_keys())
        self.watcher.start()
        self._board_task = asyncio.ensure_future(asyncio.to_thread(self.hw.run, self.scn.duration_s))
        self.timeline("hil", self.ln_spec.name, self._provisioned)
        self.timeline("hil", self.ln_spec.name, "%s reads %s at %s:%d (C37.118)" % (
            self.hw.name, self.ln_spec.device, ep.host, ep.port))
        try:
            await super()._schedule_and_wait()
        except BaseException:
            self._stop_board()
            raise

    def _stands_for(self) -> str:
        return self.hopts.stands_in_for if self.hopts.board == UNIX else self.hopts.board

    def _stop_board(self) -> None:
        self.hw.stop()
        if self.watcher is not None:
            self.watcher.close()
        self._serving.close()

    async def _drain(self) -> None:
        await super()._drain()
        task = self._board_task
        try:
            if isinstance(self.hw, UnixPortBoard):
                # the unix port ends on its own: its seconds, then up to 10 s for its last acks
                self.board_stats = await asyncio.wait_for(task, self.scn.duration_s + 120)  # type: ignore[arg-type]
            else:
                await self._drain_serial()
        except (TimeoutError, LightnodeError) as e:
            self.board_error = str(e) or "the board did not finish"
        finally:
            self._stop_board()
            if task is not None and not isinstance(self.hw, UnixPortBoard):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)

    async def _drain_serial(self) -> None:
        """A real board runs on: the run's cut is what it sent by now; wait for those acks."""
        w = self.watcher
        assert w is not None
        with w.lock:
            cut = max(w.seen) if w.seen else -1
        self.board_stats = {"cut_seq": cut}
        deadline = time.monotonic() + BOARD_DRAIN_S
        last, changed = w.acked_through, time.monotonic()
        while w.acked_through < cut and time.monotonic() < deadline:
            if w.acked_through != last:
                last, changed = w.acked_through, time.monotonic()
            elif time.monotonic() - changed > STALL_S:
                break
            await asyncio.sleep(0.25)

    # -- the record -------------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        record = super()._record()
        line, series = self._board_line(record)
        record["light_nodes"].insert(0, line)
        t = record["totals"]
        t["transactions"] += line["tx_signed"]
        t["committed"] += line["tx_committed"]
        t["readings"] += line["readings"]
        t["lost"] += line["lost"]
        if line["lost"]:
            record["lost_detail"] = line["lost_detail"] + record.get("lost_detail", [])
        for q in ("frequency_hz", "angle_deg"):
            if series.get(q):
                record["series"][q][line["name"]] = series[q]
        lat = self.watcher.latencies_ms() if self.watcher else []
        record["hil"] = {
            "board": self.hopts.board, "port": self.hopts.port, "light_node": line["name"],
            "device": self.ln_spec.device, "stands_in_for": self._stands_for(),
            "broker_for_board": self.broker_for_board, "device_host": self.device_host,
            "board_stats": self.board_stats, "board_error": self.board_error,
            "left_out_attacks": self.left_out, "latency_ms": _latency(lat),
        }
        extra = list(self.opts.extra_expect)
        record["expectations"] = expect.check(self.scn, record, self, extra) + self._board_checks(line)
        record["ok"] = all(e["met"] for e in record["expectations"])
        return record

    def _board_entries(self) -> list[Any]:
        from lightnode.ledger.store import open_store

        assert self.board_node is not None
        store = open_store(self.cluster.stores[PRODUCER])
        try:
            return list(store.entries(chain="seg:" + self.segment, device=self.board_node.device_id))
        finally:
            store.close()

    def _board_line(self, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        from lightnode import readings

        assert self.board_node is not None
        entries = self._board_entries()
        w = self.watcher
        seen = dict(w.seen) if w else {}
        st = self.board_stats or {}
        if st.get("first_seq") is not None:  # the unix port says what it signed
            signed = set(range(int(st["first_seq"]), int(st["last_seq"]) + 1))
        else:  # a real board: what it sent by the cut, and any number skipped in between
            cut = int(st.get("cut_seq", max(seen) if seen else -1))
            sent = [s for s in seen if s <= cut]
            signed = set(range(min(sent), cut + 1)) if sent else set()
        by_seq: dict[int, list[Any]] = {}
        for e in entries:
            by_seq.setdefault(int(e.seq), []).append(e)
        dups = sorted(s for s, es in by_seq.items() if len(es) > 1)
        wrong = sorted(s for s, es in by_seq.items() if s in seen and es[0].tx_id != seen[s][0])
        committed = sorted(s for s in signed if s in by_seq and s not in wrong)
        lost = sorted(signed - set(committed))
        # the device's hash chain: each transaction names the one before it
        breaks, prev, last, n_read = [], None, None, 0
        freq: dict[int, float] = {}
        ang: dict[int, float] = {}
        plan = json.loads(self._pointmap().read_text())
        res = {p["id"]: float(p["resolution"]) for p in plan["points"]}
        fid = next((p["id"] for p in plan["points"] if p["quantity"] == "frequency"), None)
        aid = next((p["id"] for p in plan["points"] if p["quantity"] == "angle"), None)
        for s in sorted(by_seq):
            e = by_seq[s][0]
            tx = wire.decode(e.data)
            if last is not None and s == last + 1 and tx.prev != prev:
                breaks.append(s)
            prev, last = e.tx_id, s
            if tx.kind == spec.KIND_READINGS:
                for ser in readings.decode_body(tx.body):
                    n_read += ser.n * len(ser.points)
                    for p in ser.points:
                        into = freq if p.id == fid else ang if p.id == aid else None
                        if into is None:
                            continue
                        for t_us, v in zip(ser.times, p.values, strict=False):
                            k = int(round((t_us / 1e6 - self.t0_wall) * SERIES_HZ))
                            into.setdefault(k, v * res[p.id])
        grid = record["series"]["t_s"]
        series = {q: [round(d[k], 5) if k in d else None for k in range(len(grid))]
                  for q, d in (("frequency_hz", freq), ("angle_deg", ang)) if d}
        line = {
            "name": self.board_node.name, "device_id": self.board_node.hex,
            "device_kind": "pmu", "board": self._stands_for(), "firmware": True, "hil": self.hw.name,
            "tx_signed": len(signed), "tx_committed": len(committed), "readings": n_read,
            "lost": len(lost), "acked": len(w.acked) if w else 0,
            "pending": int(st.get("pending", 0) or 0), "duplicates": dups, "chain_breaks": breaks,
            "forks_on_wire": list(w.forks) if w else [], "wrong_id": wrong,
            "lost_detail": ["%s seq %d (not committed)" % (self.board_node.name, s) for s in lost[:5]],
        }
        return line, series

    def _board_checks(self, line: dict[str, Any]) -> list[dict[str, Any]]:
        name = line["name"]
        out = [
            {"name": "hil:board_ran", "met": self.board_error is None and line["tx_signed"] > 0,
             "detail": self.board_error or "%s signed %d transactions (%d readings)" % (
                 self.hw.name, line["tx_signed"], line["readings"])},
            {"name": "hil:committed_once", "met": not line["duplicates"] and not line["wrong_id"]
             and line["tx_committed"] == line["tx_signed"],
             "detail": "%d of %d of %s's transactions committed, each once%s" % (
                 line["tx_committed"], line["tx_signed"], name,
                 "" if not (line["duplicates"] or line["wrong_id"]) else "; twice: %s, other bytes: %s" % (
                     line["duplicates"][:5], line["wrong_id"][:5]))},
            {"name": "hil:chain_intact", "met": not line["chain_breaks"] and not line["forks_on_wire"],
             "detail": "each transaction names the one before it" if not line["chain_breaks"]
             else "chain breaks at seq %s" % line["chain_breaks"][:5]},
        ]
        return out


def run(hopts: HilOptions, console: Any = None) -> dict[str, Any]:
    """Carry out one HIL run; the run record (also ``run.json`` in the run's folder)."""
    from rich.console import Console

    check_options(hopts)
    console = console or Console(stderr=hopts.json)
    listen = hopts.broker_listen or "127.0.0.1"
    broker: _Amqtt | None = None
    if hopts.broker:
        nodes_url = board_url = hopts.broker
    else:
        broker = _Amqtt(listen).start()
        nodes_url = "mqtt://%s:%d" % (listen, broker.port)
        board_url = nodes_url
    try:
        out = hopts.out or str(Path("lightnode-runs") / ("hil-%s-%s" % (
            hopts.scenario.rsplit("/", 1)[-1].removesuffix(".toml"), time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))))
        opts = Options(scenario=hopts.scenario, duration_s=hopts.duration_s, broker=nodes_url, out=out,
                       profile=hopts.profile, json=hopts.json, quiet=hopts.quiet)
        runner = HilRunner(hopts, opts, console, board_url, listen)
        record = asyncio.run(runner.main())
        if broker is not None:
            record["broker"] = nodes_url + " (embedded)"
        (runner.out / "run.json").write_text(json.dumps(record, indent=1, default=str))
        return record
    finally:
        if broker is not None:
            broker.stop()
