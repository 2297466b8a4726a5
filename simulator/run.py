"""One simulation run: a scenario's grid, devices and light nodes, three full nodes, the attacks, the record.

``run(opts)`` does, in order:

1. the run's folder (``./lightnode-runs/<scenario>-<UTC time>/`` unless
   ``out`` is given): the registry, the stores (SQLite by default), the
   node logs, ``run.json`` and ``report.html`` all go there;
2. the broker: amqtt embedded in this process on a free loopback port, or
   the one at ``broker`` (``mqtt://host:port``);
3. a fresh registry (an admin, the light nodes' devices, the operators of
   the scenario's consoles, the three full nodes' keys) and the full nodes
   as ``lightnode node`` processes: a producer and two witnesses
   (``lightnode.simulator.cluster``);
4. the grid and its devices (``lightnode.simulator.scenario``), and the
   fleet of light nodes (``lightnode.simulator.fleet``) reading them;
5. the run itself, in real time, with the scenario's comm losses and its
   attacks (``lightnode.simulator.attacks``) at their times, and a progress
   line on the terminal;
6. a drain (every light node waits for the block acks of what it signed),
   the full nodes stopped, and the stores read: the run record (the
   issue-7 schema, ``lightnode.simulator.report``), the expectations
   (``lightnode.simulator.expect``), ``run.json``, the summary and the
   HTML report.

    from lightnode.simulator.run import Options, run
    record = run(Options("substation", duration_s=20))
    record["ok"]
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import socket
import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightnode import keys, registry
from lightnode.errors import LightnodeError
from lightnode.firmware.ln import wire as spec
from lightnode.ledger.store import FLAG_CLOCK_BACK, FLAG_TIME_SKEW, open_store
from lightnode.simulator import attacks as attackmod
from lightnode.simulator import expect
from lightnode.simulator.cluster import PRODUCER, WITNESSES, Cluster
from lightnode.simulator.fleet import Fleet, GridDeviceSource, LightNode, PmuSignalSource, Record

__all__ = ["CI_DURATION_S", "Options", "RunError", "run"]

CI_DURATION_S = 20.0  # the ci profile's length when no --duration is given
DRAIN_S = 20.0  # after the run, at most this long for the last block acks
STALL_S = 6.0  # ... and no longer than this once acks stop coming
SERIES_HZ = 5.0  # the run record's plotted signals, samples per second
FULL_NODE_NAMES = {"producer": PRODUCER, "witness1": WITNESSES[0], "witness2": WITNESSES[1]}


def _PMU_DIGEST() -> str:  # noqa: N802 - a constant, computed once it is needed
    from lightnode.drivers import pointmap
    from lightnode.simulator.devices import MAP_FILES, MAPS

    return str(pointmap.load((MAPS / MAP_FILES["pmu"]).read_bytes()).digest())


class RunError(LightnodeError):
    """A run that could not be set up or carried out (not an expectation that failed)."""


@dataclass
class Options:
    scenario: str = "substation"
    duration_s: float | None = None
    nodes: int | None = None
    firmware: int | str | None = None
    firmware_heap_kb: int | None = None  # None: each firmware board's own heap budget
    broker: str | None = None
    store: str | None = None
    out: str | None = None
    profile: str = "full"
    json: bool = False
    quiet: bool = False
    extra_expect: list[Any] = field(default_factory=list)  # Expectation objects added to the file's


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _device_id(scenario: str, name: str) -> bytes:
    return b"LN" + hashlib.sha256(("%s/%s" % (scenario, name)).encode()).digest()[:6]


def _segment(name: str) -> str:
    s = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:24] or "sim"
    return s


def _digest(device: Any) -> str:
    """The registered point map digest of a device: what the node's analysis knows it by."""
    path = getattr(device, "map_path", None)
    if path is None:
        return "00" * 32
    from lightnode.drivers import pointmap

    return str(pointmap.load(Path(path).read_bytes()).digest())


