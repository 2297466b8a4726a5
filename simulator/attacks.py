"""The attacks a scenario injects, each one counted, so the run can say what the full node made of it.

Every injector knows what it sent (``injected``: the attack's transactions
or actions, with their ids) and where its detection must show
(``where``: the (source, reason) rows of the store's rejections, or the
flag kinds it must raise). ``lightnode.simulator.expect`` reads the stores
after the run and checks.

| kind | what it does | the node must |
|---|---|---|
| ``spoofed_device`` | signs with a made-up key under a registered device's id | refuse: ``bad-signature`` |
| ``replay`` | sends captured transactions again: on their own topic, and on another device's | take no second entry (duplicate); refuse ``topic-mismatch`` |
| ``tamper`` | an MQTT-aware proxy between light nodes and the broker changes a reading in PUBLISH payloads (and redoes the payload hash) | refuse: ``bad-signature``; the device sends its copy again |
| ``revoked_device`` | revokes a device in the registry mid-run; its light node keeps sending | refuse: ``revoked-device`` |
| ``cloned_device`` | a second light node with the same key and an older journal | refuse: ``fork``, and a fork flag with both copies |
| ``gps_drift``, ``gps_step`` | the PMU's clock error (``set_clock_error``), into timestamps and angles | flag ``angle-drift`` / ``time-step`` |
| ``flood`` | made-up devices publishing at a rate | refuse: ``unknown-device`` (source ``stranger``) |
| ``stolen_credential`` | a registered operator's key used at an odd hour to open breakers | flag ``operator-odd-hour`` |
| ``wipe_node`` | stops the producer, deletes its store, starts it again | the witnesses' fork/consistency alarms |

    inj = make(attack_spec, ctx)   # an Injector
    await inj.prepare()            # before the clock starts (captures, proxies)
    await inj.fire()               # at its time
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lightnode import keys, registry, wire
from lightnode.errors import WireError
from lightnode.firmware.ln import ack as spec_ack
from lightnode.firmware.ln import wire as spec
from lightnode.node.ingest import STRANGER
from lightnode.node.mqtt import Transport

__all__ = ["Injector", "KINDS", "TamperProxy", "make"]

FLOOD_MAX_PER_S = 1000.0  # what one attacker process signs and sends beside the fleet
GRACE_S = 2.0
CAPTURE_WAIT_S = 15.0  # a replay waits this long at most for a transaction of its target  # a revocation reaches the node within its registry catch-up (1 s) and a tick


@dataclass
class Injected:
    """One thing the attack put on the wire: a transaction (or an operator action)."""

    at: float  # time.time()
    device: bytes
    seq: int | None
    tx_id: bytes | None
    data: bytes | None = None


@dataclass
class Injector:
    """What every attack has: its scenario entry, what it sent, where its detection must show."""

    name: str
    kind: str
    at_s: float
    target: str
    params: dict[str, Any]
    ctx: Any
    injected: list[Injected] = field(default_factory=list)
    fired_at: float | None = None  # time.time()
    # (source, reasons) rows of the store's rejections that count as this attack's
    sources: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    flag_kinds: frozenset[str] = frozenset()
    flag_device: str | None = None
    absorbed: int = 0  # sent again and taken once (a replay on its own topic)
    note: str = ""
    # each transaction must be refused or flagged (else: the attack as a whole, by its flags)
    per_tx: ClassVar[bool] = True

    async def prepare(self) -> None:
        pass

    async def fire(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    def timeline(self, detail: str) -> None:
        self.ctx.timeline(self.kind, "attack:" + self.name, detail)


def _attacker(ctx: Any, name: str) -> Transport:
    host, port = ctx.broker_address
    t = Transport(host, port, "attacker-%s-%s" % (name, os.urandom(3).hex()), clean_session=True)
    ctx.spawn(t.run())
    return t


async def _up(t: Transport, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not t.connected:
        if time.monotonic() > deadline:
            raise TimeoutError("the attacker's link to the broker did not come up")
        await asyncio.sleep(0.02)


class SpoofedDevice(Injector):
    async def fire(self) -> None:
        node = self.ctx.light_node(self.target)
        count = int(self.params.get("count", 5))
        interval = float(self.params.get("interval_s", 0.5))
        fake = keys.generate_seed()  # made up: the registry holds another key for this id
        signer = wire.Signer(fake, node.device_id, self.ctx.segment)
        t = _attacker(self.ctx, self.name)
        await _up(t)
        self.sources = [(node.hex, frozenset({spec.R_SIGNATURE}))]
        topic = spec.TOPIC_TX % (self.ctx.segment, node.hex)
        prev = node.prev
        self.timeline("%d transactions signed with a made-up key as %s" % (count, node.name))
        for i in range(count):
            seq = node.seq + 2 + i
            data, tx_id = signer.make(seq, prev, (time.time_ns() // 1000, spec.TQ_NTP, 1500),
                                      spec.KIND_HEARTBEAT, _heartbeat("spoofed"))
            t.publish(topic, data)
            self.injected.append(Injected(time.time(), node.device_id, seq, tx_id, data))
            await asyncio.sleep(interval)
        await _drain(t)


class Replay(Injector):
    """Captured on the broker (an attacker subscribed to every tx topic), sent again later."""

    async def prepare(self) -> None:
        self.captured: list[tuple[str, bytes]] = []
        self.t = _attacker(self.ctx, self.name)
        self.t.subscribe(spec.TOPIC_TX % (self.ctx.segment, "+"), self._capture, qos=0)
        await _up(self.t)

    def _capture(self, topic: str, payload: bytes) -> None:
        if len(self.captured) < 1000:
            self.captured.append((topic, bytes(payload)))

    async def fire(self) -> None:
        count = int(self.params.get("count", 5))
        target = self.ctx.light_node(self.target) if self.target else None

        def mine() -> list[tuple[str, bytes]]:
            return [(tp, d) for tp, d in self.captured
                    if target is None or tp.endswith("/%s/tx" % target.hex)]

        deadline = time.monotonic() + CAPTURE_WAIT_S
        while not mine() and time.monotonic() < deadline:  # the attacker waits for traffic
            await asyncio.sleep(0.1)
        mine_now = mine()
        if not mine_now:
            self.note = "nothing captured to replay"
            return
        picks = mine_now[:count]
        others = [n for n in self.ctx.fleet.nodes if target is None or n.hex != target.hex]
        self.timeline("%d captured transactions sent again on their topic, %d on another device's"
                      % (len(picks), len(picks) if others else 0))
        self.own: list[Injected] = []
        for topic, data in picks:
            tx = wire.decode(data)
            self.t.publish(topic, data)
            inj = Injected(time.time(), tx.device_id, tx.seq, tx.id, data)
            self.injected.append(inj)
            self.own.append(inj)
        if others:
            other = others[0]
            topic = spec.TOPIC_TX % (self.ctx.segment, other.hex)
            for _, data in picks:
                tx = wire.decode(data)
                self.t.publish(topic, data)
                self.injected.append(Injected(time.time(), other.device_id, tx.seq, tx.id, data))
            self.sources = [(other.hex, frozenset({spec_ack.NR_TOPIC}))]
        await _drain(self.t)

    async def close(self) -> None:
        self.t.close()


class RevokedDevice(Injector):
    async def fire(self) -> None:
        node = self.ctx.light_node(self.target)
        self.ctx.revoke(node.device_id, str(self.params.get("reason", "reported stolen")))
        now = time.time()
        node.legit_until = now
        self.grace_until = now + GRACE_S
        self.node = node
        self.sources = [(node.hex, frozenset({spec_ack.NR_REVOKED_DEVICE}))]
        self.timeline("%s revoked in the registry; its light node keeps sending" % node.name)

    def collect(self) -> None:
        """Its records signed after the revocation reached the node are the attack's."""
        self.injected = [Injected(r.signed_at, self.node.device_id, r.seq, r.tx_id)
                         for r in self.node.records.values() if r.signed_at >= self.grace_until]


