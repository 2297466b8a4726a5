"""The full nodes of a simulation: a fresh registry, a producing ``lightnode node`` and two witnesses.

They run as the real commands, each in a process of its own (what a
utility runs, with their own stores and keys; two cores work at once, and
a producer can be stopped, wiped and started again the way an intruder
would leave it). The registry is a SQLite file in the run's folder that
the runner changes during the run (a revocation) and the nodes catch up.

    c = Cluster(out_dir, "sub-1", store=None)          # SQLite stores in out_dir
    c.init_registry()
    c.add_device(device_id, public_key, "pico_w")
    c.start("mqtt://127.0.0.1:1883"); c.wait_ready()
    ...
    c.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lightnode import keys, registry
from lightnode.errors import LightnodeError

__all__ = ["Cluster", "NodeProc", "WITNESSES"]

PRODUCER = "node-a"
WITNESSES = ("node-b", "node-c")
ROLES = ("checkpoint", "ack")
BLOCK_AGE_MS = 500  # blocks cut twice a second: acks within about a second at a light load
BLOCK_ENTRIES = 1024  # a block message is chunked (quorum.CHUNK_BYTES): no smaller cap needed
ADMIN = "admin"


class ClusterError(LightnodeError):
    """A full node that would not start or stopped on its own."""


def store_urls(base: str | None, out: Path) -> dict[str, str]:
    """One store per node: SQLite files in ``out``, or schemas of one PostgreSQL database."""
    names = (PRODUCER, *WITNESSES)
    if base is None or base.startswith("sqlite:") or "://" not in base:
        if base is None:
            return {n: "sqlite:///" + str(out / ("ledger.db" if n == PRODUCER else n + ".db"))
                    for n in names}
        path = Path(base[len("sqlite:///"):] if base.startswith("sqlite:///") else base)
        return {n: "sqlite:///" + str(path if n == PRODUCER else path.with_name(
            path.stem + "-" + n + path.suffix)) for n in names}
    parts = urlsplit(base)
    q = dict(parse_qsl(parts.query))
    schema = q.get("schema") or "ln_sim_%d_%s" % (int(time.time()), os.urandom(2).hex())
    out_urls = {}
    for n in names:
        q2 = dict(q, schema=schema if n == PRODUCER else "%s_%s" % (schema, n.replace("-", "_")))
        out_urls[n] = urlunsplit(parts._replace(query=urlencode(q2)))
    return out_urls


class NodeProc:
    """One ``lightnode node`` process, its key file, its log."""

    def __init__(self, name: str, args: list[str], log: Path, stats: Path | None) -> None:
        self.name, self.args, self.log_path, self.stats_path = name, args, log, stats
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        if self.stats_path is not None:
            self.stats_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(b"--- start %d\n" % self.runs)
            log.flush()
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, Any]:
        if self.stats_path is None:
            return {}
        try:
            return dict(json.loads(self.stats_path.read_text()))
        except (OSError, ValueError):
            return {}

    def log(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        return p.returncode


class Cluster:
    """The registry and the three full nodes of one simulated segment."""

    def __init__(self, out: Path, segment: str, store: str | None = None,
                 block_age_ms: int = BLOCK_AGE_MS, block_entries: int = BLOCK_ENTRIES) -> None:
        self.out = Path(out)
        self.segment = segment
        self.stores = store_urls(store, self.out)
        self.block_age_ms = block_age_ms
        self.block_entries = block_entries
        self.registry_path = self.out / "registry.db"
        self.admin_seed = keys.generate_seed()
        self.reg: registry.Registry | None = None
        self.admin: Any = None
        self.node_pub: dict[str, dict[str, bytes]] = {}
        self.nodes: dict[str, NodeProc] = {}

    # -- the registry -------------------------------------------------------------------

    def init_registry(self) -> None:
        from lightnode.nodecli import write_node_keys

        reg = registry.open_registry(str(self.registry_path))
        reg.init_admin(ADMIN, keys.public_key(self.admin_seed), self.admin_seed)
        keys.write_seed(self.out / "admin.seed", self.admin_seed)
        self.admin = reg.as_operator(ADMIN, self.admin_seed)
        for name in (PRODUCER, *WITNESSES):
            path = self.out / ("%s-keys.json" % name)
            path.unlink(missing_ok=True)
            pub = write_node_keys(str(path), name)
            self.node_pub[name] = pub
            for role in ROLES:
                reg.add_node_key(name, role, pub[role], self.admin)
        self.reg = reg

    def add_device(self, device_id: bytes, public_key: bytes, board: str,
                   pointmap_digest: str = "00" * 32) -> None:
        assert self.reg is not None
        self.reg.add_device(device_id, public_key, self.segment, board, "sim-1", pointmap_digest,
                            self.admin)

    def add_operator(self, name: str, role: str = registry.ROLE_OPERATOR,
                     seed: bytes | None = None) -> bytes:
        """A registered operator; its key seed (kept in the run folder, as a console would)."""
        assert self.reg is not None
        seed = seed or keys.generate_seed()
        self.reg.add_operator(name, role, keys.public_key(seed), self.admin)
        keys.write_seed(self.out / ("operator-%s.seed" % name), seed)
        return seed

    def revoke(self, device_id: bytes, reason: str) -> None:
        assert self.reg is not None
        self.reg.revoke_device(device_id, reason, self.admin)

    def node_keys(self) -> dict[bytes, bytes]:
        """What a light node is given: the producer's ack and checkpoint keys by kid."""
        return {registry.key_id(k): k for k in self.node_pub[PRODUCER].values()}

    def witness_keys(self) -> dict[bytes, bytes]:
        return {registry.key_id(self.node_pub[w]["checkpoint"]): self.node_pub[w]["checkpoint"]
                for w in WITNESSES}

    # -- the nodes ------------------------------------------------------------------------

    def _args(self, name: str, broker: str) -> list[str]:
        a = [sys.executable, "-c", "from lightnode.cli import main; main()", "node",
             "--segment", self.segment, "--broker", broker, "--store", self.stores[name],
             "--registry", str(self.registry_path),
             "--key-file", str(self.out / ("%s-keys.json" % name))]
        if name == PRODUCER:
            a += ["--stats-file", str(self.out / "node-stats.json"),
                  "--block-age-ms", str(self.block_age_ms),
                  "--block-entries", str(self.block_entries)]
        else:
            a += ["--witness"]
        return a

    def start(self, broker: str) -> None:
        if self.reg is None:
            raise ClusterError("init_registry first")
        self.broker = broker
        for name in (*WITNESSES, PRODUCER):
            stats = self.out / "node-stats.json" if name == PRODUCER else None
            p = NodeProc(name, self._args(name, broker), self.out / ("%s.log" % name), stats)
            self.nodes[name] = p
            p.start()

    @property
    def producer(self) -> NodeProc:
        return self.nodes[PRODUCER]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """The producer subscribed, and each witness said it is up."""
        deadline = time.monotonic() + timeout
        while True:
            for p in self.nodes.values():
                if not p.alive():
                    raise ClusterError("full node %s exited:\n%s" % (p.name, p.log()))
            up = self.producer.stats().get("subscribed") and all(
                "witness %s:" % w in self.nodes[w].log() for w in WITNESSES)
            if up:
                time.sleep(0.5)  # the witnesses' SUBSCRIBE follows their start line
                return
            if time.monotonic() > deadline:
                raise ClusterError("full nodes not ready within %.0f s:\n%s" % (
                    timeout, "\n".join(p.name + ": " + p.log(800) for p in self.nodes.values())))
            time.sleep(0.05)

    def wipe_producer(self) -> None:
        """Stop the producer, delete its store, start it again on an empty one."""
        p = self.producer
        p.stop()
        url = self.stores[PRODUCER]
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        else:
            _drop_schema(url)
        p.start()

    def stop(self) -> dict[str, int | None]:
        codes = {}
        for name in (PRODUCER, *WITNESSES):  # the producer first: its last block goes out
            p = self.nodes.get(name)
            if p is not None:
                codes[name] = p.stop()
        return codes

    def close(self) -> None:
        self.stop()
        if self.reg is not None:
            self.reg.close()
            self.reg = None


def _drop_schema(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    schema = q.pop("schema", None)
    if not schema:
        return
    base = urlunsplit(parts._replace(query=urlencode(q)))
    with psycopg.connect(base, autocommit=True) as conn, contextlib.suppress(Exception):
        conn.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % schema)