class Runner:
    """The run's state; also the context the attacks act through."""

    def __init__(self, opts: Options, console: Any) -> None:
        from lightnode.simulator import scenario as scnmod

        self.opts = opts
        self.console = console
        scn = scnmod.load(opts.scenario)
        if opts.profile == "ci" or opts.duration_s:
            scn = scn.shortened(opts.duration_s or min(CI_DURATION_S, scn.duration_s))
        self.scn = scn
        self.segment = _segment(scn.name)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out = Path(opts.out) if opts.out else Path("lightnode-runs") / (
            "%s-%s" % (scn.name, stamp))
        self.out.mkdir(parents=True, exist_ok=True)
        _clear(self.out)
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._timeline: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Future[Any]] = []
        self.t0_wall = time.time()
        self.t0 = time.monotonic()
        self.injectors: list[attackmod.Injector] = []
        self.operators: dict[str, bytes] = {}
        self.devices: dict[str, Any] = {}
        self.grid: Any = None
        self.nodes_by_device: dict[str, Any] = {}  # a LightNode, or a FirmwareNode
        self.op_actions: list[dict[str, Any]] = []
        self._live_flags: dict[tuple[Any, ...], Any] = {}
        self._live_rej: dict[tuple[int, str, str], dict[str, Any]] = {}

    # -- the attacks' context ----------------------------------------------------------

    @property
    def fleet(self) -> Fleet:
        return self._fleet

    def timeline(self, kind: str, source: str, detail: Any) -> None:
        self._timeline.append({"t_s": round(time.time() - self.t0_wall, 3), "kind": kind,
                               "source": source, "detail": detail})

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    def light_node(self, name: str) -> LightNode:
        for n in self._fleet.nodes:
            if n.name == name:
                return n
        if name in self.nodes_by_device:
            return self.nodes_by_device[name]
        raise RunError("no light node or device %r in scenario %s" % (name, self.scn.name))

    def light_node_of_device(self, name: str) -> Any:
        if name in self.nodes_by_device:
            return self.nodes_by_device[name]
        for n in self._fleet.nodes:
            if n.name == name:
                return n
        return None

    def device(self, name: str) -> Any:
        if name in self.devices:
            return self.devices[name]
        node = self.light_node_of_device(name)
        if node is not None and isinstance(node.source, GridDeviceSource):
            return node.source.device
        return None

    def revoke(self, device_id: bytes, reason: str) -> None:
        self.cluster.revoke(device_id, reason)

    async def add_light_node(self, node: LightNode, client_id: str) -> None:
        node.client_id = client_id
        self._fleet.launch(node)

    def operator_seed(self, name: str) -> bytes:
        for d in self.scn.devices:
            if d.kind == "operator" and d.name == name:
                name = str(d.params["operator"])
        if name not in self.operators:
            raise RunError("no operator %r registered" % name)
        return self.operators[name]

    def operator_name(self, console: str) -> str:
        for d in self.scn.devices:
            if d.kind == "operator" and d.name == console:
                return str(d.params["operator"])
        return console

    def operator_action(self, tx: Any, action: str, target: Any, args: Any) -> None:
        self.op_actions.append({"t": time.time(), "action": action, "target": str(target)})

    @property
    def broker_address(self) -> tuple[str, int]:
        return self.broker_host, self.broker_port

    async def wipe_producer(self) -> None:
        await asyncio.to_thread(self.cluster.wipe_producer)
        await asyncio.to_thread(self._wait_producer)

    def _wait_producer(self) -> None:
        deadline = time.monotonic() + 30
        while not self.cluster.producer.stats().get("subscribed"):
            if time.monotonic() > deadline or not self.cluster.producer.alive():
                raise RunError("the producer did not come back:\n" + self.cluster.producer.log())
            time.sleep(0.05)

    # -- setting up ----------------------------------------------------------------------

    def _firmware_plan(self, specs: list[Any]) -> set[str]:
        """The light nodes that run the real firmware: ``--firmware N|all`` or the file's choice.

        The firmware reads a PMU over C37.118 (``firmware/ln/app.py``): only PMU light nodes
        can, and not those an attack acts on through the emulated node's own records
        (spoofed, replayed, tampered, revoked, cloned).
        """
        fw = self.opts.firmware
        chosen = {n.name for n in specs if n.firmware}
        if not fw and not chosen:
            return set()
        busy = {a.target for a in self.scn.attacks
                if a.kind in ("spoofed_device", "replay", "tamper", "revoked_device",
                              "cloned_device")}
        kinds = {d.name: d.kind for d in self.scn.devices}
        able = [n.name for n in specs if kinds.get(n.device) == "pmu" and n.name not in busy]
        bad = chosen - set(able)
        if bad:
            raise RunError("light node(s) %s cannot run the firmware: it reads PMUs over C37.118, "
                           "and an attack on a node needs the emulated node" % ", ".join(sorted(bad)))
        want = len(able) if fw == "all" else int(fw or 0)
        if want > len(able):
            raise RunError(
                "--firmware %s: scenario %s has %d light node(s) that can run the real firmware "
                "(PMU light nodes no attack acts on: %s); the firmware reads a PMU over C37.118 "
                "only" % (fw, self.scn.name, len(able), ", ".join(able) or "none"))
        for name in able:
            if len(chosen) >= want:
                break
            chosen.add(name)
        from lightnode import micropython as mp
        from lightnode.errors import HarnessError

        try:
            mp.find_micropython()
        except HarnessError as e:
            raise RunError("--firmware: %s" % e) from e
        return chosen

    def _make_fleet(self) -> None:
        scn = self.scn
        from lightnode.simulator.devices import make_devices

        self.grid = scn.make_grid()
        self.devices = make_devices(scn, self.grid, int(self.t0_wall * 1e6), self.segment)
        specs = list(scn.light_nodes)
        n_want = self.opts.nodes
        if n_want is not None:
            if n_want < 1:
                raise RunError("--nodes must be at least 1")
            specs = specs[:n_want]
        nodes: list[LightNode] = []
        self.firmware_nodes: list[FirmwareNode] = []
        fw = self._firmware_plan(specs)
        for i, ln in enumerate(specs):
            dev = self.devices.get(ln.device)
            if ln.name in fw:
                fwn = FirmwareNode(ln.name, ln.board, dev, self.out / "boards" / ln.name,
                                   self.opts.firmware_heap_kb)
                self.firmware_nodes.append(fwn)
                self.nodes_by_device.setdefault(ln.device, fwn)
                continue
            source: Any
            if dev is not None and hasattr(dev, "sample"):
                source = GridDeviceSource(dev, int(self.t0_wall * 1e6))
            else:
                source = PmuSignalSource(ln.device, seed=scn.seed * 31 + i,
                                         t0_us=int(self.t0_wall * 1e6))
            trace = [pid for pid, _ in source.trace.values()] if source.trace else []
            node = LightNode(ln.name, _device_id(scn.name, ln.name), keys.generate_seed(), source,
                             board=ln.board, window_s=ln.window_s,
                             phase_s=(i * 0.37) % max(ln.window_s, 1.0), trace_points=trace)
            nodes.append(node)
            self.nodes_by_device.setdefault(ln.device, node)
        extra = (n_want or 0) - len(nodes)
        pmus = [d for d in self.devices.values() if getattr(d, "kind", "") == "pmu"]
        for k in range(extra):  # --nodes beyond the scenario's: more light nodes on its PMUs
            name = "pmu-extra-%d" % (k + 1)
            src: Any = (GridDeviceSource(pmus[k % len(pmus)], int(self.t0_wall * 1e6)) if pmus
                        else PmuSignalSource(name, seed=scn.seed * 7919 + k,
                                             t0_us=int(self.t0_wall * 1e6)))
            nodes.append(LightNode(name, _device_id(scn.name, name), keys.generate_seed(), src,
                                   board="pico_w", phase_s=(k * 0.173) % 5.0))
        self._nodes = nodes

    def _provision(self) -> None:
        c = self.cluster = Cluster(self.out, self.segment, self.opts.store)
        c.init_registry()
        for n in self._nodes:
            dev = getattr(n.source, "device", None)
            c.add_device(n.device_id, keys.public_key(n.seed), n.board,
                         _digest(dev) if dev is not None else _PMU_DIGEST())
        from lightnode.simulator.devices import operator_seed

        for d in self.scn.devices:
            if d.kind == "operator":
                name = str(d.params["operator"])
                seed = operator_seed(self.scn.seed, name)  # the console's key (and the thief's)
                c.add_operator(name, str(d.params.get("role", "operator")), seed)
                self.operators[name] = seed

    # -- the run ---------------------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        self._make_fleet()
        self._provision()
        async with contextlib.AsyncExitStack() as stack:
            if self.opts.broker:
                from urllib.parse import urlsplit

                u = urlsplit(self.opts.broker)
                if u.scheme not in ("mqtt", "tcp") or not u.hostname:
                    raise RunError("--broker %r: mqtt://host:port expected" % self.opts.broker)
                self.broker_host, self.broker_port = u.hostname, u.port or 1883
                self.broker_url = self.opts.broker
            else:
                from lightnode.node.embedded import embedded_broker

                port = await stack.enter_async_context(embedded_broker(_free_port()))
                self.broker_host, self.broker_port = "127.0.0.1", port
                self.broker_url = "mqtt://127.0.0.1:%d" % port
            stack.callback(self.cluster.close)
            for fwn in self.firmware_nodes:
                await asyncio.to_thread(fwn.provision, self.cluster, self.broker_url, self.out)
            self.cluster.start(self.broker_url)
            await asyncio.to_thread(self.cluster.wait_ready)
            fleet = self._fleet = Fleet(self.broker_host, self.broker_port, self.segment,
                                        self.cluster.node_keys(), self.cluster.witness_keys())
            for n in self._nodes:
                fleet.add(n)
            self.injectors = [attackmod.make(a, self) for a in self.scn.attacks]
            for inj in self.injectors:
                await inj.prepare()
            await fleet.connect()
            self.t0_wall, self.t0 = time.time(), time.monotonic()
            for n in self._nodes:
                if isinstance(n.source, GridDeviceSource | PmuSignalSource):
                    n.source.t0_us = int(self.t0_wall * 1e6)
            for d in self.devices.values():  # the devices' clocks start with the run
                d.t0_us = int(self.t0_wall * 1e6)
            for fwn in self.firmware_nodes:  # its PMU served over C37.118, the board started
                ep = stack.enter_context(fwn.device.serve(clock=lambda: time.monotonic() - self.t0))
                fwn.start(ep, self.scn.duration_s)
                stack.callback(fwn.kill)
            await fleet.start(self.t0)
            self.spawn(self._watch_producer())
            await self._schedule_and_wait()
            await self._drain()
            for fwn in self.firmware_nodes:  # each board drains its own acks, then stops
                await asyncio.to_thread(fwn.wait)
            self.wall_s = time.time() - self.t0_wall
            for inj in self.injectors:
                with contextlib.suppress(Exception):
                    await inj.close()
            for t in self._tasks:
                t.cancel()
            await asyncio.to_thread(self.cluster.stop)
            self._poll_producer()
        return self._record()

    async def _schedule_and_wait(self) -> None:
        scn = self.scn
        todo: list[tuple[float, str, Any]] = []
        for e in scn.events:
            if e.kind == "comm_loss":
                todo.append((e.at_s, "comm_loss", e))
        for inj in self.injectors:
            todo.append((inj.at_s, "attack", inj))
        todo.sort(key=lambda x: x[0])
        progress = _progress(self.console, self.opts.quiet or self.opts.json)
        task = progress.add_task("simulating", total=scn.duration_s, committed=0, refused=0,
                                 attacks="0/%d" % len(self.injectors))
        firing: list[asyncio.Future[Any]] = []
        consoles = [d for d in self.devices.values() if hasattr(d, "actions")]
        console_link = None
        if consoles:
            from lightnode.node.mqtt import Transport

            console_link = Transport(self.broker_host, self.broker_port, "console-%s" % self.segment)
            self.spawn(console_link.run())
        t_prev = 0.0
        with progress:
            end = self.t0 + scn.duration_s
            while True:
                now = time.monotonic()
                t = now - self.t0
                while todo and todo[0][0] <= t:
                    _, what, obj = todo.pop(0)
                    if what == "comm_loss":
                        self._comm_loss(obj)
                    else:
                        obj.fired_at = time.time()
                        firing.append(asyncio.ensure_future(obj.fire()))
                for c in consoles:  # the operators' own actions (a stolen key's are the attack's)
                    for ev in c.actions(t_prev, t):
                        if "attack" not in ev.params and console_link is not None:
                            data = c.sign(ev)
                            console_link.publish(spec.TOPIC_TX % (self.segment, registry.operator_id(
                                c.operator).hex()), data)
                            self.timeline("operator_action", c.name, "%s %s" % (
                                ev.params.get("action"), ev.params.get("breaker", "")))
                t_prev = t
                st = self.cluster.producer.stats()
                progress.update(task, completed=min(t, scn.duration_s),
                                committed=st.get("added", 0),
                                refused=sum(st.get("refused", {}).values()),
                                attacks="%d/%d" % (sum(1 for i in self.injectors if i.fired_at),
                                                   len(self.injectors)))
                if now >= end:
                    break
                await asyncio.sleep(min(0.25, max(0.0, end - now)))
            if firing:
                done = await asyncio.gather(*firing, return_exceptions=True)
                for inj, r in zip([i for i in self.injectors if i.fired_at], done, strict=False):
                    if isinstance(r, BaseException):
                        inj.note = "injection failed: %r" % (r,)
        for g in getattr(self.grid, "log", []):  # what the grid did, as it happened
            self._timeline.append({"t_s": round(float(g.t_s), 3), "kind": str(g.kind),
                                   "source": str(g.source), "detail": str(g.detail)})

    def _comm_loss(self, e: Any) -> None:
        names = list(e.params.get("nodes") or [])
        secs = float(e.params.get("duration_s", 10.0))
        for name in names:
            with contextlib.suppress(RunError):
                self.light_node(name).pause(secs)
        self.timeline("comm_loss", "grid", "uplink of %s lost for %.0f s" % (", ".join(names), secs))

    async def _drain(self) -> None:
        fleet = self._fleet
        fleet._stop.set()
        await asyncio.gather(*fleet._tasks, return_exceptions=True)
        deadline = time.monotonic() + DRAIN_S
        last, last_change = -1, time.monotonic()
        for n in fleet.nodes:
            n.resend_s = 3.0  # the run is over: what is still unacknowledged goes again soon
        while time.monotonic() < deadline:
            legit = sum(1 for n in fleet.nodes for r in n.pending.values() if r.legit)
            if legit == 0:
                break
            if legit != last:
                last, last_change = legit, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                break  # nothing acked for a while (a wiped producer's blocks are not final)
            for n in fleet.nodes:
                n.watch()
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # the node's last cut
        await asyncio.gather(*(n.disconnect() for n in fleet.nodes), return_exceptions=True)

    # -- the record ------------------------------------------------------------------------

    # -- watching the producer while it runs ----------------------------------------------

    def _poll_producer(self) -> None:
        """Read the producer's flags and rejection counts now (a wiped store loses them: we keep them)."""
        try:
            store = open_store(self.cluster.stores[PRODUCER])
        except Exception:  # between a wipe and the restart: nothing to read
            return
        try:
            run = self.cluster.producer.runs
            for f in store.flags():
                self._live_flags[(f.kind, f.chain, f.time, f.device, f.detail)] = f
            for r in store.rejections():
                key = (run, r["source"], r["reason"])
                held = self._live_rej.get(key)
                if held is None or r["count"] >= held["count"]:
                    self._live_rej[key] = dict(r)
        except Exception:  # a store half made by a restarting node: read it next time
            pass
        finally:
            store.close()

    async def _watch_producer(self) -> None:
        while True:
            await asyncio.to_thread(self._poll_producer)
            await asyncio.sleep(1.0)

    def _merge_flags(self, final: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        seen = {(f.kind, f.chain, f.time, f.device, f.detail) for _, f in final}
        return final + [(PRODUCER, f) for k, f in self._live_flags.items() if k not in seen]

    def _merge_rejections(self, final: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Counts per (source, reason) over every life of the producer (a wipe starts them again)."""
        run = self.cluster.producer.runs
        rows = {(run, r["source"], r["reason"]): dict(r) for r in final}
        for key, r in self._live_rej.items():
            if key not in rows or rows[key]["count"] < r["count"]:
                rows[key] = r
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for (_run, source, reason), r in rows.items():
            held = out.get((source, reason))
            if held is None:
                out[(source, reason)] = dict(r)
            else:
                held["count"] += r["count"]
                held["first"] = min(held["first"], r["first"])
                held["last"] = max(held["last"], r["last"])
        return list(out.values())

    def _read_stores(self) -> dict[str, Any]:
        chain = "seg:" + self.segment
        out: dict[str, Any] = {"entries": {}, "flags": [], "rejections": [], "received": []}
        wiped = any(i.kind == "wipe_node" for i in self.injectors)
        names = (PRODUCER, *WITNESSES) if wiped else (PRODUCER,)
        for name in (PRODUCER, *WITNESSES):
            try:
                store = open_store(self.cluster.stores[name])
            except Exception as e:  # a store that is not there says so in the record
                out.setdefault("errors", []).append("%s: %s" % (name, e))
                continue
            try:
                if name in names:
                    for ent in store.entries(chain=chain):
                        if ent.device is None:
                            continue
                        key = (ent.device, ent.seq)
                        if key not in out["entries"]:
                            out["entries"][key] = ent
                            if name == PRODUCER and ent.received:
                                out["received"].append(ent.received)
                if name == PRODUCER:
                    out["rejections"] = store.rejections()
                for f in store.flags():
                    out["flags"].append((name, f))
            finally:
                store.close()
        return out

    def _record(self) -> dict[str, Any]:
        st = self._read_stores()
        entries: dict[tuple[bytes, int], Any] = st["entries"]
        self._entries = entries
        for inj in self.injectors:
            collect = getattr(inj, "collect", None)
            if collect is not None:
                collect()
        nodes = []
        latencies: list[float] = []
        total_tx = total_readings = total_committed = total_lost = 0
        lost_detail: list[str] = []
        for n in self._fleet.nodes:
            legit = [r for r in n.records.values() if r.legit]
            if n.legit_until == 0.0:  # a clone: all of it is the attack's
                continue
            committed = [r for r in legit if _committed(entries, n.device_id, r)]
            lost = [r for r in legit if not _committed(entries, n.device_id, r)]
            s = n.summary()
            nodes.append({
                "name": n.name, "device_id": n.hex, "device_kind": s["device_kind"],
                "board": n.board, "firmware": False, "tx_signed": len(legit),
                "tx_committed": len(committed), "readings": sum(r.readings for r in legit),
                "lost": len(lost), "acked": s["tx_acked"], "pending": s["pending"],
                "resent": s["resent"], "nacks": s["nacks"], "foreign_nacks": s["foreign_nacks"],
                "reconnects": max(0, s["reconnects"] - 1), "set_aside": s["set_aside"],
            })
            for r in lost[:5]:
                lost_detail.append("%s seq %d (%s)" % (n.name, r.seq, r.refused or "not committed"))
            total_tx += len(legit)
            total_readings += sum(r.readings for r in committed)
            total_committed += len(committed)
            total_lost += len(lost)
            latencies += [(r.acked_at - r.signed_at) * 1000 for r in legit
                          if r.acked_at is not None]
        for fwn in self.firmware_nodes:
            row = fwn.summary(entries)
            nodes.append(row)
            total_tx += row["tx_signed"]
            total_committed += row["tx_committed"]
            total_readings += row["readings"]
            total_lost += row["lost"]
            if row["lost"]:
                lost_detail.append("%s (firmware): %d not committed" % (fwn.name, row["lost"]))
        flags = self._merge_flags(st["flags"])
        rejections = self._merge_rejections(st["rejections"])
        detections = [{"t_s": round(f.time / 1e6 - self.t0_wall, 3), "kind": f.kind,
                       "device": self._device_name(f.device), "detail": f.detail or node_name}
                      for node_name, f in flags]
        attacks = [expect.evaluate_attack(inj, rejections, flags, self) for inj in self.injectors]
        received = sorted(st["received"])
        ingest_t, ingest_r = _per_second(received, self.t0_wall, self.wall_s)
        entry_flags = sum(1 for e in entries.values() if e.flags & (FLAG_TIME_SKEW | FLAG_CLOCK_BACK))
        record: dict[str, Any] = {
            "scenario": {"name": self.scn.name, "title": self.scn.title,
                         "description": self.scn.description, "duration_s": self.scn.duration_s,
                         "seed": self.scn.seed, "profile": self.opts.profile},
            "started_at": self.started_at,
            "wall_s": round(self.wall_s, 2),
            "store": self.cluster.stores[PRODUCER],
            "broker": self.broker_url + ("" if self.opts.broker else " (embedded)"),
            "out": str(self.out),
            "light_nodes": nodes,
            "series": self._series(),
            "ingest": {"t_s": ingest_t, "tx_per_s": ingest_r},
            "timeline": sorted(self._timeline + self._device_events(), key=lambda x: x["t_s"]),
            "attacks": attacks,
            "detections": detections,
            "expectations": [],
            "totals": {"transactions": total_tx, "readings": total_readings,
                       "committed": total_committed,
                       "rejected": sum(int(r["count"]) for r in rejections),
                       "flags": len(flags), "lost": total_lost},
            "latency_ms": _latency(latencies),
            "ingest_tx_per_s": round(len(received) / max(self.wall_s, 1e-9), 2),
            "nodes": {name: {"store": self.cluster.stores[name]} for name in self.cluster.stores},
            "time_entry_flags": entry_flags,
            "lost_detail": lost_detail,
        }
        record["expectations"] = expect.check(self.scn, record, self, list(self.opts.extra_expect))
        record["ok"] = all(e["met"] for e in record["expectations"])
        return record

    def _device_name(self, device: bytes | None) -> str:
        if device is None:
            return ""
        for n in [*self._fleet.nodes, *self.firmware_nodes]:
            if n.device_id == device:
                return n.name
        for name in self.operators:
            if registry.operator_id(name) == device:
                return "operator:" + name
        return device.hex()

    def _device_events(self) -> list[dict[str, Any]]:
        out = []
        for n in self._fleet.nodes:
            for t_s, etype, point, value in n.events:
                out.append({"t_s": round(t_s, 3), "kind": "device-event", "source": n.name,
                            "detail": "type %d point %d value %d" % (etype, point, value)})
        return out

    def _series(self) -> dict[str, Any]:
        dur = max(self.wall_s, self.scn.duration_s)
        grid = [round(k / SERIES_HZ, 3) for k in range(int(dur * SERIES_HZ) + 1)]
        freq: dict[str, list[float | None]] = {}
        ang: dict[str, list[float | None]] = {}
        for n in self._fleet.nodes:
            tr = getattr(n.source, "trace", None)
            if not n.trace or not tr or n.legit_until == 0.0:
                continue
            for quantity, target in (("frequency", freq), ("angle", ang)):
                if quantity not in tr:
                    continue
                pid, res = tr[quantity]
                col: list[float | None] = [None] * len(grid)
                for t_s, values in n.trace:
                    k = int(round(t_s * SERIES_HZ))
                    if 0 <= k < len(col) and pid in values:
                        col[k] = round(values[pid] * res, 5)
                target[n.name] = col
        return {"t_s": grid, "frequency_hz": freq, "angle_deg": ang}


class FirmwareNode:
    """A light node running the real firmware in the MicroPython unix port, on a served PMU.

    Its board is a unix-port directory in the run's folder, made and
    provisioned as a utility would (``lightnode.provision``: the board makes
    its key, the device is registered with its point map, its config names
    the broker and the node keys); ``lightnode firmware run`` runs it at its
    board's heap budget for the scenario's length, reading the PMU the grid
    drives over C37.118, and prints its counters at the end.
    """

    def __init__(self, name: str, board: str, device: Any, root: Path,
                 heap_kb: int | None = None) -> None:
        self.name, self.board, self.device, self.root = name, board, device, root
        self.heap_kb = heap_kb
        self.device_id = b""
        self.proc: Any = None
        self.stats: dict[str, Any] = {}
        self.output = ""

    @property
    def hex(self) -> str:
        return self.device_id.hex()

    def provision(self, cluster: Cluster, broker_url: str, out: Path) -> None:
        from lightnode import provision

        if self.root.exists():
            import shutil

            shutil.rmtree(self.root)
        ident = provision.init_unix_board(self.root, self.board)
        assert cluster.reg is not None
        # the shipped map with this PMU's IDCODE: the firmware asks the PMU for its stream by it
        pm = json.loads(Path(self.device.map_path).read_text())
        pm["source"]["idcode"] = int(self.device.params["idcode"])
        map_path = self.root.parent / ("%s-pointmap.json" % self.name)
        map_path.write_text(json.dumps(pm, indent=1))
        provision.provision(str(self.root), cluster.reg, cluster.admin, cluster.segment,
                            map_path, broker_url, out / "device-passwords")
        self.device_id = ident.device_id

    def start(self, ep: Any, seconds: float) -> None:
        import subprocess
        import sys

        app = self.root / "lightnode" / "app.json"
        app.write_text(json.dumps({"source": {"host": ep.host, "port": ep.port},
                                   "heartbeat_every": 2}))
        self.log = open(self.root.parent / ("%s.log" % self.name), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from lightnode.cli import main; main()", "firmware", "run",
             "--board", "unix", str(self.root), "--seconds", "%g" % seconds, "--json"]
            + (["--heap", str(self.heap_kb)] if self.heap_kb else []),
            stdout=subprocess.PIPE, stderr=self.log)

    def wait(self, timeout: float = 120.0) -> None:
        if self.proc is None:
            return
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except Exception:  # a board that does not stop is stopped; its counters are lost
            self.kill()
            return
        self.output = out.decode(errors="replace")
        lines = [ln for ln in self.output.splitlines() if ln.startswith("{")]
        if lines:
            with contextlib.suppress(ValueError):
                self.stats = json.loads(lines[-1])
        self.log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def summary(self, entries: dict[tuple[bytes, int], Any]) -> dict[str, Any]:
        st = self.stats
        first, last = st.get("first_seq"), st.get("last_seq")
        signed = int(st.get("appended", 0))
        mine = [e for (d, _), e in entries.items() if d == self.device_id]
        committed = sum(1 for e in mine if first is not None and first <= e.seq <= last)
        readings = 0
        for e in mine:
            if e.kind == spec.KIND_READINGS:
                from lightnode import wire

                with contextlib.suppress(Exception):
                    readings += sum(len(s.times) * len(s.points)
                                    for s in wire.decode(e.data).readings())
        return {"name": self.name, "device_id": self.device_id.hex(), "device_kind": "pmu",
                "board": self.board, "firmware": True, "tx_signed": signed,
                "tx_committed": committed, "readings": readings,
                "lost": max(0, signed - committed) if st else 1,
                "acked": int(st.get("freed", 0)), "pending": int(st.get("pending", 0)),
                "bad_acks": int(st.get("bad_acks", 0)), "nacks": int(st.get("nacks", 0)),
                **({} if st else {"note": "the board printed no counters: see its log"})}


def _clear(out: Path) -> None:
    """A folder used before: what a run writes there goes (a run's folder is that run's alone)."""
    for pattern in ("registry.db*", "ledger.db*", "node-*.db*", "node-*-keys.json", "node-*.log",
                    "node-stats.json", "*.seed", "run.json", "report.html", "device-passwords",
                    "boards/*.log", "boards/*-pointmap.json"):
        for p in out.glob(pattern):
            p.unlink()


def _committed(entries: dict[tuple[bytes, int], Any], device: bytes, r: Record) -> bool:
    e = entries.get((device, r.seq))
    return e is not None and e.tx_id == r.tx_id


def _latency(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"p50": None, "p99": None, "max": None}
    xs = sorted(ms)

    def pct(p: float) -> float:
        return round(xs[min(len(xs) - 1, int(math.ceil(p * len(xs))) - 1)], 1)

    return {"p50": pct(0.5), "p99": pct(0.99), "max": round(xs[-1], 1)}


def _per_second(received_us: list[int], t0: float, wall_s: float) -> tuple[list[float], list[float]]:
    counts: dict[int, int] = defaultdict(int)
    for us in received_us:
        k = int(us / 1e6 - t0)
        if k >= 0:
            counts[k] += 1
    n = int(math.ceil(wall_s)) + 1
    return [float(k) for k in range(n)], [float(counts.get(k, 0)) for k in range(n)]


def _progress(console: Any, quiet: bool) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
        TextColumn("committed [green]{task.fields[committed]}[/]"),
        TextColumn("refused [yellow]{task.fields[refused]}[/]"),
        TextColumn("attacks injected {task.fields[attacks]}"),
        console=console, transient=True, disable=quiet)


def run(opts: Options, console: Any = None) -> dict[str, Any]:
    """Carry out one run; the run record (also written as ``run.json`` in the run's folder)."""
    from rich.console import Console

    console = console or Console(stderr=opts.json)
    runner = Runner(opts, console)
    try:
        record = asyncio.run(runner.main())
    except KeyboardInterrupt:
        raise
    path = runner.out / "run.json"
    path.write_text(json.dumps(record, indent=1, default=str))
    return record