class ClonedDevice(Injector):
    async def fire(self) -> None:
        from lightnode.simulator.fleet import LightNode

        node = self.ctx.light_node(self.target)
        lag = int(self.params.get("lag", 3))  # windows: the copied journal is that old
        first = max(0, node.seq - lag)
        prev = node.records[first - 1].tx_id if first else bytes(32)
        clone = LightNode(node.name + "-clone", node.device_id, node.seed, node.source,
                          board=node.board, window_s=node.window_s, first_seq=first, prev=prev,
                          phase_s=node.window_s / 2)
        clone.legit_until = 0.0  # nothing it signs is legitimate
        clone.client_suffix = "-clone"
        self.clone = clone
        self.node = node
        await self.ctx.add_light_node(clone, client_id="ln-%s-clone" % node.hex)
        self.sources = [(node.hex, frozenset({spec_ack.NR_FORK}))]
        self.flag_kinds = frozenset({"fork"})
        self.flag_device = node.hex
        self.timeline("%s's key copied to a second board (journal %d windows old)"
                      % (node.name, lag))

    def collect(self) -> None:
        self.injected = [Injected(r.signed_at, self.node.device_id, r.seq, r.tx_id)
                         for r in self.clone.records.values()]


class GpsSpoof(Injector):
    """The PMU's own clock: a slow drift (us per s) or a step (ms), into timestamps and angles."""

    per_tx = False

    async def fire(self) -> None:
        dev = self.ctx.device(self.target)
        if dev is None or not hasattr(dev, "set_clock_error"):
            self.note = "device %s has no clock to spoof" % self.target
            return
        if self.kind == "gps_drift":
            us_per_s = float(self.params.get("us_per_s", 50.0))
            dev.set_clock_error(0, us_per_s)
            self.flag_kinds = frozenset({"angle-drift"})
            self.timeline("GPS spoofing: the clock of %s drifts %g us/s" % (self.target, us_per_s))
        else:
            ms = float(self.params.get("ms", 1.0))
            dev.set_clock_error(int(ms * 1000), 0.0)
            self.flag_kinds = frozenset({"time-step", "angle-drift"})
            self.timeline("GPS spoofing: the clock of %s steps %g ms" % (self.target, ms))
        node = self.ctx.light_node_of_device(self.target)
        self.flag_device = node.hex if node is not None else None
        self.injected.append(Injected(time.time(), node.device_id if node else b"", None, None))


