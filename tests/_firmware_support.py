"""What the whole-firmware tests share: a segment with a light node on the unix port, and ways to hurt it.

``Rig`` sets up, in a clean directory, what ``test_firmware_run`` does
step by step: a registry (with the producer's and both witnesses' keys),
a unix-port board provisioned with the PMU point map, a Mosquitto of its
own, a simulated PMU over C37.118, a producing ``lightnode node`` and two
witnesses. The firmware runs as a child process of the unix port (not
through ``lightnode firmware run``), so a test can SIGKILL it at any
moment, as a power cut does. Optionally a ``lightnode.simulator.netem``
proxy sits between the board and the broker; the broker can be killed
and started again on its port.

    with Rig(tmp_path, app={"window_s": 1}) as rig:
        fw = rig.start_firmware(seconds=10)
        stats = fw.wait()
        entries = rig.entries()        # the device's committed transactions, in ledger order
        rig.dump()                     # lightnode device dump against the producer's store

The heap is LIGHTNODE_FW_HEAP (KB) if set, else ``DEFAULT_HEAP_KB``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _need import missing
from _node_support import MOSQUITTO, MOSQUITTO_CONF, SEGMENT, NodeProcess, free_port, make_registry
from click.testing import CliRunner
from lightnode import devicedump, keys
from lightnode import micropython as mp
from lightnode.errors import HarnessError
from lightnode.firmware.ln import txn, wire
from lightnode.ledger.store import open_store
from lightnode.simulator.pmu_server import PmuServer
from test_node_cli_quorum import WITNESS_SEEDS, _stop, _witness

MAPS = Path(__file__).resolve().parents[1] / "drivers" / "maps"
DEVICE_SCRIPTS = Path(__file__).resolve().parents[1] / "sdk" / "device_scripts"
# Rig(machine=True): the stand-ins for machine and network, with the board.json at the
# board's root (as flashing puts it there), are installed before main.py runs
_MACHINE_PRELUDE = (
    "import sys, json\n"
    "sys.path.insert(0, %r)\n"
    "import sim_machine, sim_network\n"
    "with open('board.json') as _f:\n"
    "    sim_machine.install(json.loads(_f.read()))\n"
    "sim_network.install()\n"
    "sys.path.pop(0)\n"
    "del sim_machine, sim_network, _f\n"
)
# The pico_w budget (128 KB) is not met yet on this 64-bit port: the whole
# firmware needs 150 KB with a 10 frames/s PMU (tests/test_firmware_run.py)
# and 196 KB at 50 frames/s in a 5 s window (bench/firmware.py), more with the
# machine/network stand-ins loaded. The rig runs above both.
# LIGHTNODE_FW_HEAP overrides.
DEFAULT_HEAP_KB = 256
ADMIN_SEED = b"\xad" * 32
FULL = os.environ.get("LIGHTNODE_PROFILE") == "full"


def fw_heap() -> int:
    v = os.environ.get("LIGHTNODE_FW_HEAP")
    return int(v) if v else DEFAULT_HEAP_KB


def _cli() -> Any:
    from lightnode.cli import main

    return main


def invoke(*args: str) -> Any:
    """``lightnode ARGS`` in this process; the click Result."""
    return CliRunner().invoke(_cli(), list(args))


def run_ok(*args: str) -> str:
    res = invoke(*args)
    assert res.exit_code == 0, "lightnode %s: %s" % (" ".join(args), res.output)
    return res.output


class Firmware:
    """One run of the firmware in the unix port, a child process of its own."""

    def __init__(self, rig: Rig, seconds: float | None, heap: int) -> None:
        self.rig = rig
        rig.runs += 1
        self.n = rig.runs
        self.log_path = rig.tmp / ("firmware-%d.log" % self.n)
        rom = mp.rom_image()
        kb = heap + -(-rom.stat().st_size // 1024) + 1  # as run_unix: the image stands for flash
        script = rig.tmp / ("fw-main-machine.py" if rig.machine else "fw-main.py")
        if not script.exists():
            from lightnode.firmwarecli import _main_script

            stand_ins = _MACHINE_PRELUDE % str(DEVICE_SCRIPTS) if rig.machine else ""
            script.write_text(mp._PRELUDE + mp._rom_prelude(rom) + stand_ins + _main_script().read_text())
        env = dict(os.environ, MICROPYPATH=".frozen")
        window = rig.facts.get("default_window_s", 5)
        argv = [mp.find_micropython(), "-X", "heapsize=%dK" % kb, str(script),
                "-" if seconds is None else "%g" % seconds, "%g" % window]
        self.seconds = seconds
        self.started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=str(rig.board), env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the power cut. Nothing of the process runs after it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float | None = None) -> dict:
        """The run's counters (its ``@@LN`` line); fails the test if it did not end well."""
        if timeout is None:
            timeout = (self.seconds or 0) + 90
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("firmware run %d did not end in %ss:\n%s" % (self.n, timeout, self.output()[-4000:]))
        out = self.output()
        stats = [json.loads(x[len(mp.RESULT_MARK):]) for x in out.splitlines()
                 if x.startswith(mp.RESULT_MARK)]
        if rc != 0 or not stats:
            pytest.fail("firmware run %d exited %d:\n%s" % (self.n, rc, out[-4000:]))
        return stats[-1]


