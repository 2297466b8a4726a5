"""What the node's tests share: a Mosquitto of their own on a free loopback port, a registry, devices, stores.

Never the system broker on 1883: each test starts ``mosquitto -c`` with a
config it writes, on 127.0.0.1 and a free port, and stops it after.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _need import missing
from lightnode import keys, registry, wire

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PG_BASE = os.environ.get("LIGHTNODE_TEST_PG", "postgresql://127.0.0.1:5432/test")
SEGMENT = "feeder-9"
HEARTBEAT = {0: "1.0", 1: 50_000, 2: 3, 3: 1, 4: 1, 5: 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages {inflight}
max_queued_messages {queued}
max_queued_bytes 0
max_packet_size 1048576
log_dest stdout
log_type error
log_type warning
"""


@contextlib.contextmanager
def mosquitto(tmp: Path, inflight: int = 4096, queued: int = 200_000) -> Iterator[int]:
    """A Mosquitto on 127.0.0.1:<free port> until the block ends; yields the port."""
    if not os.path.exists(MOSQUITTO):
        missing("mosquitto is not installed (Debian: apt-get install mosquitto)")
    port = free_port()
    conf = tmp / ("mosquitto-%d.conf" % port)
    conf.write_text(MOSQUITTO_CONF.format(port=port, inflight=inflight, queued=queued))
    with running_mosquitto(MOSQUITTO, conf, [port], tmp / ("mosquitto-%d.log" % port)):
        yield port


@contextlib.contextmanager
def running_mosquitto(exe: str, conf: Path, ports: list[int], log_path: Path) -> Iterator[Any]:
    """``mosquitto -c conf`` until the block ends; it must listen on every port within 5 s."""
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for port in ports:
            deadline = time.monotonic() + 5
            while True:
                if proc.poll() is not None:
                    pytest.fail("mosquitto exited: %s" % log_path.read_text())
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("mosquitto did not listen on %d" % port)
                    time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def pg_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (the postgres extra)"
    try:
        psycopg.connect(PG_BASE, connect_timeout=3).close()
    except Exception as e:  # any failure to answer
        return "PostgreSQL at %s does not answer: %s" % (PG_BASE, str(e).strip()[:120])
    return None


@contextlib.contextmanager
def store_url(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh store: a SQLite file, or a fresh PostgreSQL schema dropped after (skipped if none answers)."""
    if kind == "sqlite":
        yield "sqlite:///" + str(tmp / "ledger.db")
        return
    why = pg_unavailable()
    if why:
        missing(why)
    import psycopg

    schema = "ln_node_%d_%s" % (os.getpid(), secrets.token_hex(4))
    try:
        yield PG_BASE + "?schema=" + schema
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % schema)


class Device:
    """A registered device that signs heartbeats in sequence."""

    def __init__(self, n: int, segment: str = SEGMENT, seed: bytes | None = None) -> None:
        self.seed = seed or bytes([n % 256, n // 256]) * 16
        self.device_id = b"LN" + n.to_bytes(6, "big")
        self.signer = wire.Signer(self.seed, self.device_id, segment)
        self.public_key = keys.public_key(self.seed)
        self.segment = segment
        self.prev = bytes(32)
        self.seq = 0

    @property
    def hex(self) -> str:
        return self.device_id.hex()

    def tx(self, seq: int | None = None, t: int | None = None, body: dict | None = None) -> bytes:
        seq = self.seq if seq is None else seq
        t = t or time.time_ns() // 1000
        data, tx_id = self.signer.make(seq, self.prev, (t, 1, 500), 4, body or HEARTBEAT)
        self.prev, self.seq = tx_id, seq + 1
        return data


def make_registry(
    path: Path,
    devices: list[Device],
    node: str = "node-a",
    ack_seed: bytes = b"\x0a" * 32,
    cp_seed: bytes = b"\x0c" * 32,
) -> registry.Registry:
    """A registry file with an admin, the devices, and the node's checkpoint and ack keys."""
    reg = registry.open_registry(str(path))
    admin_seed = b"\xad" * 32
    reg.init_admin("admin", keys.public_key(admin_seed), admin_seed)
    admin = reg.as_operator("admin", admin_seed)
    for d in devices:
        reg.add_device(d.device_id, d.public_key, d.segment, "unix", "0.1.0", "ab" * 32, admin)
    reg.add_node_key(node, "checkpoint", keys.public_key(cp_seed), admin)
    reg.add_node_key(node, "ack", keys.public_key(ack_seed), admin)
    return reg


NODE_NAME = "node-a"
ACK_SEED, CP_SEED = b"\x0a" * 32, b"\x0c" * 32


def write_key_file(path: Path) -> Path:
    import json

    path.write_text(
        json.dumps({"node": NODE_NAME, "checkpoint": CP_SEED.hex(), "ack": ACK_SEED.hex()})
    )
    return path


def node_kids() -> dict[str, bytes]:
    return {
        "checkpoint": registry.key_id(keys.public_key(CP_SEED)),
        "ack": registry.key_id(keys.public_key(ACK_SEED)),
    }


class NodeProcess:
    """``lightnode node`` in a child process, against a broker port, a store and a registry file."""

    def __init__(
        self, tmp: Path, port: int, store: str, reg_path: Path, segment: str = SEGMENT, *extra: str
    ) -> None:
        self.tmp = tmp
        self.stats_path = tmp / "node-stats.json"
        self.key_file = write_key_file(tmp / "node-keys.json")
        self.args = [
            __import__("sys").executable,
            "-c",
            "from lightnode.cli import main; main()",
            "node",
            "--segment",
            segment,
            "--broker",
            "mqtt://127.0.0.1:%d" % port,
            "--store",
            store,
            "--registry",
            str(reg_path),
            "--key-file",
            str(self.key_file),
            "--stats-file",
            str(self.stats_path),
            "--block-age-ms",
            "200",
            *extra,
        ]
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = open(self.tmp / ("node-%d.log" % self.runs), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.stats().get("subscribed"):
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail("node exited: %s" % self.log())
            if time.monotonic() > deadline:
                pytest.fail("node not subscribed within %.0f s: %s" % (timeout, self.log()))
            time.sleep(0.05)

    def stats(self) -> dict:
        import json

        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def log(self) -> str:
        return "\n".join(
            (self.tmp / ("node-%d.log" % i)).read_text(errors="replace")
            for i in range(1, self.runs + 1)
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