class Flood(Injector):
    async def fire(self) -> None:
        n_dev = int(self.params.get("devices", 50))
        # transactions per second of each device; all together at most FLOOD_MAX_PER_S
        rate = min(FLOOD_MAX_PER_S, n_dev * float(self.params.get("rate", 1.0)))
        duration = float(self.params.get("duration_s", 5.0))
        seg = self.ctx.segment
        signers = [wire.Signer(keys.generate_seed(), b"XX" + os.urandom(6), seg)
                   for _ in range(n_dev)]
        t = _attacker(self.ctx, self.name)
        await _up(t)
        self.sources = [(STRANGER, frozenset({spec_ack.NR_UNKNOWN_DEVICE}))]
        self.timeline("%d unregistered devices publish %g tx/s in all for %g s"
                      % (n_dev, rate, duration))
        end = time.monotonic() + duration
        k = 0
        start = time.monotonic()
        while time.monotonic() < end:
            due = int((time.monotonic() - start) * rate) + 1
            while k < due:  # in bursts, on time, whatever the event loop's granularity
                s = signers[k % n_dev]
                data, tx_id = s.make(k // n_dev, bytes(32),
                                     (time.time_ns() // 1000, spec.TQ_NTP, 0),
                                     spec.KIND_HEARTBEAT, _heartbeat("flood"))
                t.publish(spec.TOPIC_TX % (seg, s.device_id.hex()), data)
                self.injected.append(Injected(time.time(), s.device_id, k // n_dev, tx_id))
                k += 1
            await asyncio.sleep(0.01)
        await _drain(t)
        t.close()


class StolenCredential(Injector):
    """An operator's key, stolen, used at an odd hour: breaker-open commands on the operator path."""

    per_tx = False

    async def fire(self) -> None:
        op = self.ctx.operator_name(self.target) if self.target else str(self.params["operator"])
        hour = int(self.params.get("hour", 3))
        seed = self.ctx.operator_seed(op)
        self.flag_device = registry.operator_id(op).hex()
        breakers = self.params.get("breakers") or [self.target or "breaker-1"]
        day = time.time_ns() // 1000 // 86_400_000_000 * 86_400_000_000
        t_us = day + hour * 3_600_000_000 + 7 * 60_000_000  # hh:07 UTC
        t = _attacker(self.ctx, self.name)
        await _up(t)
        topic = spec.TOPIC_TX % (self.ctx.segment, registry.operator_id(op).hex())
        self.flag_kinds = frozenset({"operator-odd-hour"})
        self.timeline("operator %s's credential used at %02d:07 to open %s"
                      % (op, hour, ", ".join(map(str, breakers))))
        prev = bytes(32)
        seq = int(self.params.get("first_seq", 1000))
        every = float(self.params.get("every_s", 5.0))
        actions: list[tuple[str, str, dict[str, Any]]] = [(registry.ACT_LOGIN, "console", {})]
        actions += [(registry.ACT_CONTROL, str(b), {"open": True}) for b in breakers]
        for i, (action, target, args) in enumerate(actions):
            if i > 1:  # one breaker every ``every_s``, as the grid opens them
                await asyncio.sleep(every)
            data = registry.operator_action(seed, op, self.ctx.segment, seq + i, prev,
                                            t_us + i * 1_000_000, action, target, args)
            tx = wire.decode(data)
            prev = tx.id
            t.publish(topic, data)
            self.ctx.operator_action(tx, action, target, args)
            self.injected.append(Injected(time.time(), tx.device_id, tx.seq, tx.id, data))
        await _drain(t)
        t.close()


class WipeNode(Injector):
    per_tx = False

    async def fire(self) -> None:
        self.timeline("the producing full node stopped, its store deleted, started again")
        await self.ctx.wipe_producer()
        self.flag_kinds = frozenset({"checkpoint-fork", "inconsistent-checkpoint"})
        self.injected.append(Injected(time.time(), b"", None, None))


class Tamper(Injector):
    """Changes a reading in PUBLISH payloads to the broker, through ``TamperProxy``."""

    async def prepare(self) -> None:
        host, port = self.ctx.broker_address
        self.proxy = TamperProxy((host, port))
        self.proxy.start()
        names = self.params.get("nodes") or ([self.target] if self.target else [])
        self.nodes = [self.ctx.light_node(n) for n in names] or self.ctx.fleet.nodes[:1]
        for n in self.nodes:
            n.via = self.proxy.address  # the runner connects them through the proxy

    async def fire(self) -> None:
        count = int(self.params.get("count", 5))
        self.sources = [(n.hex, frozenset(spec.REASONS)) for n in self.nodes]
        self.timeline("payloads of %d transactions tampered with on the way to the broker" % count)
        self.proxy.arm(count, lambda topic, data: self.injected.append(_injected(data)))

    async def close(self) -> None:
        self.proxy.stop()


def _injected(data: bytes) -> Injected:
    # the envelope is untouched, so the id is the device's own record's
    try:
        tx = wire.decode(data)
        return Injected(time.time(), tx.device_id, tx.seq, tx.id, data)
    except Exception:
        return Injected(time.time(), b"", None, hashlib.sha256(data).digest(), data)


def _heartbeat(firmware: str) -> dict[int, Any]:
    return {spec.HB_FIRMWARE: firmware, spec.HB_FREE_HEAP: 50_000, spec.HB_JOURNAL: 0,
            spec.HB_LINK: spec.LINK_UP, spec.HB_TIME_QUALITY: spec.TQ_NTP, spec.HB_RESET_CAUSE: 0}


async def _drain(t: Transport, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while t.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


# -- an MQTT-aware tampering proxy ------------------------------------------------------


class TamperProxy:
    """A loopback proxy that forwards MQTT both ways and, when armed, spoils PUBLISH payloads.

    Client-to-broker bytes are cut into MQTT packets (fixed header, remaining
    length); the next ``count`` PUBLISH packets on a ``/tx`` topic after
    ``arm`` get a reading changed inside the signed payload (its last integer
    plus one, re-encoded canonically), and the payload hash in the envelope made to match, as an attacker
    who knows the format would: only the signature can tell. A transaction
    it has spoiled once is let through when the device sends it again.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        if upstream[0] not in ("127.0.0.1", "localhost"):
            raise ValueError("loopback only")
        self.upstream = upstream
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.address = self._srv.getsockname()[:2]
        self._armed = 0
        self._on: Callable[[str, bytes], None] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._seen: set[bytes] = set()
        self.tampered = 0

    def start(self) -> None:
        threading.Thread(target=self._accept, name="tamper-proxy", daemon=True).start()

    def arm(self, count: int, on: Callable[[str, bytes], None]) -> None:
        with self._lock:
            self._armed, self._on = count, on

    def stop(self) -> None:
        self._stop.set()
        for s in [self._srv, *self._socks]:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            self._socks += [c, u]
            threading.Thread(target=self._pump_up, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pump_up(self, c: socket.socket, u: socket.socket) -> None:
        buf = bytearray()
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                buf += data
                out = bytearray()
                while True:
                    n = _packet_length(buf)
                    if n is None or len(buf) < n:
                        break
                    pkt = bytes(buf[:n])
                    del buf[:n]
                    out += self._maybe_tamper(pkt)
                if out:
                    u.sendall(out)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _maybe_tamper(self, pkt: bytes) -> bytes:
        if pkt[0] >> 4 != 3 or not self._armed:
            return pkt
        at = 1
        while pkt[at] & 0x80:
            at += 1
        at += 1
        tlen = int.from_bytes(pkt[at:at + 2], "big")
        topic = pkt[at + 2:at + 2 + tlen].decode(errors="replace")
        body = at + 2 + tlen + (2 if (pkt[0] >> 1) & 3 else 0)
        if not topic.endswith("/tx") or len(pkt) - body < 160:
            return pkt
        original = pkt[body:]
        spoiled_tx = _spoil(original)
        digest = hashlib.sha256(original).digest()
        with self._lock:
            if not self._armed or spoiled_tx is None or digest in self._seen:
                return pkt
            self._armed -= 1
            self._seen.add(digest)
            on = self._on
        self.tampered += 1
        if on is not None:
            on(topic, spoiled_tx)
        return pkt[:body] + spoiled_tx


def _spoil(data: bytes) -> bytes | None:
    """``data`` (a wire transaction) with a reading changed and the payload hash redone; None if not one."""
    try:
        i = 1  # [envelope, payload]: 0x82
        if data[0] != 0x82 or data[i:i + 2] != b"\xd2\x84":
            return None
        i += 2
        h = data[i]
        plen, i = (h - 0x40, i + 1) if h < 0x58 else (data[i + 1], i + 2)
        i += plen + 1  # protected header, empty unprotected map
        if data[i:i + 2] != b"\x58\x20":
            return None
        hash_at = i + 2
        i += 34
        if data[i:i + 2] != b"\x58\x40":
            return None
        i += 66
        start = i
        ai = data[i] & 0x1F
        if ai < 24:
            n, i = ai, i + 1
        elif ai == 24:
            n, i = data[i + 1], i + 2
        else:
            n, i = int.from_bytes(data[i + 1:i + 3], "big"), i + 3
        p = wire._load(data[i:i + n])
        if not _bump(p, spec.P_BODY):
            return None
        payload = wire.encode(p)  # still canonical CBOR: a changed reading, not broken bytes
        head = wire.encode(payload)[: -len(payload)]
        out = bytearray(data[:hash_at]) + hashlib.sha256(payload).digest()
        out += data[hash_at + 32:start]
        return bytes(out + head + payload)
    except (IndexError, ValueError, WireError):
        return None


def _bump(container: Any, key: Any) -> bool:
    """Add one to the last integer found in ``container[key]`` (depth first); False if none."""
    x = container[key]
    if type(x) is int and x < (1 << 62):
        container[key] = x + 1
        return True
    keys_ = list(range(len(x) - 1, -1, -1)) if isinstance(x, list) else (
        sorted(x, reverse=True) if isinstance(x, dict) else [])
    return any(_bump(x, k) for k in keys_)


def _packet_length(buf: bytearray) -> int | None:
    """Bytes of the whole MQTT packet at the start of ``buf``, or None if its header is not all here."""
    n, mult, at = 0, 1, 1
    while True:
        if at >= len(buf):
            return None
        b = buf[at]
        n += (b & 0x7F) * mult
        mult *= 128
        at += 1
        if not b & 0x80:
            return at + n
        if at > 4:
            raise ValueError("MQTT remaining length over 4 bytes")


KINDS: dict[str, type[Injector]] = {
    "spoofed_device": SpoofedDevice,
    "replay": Replay,
    "tamper": Tamper,
    "revoked_device": RevokedDevice,
    "cloned_device": ClonedDevice,
    "gps_drift": GpsSpoof,
    "gps_step": GpsSpoof,
    "flood": Flood,
    "stolen_credential": StolenCredential,
    "wipe_node": WipeNode,
}


def make(spec_: Any, ctx: Any) -> Injector:
    """The injector of one scenario attack (``Attack(name, kind, at_s, target, params)``)."""
    kind = str(spec_.kind)
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError("attack %r: unknown kind %r (one of %s)"
                         % (spec_.name, kind, ", ".join(sorted(KINDS))))
    return cls(str(spec_.name), kind, float(spec_.at_s), str(spec_.target or ""),
               dict(spec_.params or {}), ctx)