class Rig:
    """A segment around one unix-port light node; see the module's doc."""

    def __init__(self, tmp: Path, app: dict | None = None, pmu_rate: int = 10,
                 pmu_faults: dict | None = None, proxy: bool = False, board: str = "pico_w",
                 heap: int | None = None, machine: bool = False,
                 update_seed: bytes | None = None) -> None:
        self.tmp = Path(tmp)
        self.app = {"heartbeat_every": 2, **(app or {})}
        self.pmu_rate = pmu_rate
        self.pmu_faults = pmu_faults
        self.use_proxy = proxy
        self.board_name = board
        self.heap = heap if heap is not None else fw_heap()
        self.machine = machine  # stand-ins for machine and network, board.json at the root
        self.update_seed = update_seed  # registered as a node key with the update role
        self.board = self.tmp / "board"
        self.reg_path = self.tmp / "registry.db"
        self.stores = {n: "sqlite:///" + str(self.tmp / n / "ledger.db") for n in ("p", "b", "c")}
        self.store = self.stores["p"]
        self.runs = 0
        self.broker_runs = 0
        self.net: Any = None
        self.broker: subprocess.Popen | None = None
        self.firmware: Firmware | None = None
        self._stack = contextlib.ExitStack()

    # -- set up and tear down -----------------------------------------------------------

    def __enter__(self) -> Rig:
        try:
            mp.find_micropython()
        except HarnessError as e:
            missing(str(e))
        if not os.path.exists(MOSQUITTO):
            missing("mosquitto is not installed (Debian: apt-get install mosquitto)")
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _setup(self) -> None:
        from lightnode import boards

        tmp = self.tmp
        self.facts = boards.load(self.board_name)
        reg = make_registry(self.reg_path, [])
        admin = reg.as_operator("admin", ADMIN_SEED)
        for name, (cp_seed, ack_seed) in WITNESS_SEEDS.items():
            reg.add_node_key(name, "checkpoint", keys.public_key(cp_seed), admin)
            reg.add_node_key(name, "ack", keys.public_key(ack_seed), admin)
        if self.update_seed is not None:
            reg.add_node_key("producer", "update", keys.public_key(self.update_seed), admin)
        reg.close()
        keys.write_seed(tmp / "admin.seed", ADMIN_SEED)
        (tmp / "pmu.json").write_bytes((MAPS / "pmu_c37118.json").read_bytes())
        run_ok("board", "unix", "init", str(self.board), "--board", self.board_name)
        # as flashing does: the board's facts at its root (the journal's quota comes from there)
        (self.board / "board.json").write_text(json.dumps(self.facts, sort_keys=True))
        ident = json.loads((self.board / "lightnode" / "identity.json").read_text())
        self.device = bytes.fromhex(ident["device"])
        self.device_hex = ident["device"]

        self.broker_port = free_port()
        self.start_broker()
        self._stack.callback(self.kill_broker)
        self.pmu = PmuServer(rate=self.pmu_rate, faults=self.pmu_faults).start()
        self._stack.callback(self.pmu.stop)
        port = self.broker_port
        if self.use_proxy:
            from lightnode.simulator.netem import Proxy

            self.net = Proxy(("127.0.0.1", self.broker_port)).start()
            self._stack.callback(self.net.stop)
            port = self.net.address[1]
        run_ok("device", "provision", str(self.board), "--segment", SEGMENT, "--pointmap",
               str(tmp / "pmu.json"), "--broker", "mqtt://127.0.0.1:%d" % port,
               "--registry", str(self.reg_path), "--as", "admin", "--key-file", str(tmp / "admin.seed"))
        self.write_app()
        for n in self.stores:
            (tmp / n).mkdir(exist_ok=True)
        self.witnesses = {name: _witness(tmp, name, self.broker_port, self.reg_path,
                                         self.stores[name[-1]]) for name in WITNESS_SEEDS}
        self._stack.callback(self._stop_witnesses)
        self.producer = NodeProcess(tmp, self.broker_port, self.store, self.reg_path, SEGMENT)
        self.producer.start()
        self._stack.callback(self.producer.stop)
        self._stack.callback(self._stop_firmware)
        self.producer.wait_ready()
        time.sleep(1.0)  # the witnesses subscribe

    def write_app(self, **more: Any) -> None:
        host, pmu_port = self.pmu.address
        app = {"source": {"host": host, "port": pmu_port}, **self.app, **more}
        (self.board / "lightnode" / "app.json").write_text(json.dumps(app))

    def _stop_witnesses(self) -> None:
        for proc in self.witnesses.values():
            if proc.poll() is None:
                _stop(proc)

    def _stop_firmware(self) -> None:
        if self.firmware is not None and self.firmware.alive():
            self.firmware.kill()

    # -- the broker ---------------------------------------------------------------------

    def start_broker(self) -> None:
        """Mosquitto on the rig's port (no persistence: a restart forgets every session)."""
        import socket

        self.broker_runs += 1
        conf = self.tmp / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=self.broker_port, inflight=4096, queued=200_000))
        log = open(self.tmp / ("mosquitto-%d.log" % self.broker_runs), "wb")  # noqa: SIM115
        self.broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.broker.poll() is not None:
                pytest.fail("mosquitto exited: %s" % (self.tmp / ("mosquitto-%d.log" % self.broker_runs)).read_text())
            try:
                socket.create_connection(("127.0.0.1", self.broker_port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("mosquitto did not listen on %d" % self.broker_port)
                time.sleep(0.05)

    def kill_broker(self) -> None:
        """SIGKILL the broker: every session and queued message is gone."""
        if self.broker is not None and self.broker.poll() is None:
            self.broker.kill()
            self.broker.wait(10)

    # -- the firmware -------------------------------------------------------------------

    def start_firmware(self, seconds: float | None = None) -> Firmware:
        self.firmware = Firmware(self, seconds, self.heap)
        return self.firmware

    def run_firmware(self, seconds: float) -> dict:
        return self.start_firmware(seconds).wait()

    # -- what the ledger and the board hold ---------------------------------------------

    def entries(self) -> list:
        store = open_store(self.store)
        try:
            return list(store.entries(chain="seg:" + SEGMENT, device=self.device))
        finally:
            store.close()

    def journal(self) -> devicedump.Snapshot:
        return devicedump.read_journal(self.board)

    def dump(self) -> tuple[int, dict]:
        """``lightnode device dump BOARD --store PRODUCER --json``: (exit code, report)."""
        res = invoke("device", "dump", str(self.board), "--store", self.store, "--json")
        start = res.output.find("{")
        assert start >= 0, res.output
        report, _end = json.JSONDecoder().raw_decode(res.output[start:])
        return res.exit_code, report

    def audit(self) -> Any:
        return invoke("audit", "--store", self.store, "--registry", str(self.reg_path))

    def wait_for(self, what: str, cond: Any, timeout: float, every: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                pytest.fail("%s: not within %.0f s\nproducer log:\n%s" % (
                    what, timeout, self.producer.log()[-3000:]))
            time.sleep(every)

    def wait_committed(self, seq: int, timeout: float = 30) -> list:
        """The ledger's entries once it holds ``seq`` (and so every earlier one sent)."""
        return self.wait_for("seq %d committed" % seq,
                             lambda: (lambda es: es if es and es[-1].seq >= seq else None)(self.entries()),
                             timeout)


def decode(entry: Any) -> Any:
    """The device's transaction an entry holds (``ln.txn``: kind, body, prev)."""
    return txn.decode(entry.data)


def check_chain(entries: list) -> list:
    """The decoded transactions; asserts seqs strictly increase and each prev is the last id."""
    prev = bytes(32)
    last = -1
    out = []
    for e in entries:
        tx = decode(e)
        assert e.seq > last, "seq %d after %d" % (e.seq, last)
        assert tx.prev == prev, "seq %d: prev is not the previous transaction's id" % e.seq
        prev, last = e.tx_id, e.seq
        out.append(tx)
    return out


def events(entries: list, etype: int) -> list:
    """(seq, body) of the device's events of ``etype``."""
    out = []
    for e in entries:
        tx = decode(e)
        if tx.kind == wire.KIND_EVENT and tx.body.get(wire.E_TYPE) == etype:
            out.append((e.seq, tx.body))
    return out
