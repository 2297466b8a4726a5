"""A fleet of light nodes emulated in CPython, in one asyncio process, for scenarios and scale.

Each ``LightNode`` does what the firmware does (firmware/ln/app.py,
docs/uplink.md, docs/acks.md), with the SDK's fast signer
(``lightnode.wire.Signer``) in place of the device's Ed25519:

- samples its device (a ``Source``: frames with the device's own
  timestamps, integers at the point map's resolution) and closes one
  readings transaction per window (the board's default window); a status
  point that changes is an event, signed at once and closing the window;
- keeps every signed record until a block ack covers it: the ack is
  checked as the device checks it (``lightnode.node.acks.verify_ack``: the
  node's signature, the checkpoint and a witness's cosignature, the
  inclusion proof of its own record's bytes, the acked id equal to its own);
- publishes at QoS1 on its own persistent MQTT session, and sends every
  unacknowledged record again after a reconnect, and when one has waited
  ``resend_s`` with no ack;
- on a NACK for its own bytes (the NACK's transaction id is its record's):
  a refusal of the bytes (``wire.REASONS``: corrupted on the way, its own
  copy verifies) is sent again, at most ``MAX_RESENDS`` times; a refusal of
  the device (revoked, unknown, fork) sets the record aside. A NACK naming
  bytes it never signed (someone spoofing its id) changes nothing;
- a heartbeat every ``heartbeat_every`` windows.

The uplink can be cut (``pause``: a storm's comm loss) while sampling
goes on; the records wait in the journal and go out after.

    fleet = Fleet("127.0.0.1", port, "feeder-7", node_keys, witness_keys)
    fleet.add(LightNode("pmu-1", device_id, seed, PmuSignalSource(), window_s=5))
    await fleet.start(); await asyncio.sleep(60); await fleet.stop(drain_s=20)
    fleet.nodes[0].summary()
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lightnode import boards, readings, wire
from lightnode.firmware.ln import ack as spec_ack
from lightnode.firmware.ln import wire as spec
from lightnode.node import acks
from lightnode.node.mqtt import Transport
from lightnode.simulator import signals

__all__ = [
    "FixedWindowSource",
    "Fleet",
    "Frame",
    "GridDeviceSource",
    "LightNode",
    "PmuSignalSource",
    "Record",
    "Source",
]

log = logging.getLogger("lightnode.simulator.fleet")

MAX_RESENDS = 3  # of one record refused for its bytes (corrupted in transit)
RESEND_S = 15.0  # an unacknowledged record is sent again after this long (``LightNode.resend_s``)
HEARTBEAT_EVERY = 2  # windows, as the firmware's default
CLOCK_UNCERTAINTY_US = 1500  # NTP over Wi-Fi, as the benches assume
FIRMWARE_VERSION = "sim-1"
# Refusals of the device itself: sending the same bytes again cannot help.
DEVICE_REFUSALS = frozenset(spec_ack.NODE_REASONS)


# -- what a light node reads ------------------------------------------------------------


@dataclass
class Frame:
    """One sample of a device: its own timestamp (us), integers per point id, quality bits."""

    t_us: int
    values: dict[int, int]
    quality: int = spec.Q_GOOD
    # alarm crossings the device's point map defines: (event type, point id, value, limit)
    alarms: list[tuple[int, int, int, int | None]] = field(default_factory=list)


class Source(Protocol):
    """A device as a light node sees it through its point map."""

    name: str
    kind: str
    rate_hz: float
    points: Sequence[tuple[int, int]]  # (point id, delta order), in point-map order
    status_points: frozenset[int]  # a change of one of these is an event
    trace: dict[str, tuple[int, float]]  # "frequency"/"angle" -> (point id, resolution), for plots

    def frames(self, t0_s: float, t1_s: float) -> list[Frame]:
        """The frames the device produced in [t0_s, t1_s) of run time."""
        ...


def _frame_times(rate_hz: float, t0_s: float, t1_s: float) -> list[float]:
    k0, k1 = math.ceil(t0_s * rate_hz - 1e-9), math.ceil(t1_s * rate_hz - 1e-9)
    return [k / rate_hz for k in range(k0, k1)]


class PmuSignalSource:
    """A 50 frames/s PMU from ``lightnode.simulator.signals`` (no grid): the fleet's stand-alone device."""

    kind = "pmu"
    status_points: frozenset[int] = frozenset()

    def __init__(self, name: str = "pmu", rate_hz: int = 50, seed: int = 1,
                 t0_us: int | None = None) -> None:
        self.name = name
        self.rate_hz = float(rate_hz)
        self.seed = seed
        self.t0_us = time.time_ns() // 1000 if t0_us is None else t0_us
        self.points = [(p.id, p.order) for p in signals.POINTS]
        self.trace = {"frequency": (signals.FREQ, 0.001), "angle": (signals.BY_NAME["VA.ang"].id, 0.01)}
        self._chunk: tuple[int, signals.PmuWindow] | None = None

    def _window(self, k: int) -> signals.PmuWindow:
        if self._chunk is None or self._chunk[0] != k:
            self._chunk = (k, signals.pmu_window(seconds=10, rate=int(self.rate_hz),
                                                 seed=self.seed * 100_003 + k,
                                                 t0_us=self.t0_us + k * 10_000_000))
        return self._chunk[1]

    def frames(self, t0_s: float, t1_s: float) -> list[Frame]:
        out = []
        per = int(self.rate_hz * 10)
        for t in _frame_times(self.rate_hz, t0_s, t1_s):
            i = round(t * self.rate_hz)
            w = self._window(i // per)
            j = i % per
            out.append(Frame(w.times[j], {pid: w.values[pid][j] for pid, _ in self.points}))
        return out


class FixedWindowSource:
    """Every window the same readings (a benchmark's fixed window), moved to now: no sampling cost at scale."""

    kind = "pmu"
    status_points: frozenset[int] = frozenset()
    points: Sequence[tuple[int, int]] = ()
    rate_hz = 50.0
    trace: dict[str, tuple[int, float]] = {}

    def __init__(self, body: Any, readings_per_window: int, name: str = "pmu") -> None:
        self.name = name
        self.body = body
        self.readings_per_window = readings_per_window

    def frames(self, t0_s: float, t1_s: float) -> list[Frame]:
        return []

    def body_now(self) -> Any:
        """The body with each series' first timestamp at now minus one window: a window just closed."""
        out = []
        for series in self.body:
            s = dict(series)
            n = len(s[spec.S_DT]) + 1
            s[spec.S_T0] = time.time_ns() // 1000 - n * int(s[spec.S_PERIOD])
            out.append(s)
        return out


class GridDeviceSource:
    """A device of ``lightnode.simulator.devices`` read directly (``sample(t_s)``), at its rate.

    ``sample`` gives what the device measures at run time ``t_s`` (its own
    clock errors included) in the units of its point map (``device.map``,
    the same map the firmware reads with); the light node quantizes at each
    point's resolution. ``"t_us"`` is the device's own timestamp (a
    GPS-spoofed PMU's), else the run's clock. Points marked ``event`` in the
    map (a breaker position, a trip) are status: a change is an event.
    """

    def __init__(self, device: Any, t0_us: int, rate_hz: float | None = None) -> None:
        self.device = device
        self.name = str(getattr(device, "name", "device"))
        self.kind = str(getattr(device, "kind", "device"))
        self.t0_us = t0_us
        pts = list((getattr(device, "map", None) or {}).get("points", ()))
        self._specs: dict[int, dict[str, Any]] = {int(p["id"]): p for p in pts}
        if not self._specs and self.kind == "pmu":
            self._specs = {p.id: {"id": p.id, "order": p.order, "resolution": p.resolution,
                                  "quantity": p.quantity} for p in signals.POINTS}
        periods = [float(p["period_ms"]) for p in pts if p.get("period_ms")]
        default = float(getattr(device, "rate", 50)) if self.kind == "pmu" else (
            1000.0 / min(periods) if periods else 1.0)
        self.rate_hz = float(rate_hz or default)
        self.points = [(pid, int(p.get("order", 1))) for pid, p in self._specs.items()]
        self.status_points = frozenset(pid for pid, p in self._specs.items() if p.get("event"))
        self.trace: dict[str, tuple[int, float]] = {}
        for pid, p in self._specs.items():  # the first frequency and the first angle point
            q = str(p.get("quantity", ""))
            if q in ("frequency", "angle") and q not in self.trace:
                self.trace[q] = (pid, float(p.get("resolution", 0.001)))
        self._alarm_state: dict[int, str | None] = {
            pid: None for pid, p in self._specs.items() if p.get("alarm")}

    def _alarm(self, pid: int, x: float) -> tuple[int, int, int, int | None] | None:
        """An alarm event when the point crosses its map's limits (as the firmware's sampler)."""
        lim = self._specs[pid]["alarm"]
        state = "low" if "low" in lim and x < float(lim["low"]) else (
            "high" if "high" in lim and x > float(lim["high"]) else None)
        if state == self._alarm_state[pid]:
            return None
        self._alarm_state[pid] = state
        v = self._quantize(pid, x)
        if state == "low":
            return (spec.EV_ALARM_LOW, pid, v, self._quantize(pid, float(lim["low"])))
        if state == "high":
            return (spec.EV_ALARM_HIGH, pid, v, self._quantize(pid, float(lim["high"])))
        return (spec.EV_ALARM_CLEAR, pid, v, None)

    def _quantize(self, pid: int, x: Any) -> int:
        if isinstance(x, bool):
            return int(x)
        p = self._specs.get(pid, {})
        q = int(round(float(x) / float(p.get("resolution", 0.001) or 0.001)))
        if p.get("quantity") == "angle":  # angles wrap to +-180 degrees, as signals.quantize
            half = int(round(180.0 / float(p.get("resolution", 0.01))))
            q = (q + half) % (2 * half) - half
        return q

    def frames(self, t0_s: float, t1_s: float) -> list[Frame]:
        out = []
        for t in _frame_times(self.rate_hz, t0_s, t1_s):
            s = dict(self.device.sample(t))
            t_us = s.pop("t_us", None)
            quality = int(s.pop("quality", spec.Q_GOOD))
            if t_us is None:
                t_us = self.t0_us + round(t * 1e6)
            values, alarms = {}, []
            for k, v in s.items():
                if isinstance(k, int) and isinstance(v, int | float | bool):
                    values[k] = self._quantize(k, v)
                    if k in self._alarm_state and math.isfinite(float(v)):
                        a = self._alarm(k, float(v))
                        if a is not None:
                            alarms.append(a)
            if not self.points:  # learnt from the first sample
                self.points = [(k, 1) for k in sorted(values)]
            out.append(Frame(int(t_us), values, quality, alarms))
        return out


# -- the light node ---------------------------------------------------------------------


@dataclass
class Record:
    seq: int
    tx_id: bytes
    data: bytes | None  # dropped once acknowledged (the retention ring is not emulated)
    kind: int
    signed_at: float  # time.time()
    readings: int = 0
    legit: bool = True
    published_at: float = 0.0
    acked_at: float | None = None
    refused: str | None = None  # the NACK's reason, when set aside
    resends: int = 0


@dataclass
class Keys:
    """What a light node is configured with: the node's ack and checkpoint keys, the witnesses'."""

    node: dict[bytes, bytes]  # kid -> public key (the producer's ack and checkpoint keys)
    witnesses: dict[bytes, bytes]


class LightNode:
    """One emulated light node: device -> window -> signed record -> journal -> uplink -> block ack."""

    def __init__(self, name: str, device_id: bytes, seed: bytes, source: Any, *,
                 board: str = "pico_w", window_s: float | None = None,
                 heartbeat_every: int = HEARTBEAT_EVERY, first_seq: int = 0,
                 prev: bytes = bytes(32), phase_s: float = 0.0, trace_points: Sequence[int] = (),
                 trace_hz: float = 5.0) -> None:
        self.name = name
        self.device_id = bytes(device_id)
        self.seed = bytes(seed)
        self.source = source
        self.board = board
        self.window_s = float(window_s or boards.load(board)["default_window_s"])
        self.heartbeat_every = heartbeat_every
        self.phase_s = phase_s
        self.seq = first_seq
        self.prev = prev
        self.records: dict[int, Record] = {}
        self.pending: dict[int, Record] = {}  # signed, not yet covered by a block ack
        self.trace_points = tuple(trace_points)
        self.trace_hz = trace_hz
        self.trace: list[tuple[float, dict[int, int]]] = []  # (run time, values)
        self.events: list[tuple[float, int, int, int]] = []  # (run time, type, point, value)
        self.legit_until: float | None = None  # records signed after this (time.time()) are an attack's
        self.stats = {"acks": 0, "bad_acks": 0, "nacks": 0, "foreign_nacks": 0, "resent": 0,
                      "reconnects": 0, "set_aside": 0}
        self.signer: wire.Signer | None = None
        self.segment = ""
        self.transport: Transport | None = None
        self._keys: Keys | None = None
        self._last: dict[int, int] = {}
        self._t_read = 0.0
        self._windows = 0
        self._paused_until = 0.0
        self._was_up = False
        self._link_task: asyncio.Future[None] | None = None
        self._on_signed: Callable[[LightNode, Record], None] | None = None
        self.via: tuple[str, int] | None = None  # connect through this proxy, not the broker
        self.client_id = "ln-%s" % self.hex
        self.resend_s = RESEND_S

    @property
    def hex(self) -> str:
        return self.device_id.hex()

    # -- wiring ---------------------------------------------------------------------------

    def bind(self, segment: str, keys: Keys, on_signed: Callable[[LightNode, Record], None] | None
             ) -> None:
        self.segment = segment
        self.signer = wire.Signer(self.seed, self.device_id, segment)
        self._keys = keys
        self._on_signed = on_signed
        self.topic_tx = spec.TOPIC_TX % (segment, self.hex)
        self.topic_ack = spec.TOPIC_ACK % (segment, self.hex)

    def connect(self, host: str, port: int) -> None:
        self._host, self._port = self.via or (host, port)
        t = Transport(self._host, self._port, self.client_id, clean_session=False, keepalive=30)
        t.subscribe(self.topic_ack, self._on_ack)
        self.transport = t
        self._link_task = asyncio.ensure_future(t.run())

    async def disconnect(self) -> None:
        t, task = self.transport, self._link_task
        self.transport, self._link_task = None, None
        if t is not None:
            t.close()
        if task is not None:
            try:
                await asyncio.wait_for(task, 3)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    # -- signing ----------------------------------------------------------------------------

    def sign(self, kind: int, body: Any, readings_n: int = 0, t_us: int | None = None,
             tq: int = spec.TQ_NTP) -> Record:
        assert self.signer is not None
        now = time.time()
        stamp = (time.time_ns() // 1000 if t_us is None else t_us, tq, CLOCK_UNCERTAINTY_US)
        data, tx_id = self.signer.make(self.seq, self.prev, stamp, kind, body)
        legit = self.legit_until is None or now < self.legit_until
        r = Record(self.seq, tx_id, data, kind, now, readings_n, legit)
        self.records[self.seq] = r
        self.pending[self.seq] = r
        self.prev, self.seq = tx_id, self.seq + 1
        if self._on_signed is not None:
            self._on_signed(self, r)
        self._send(r)
        return r

    def _send(self, r: Record) -> None:
        t = self.transport
        if t is None or r.data is None or time.time() < self._paused_until:
            return  # the journal keeps it: sent after the link is back
        r.published_at = time.time()
        t.publish(self.topic_tx, r.data, qos=1)

    def close_window(self, t_run: float) -> None:
        """Read the device up to ``t_run``, sign its events and one readings transaction."""
        src = self.source
        if isinstance(src, FixedWindowSource):
            self.sign(spec.KIND_READINGS, src.body_now(), src.readings_per_window)
        else:
            frames = src.frames(self._t_read, t_run)
            self._t_read = t_run
            self._sign_frames(frames, t_run)
        self._windows += 1
        if self._windows % self.heartbeat_every == 0:
            self.heartbeat()

    def _sign_frames(self, frames: list[Frame], t_run: float) -> None:
        if not frames:
            return
        status = self.source.status_points
        start = 0
        for i, f in enumerate(frames):
            changed = [(p, v) for p, v in f.values.items()
                       if p in status and p in self._last and self._last[p] != v]
            for p in status:
                if p in f.values:
                    self._last[p] = f.values[p]
            if changed or f.alarms:
                # an event closes the window at once: what came before it first
                self._readings(frames[start:i])
                start = i
                for p, v in changed:
                    self.events.append((t_run, spec.EV_STATUS, p, v))
                    self.sign(spec.KIND_EVENT, {spec.E_TYPE: spec.EV_STATUS,
                                                spec.E_SEVERITY: spec.SEV_ALARM,
                                                spec.E_POINT: p, spec.E_VALUE: v,
                                                spec.E_TIME: f.t_us})
                for etype, p, v, limit in f.alarms:
                    self.events.append((t_run, etype, p, v))
                    body = {spec.E_TYPE: etype, spec.E_POINT: p, spec.E_VALUE: v,
                            spec.E_TIME: f.t_us,
                            spec.E_SEVERITY: spec.SEV_INFO if etype == spec.EV_ALARM_CLEAR
                            else spec.SEV_ALARM}
                    if limit is not None:
                        body[spec.E_LIMIT] = limit
                    self.sign(spec.KIND_EVENT, body)
        self._readings(frames[start:])
        if self.trace_points:
            step = max(1, int(round(self.source.rate_hz / self.trace_hz)))
            for f in frames[::step]:
                rel = (f.t_us - frames[0].t_us) / 1e6
                self.trace.append((t_run - (frames[-1].t_us - frames[0].t_us) / 1e6 + rel,
                                   {p: f.values[p] for p in self.trace_points if p in f.values}))

    def _readings(self, frames: list[Frame]) -> None:
        if not frames:
            return
        points = [(p, o) for p, o in self.source.points if all(p in f.values for f in frames)]
        if not points:
            return
        period = int(round(1e6 / self.source.rate_hz))
        times = [f.t_us for f in frames]
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            # a clock that stepped back: the readings body needs rising times; keep the
            # device's order and let the step show in the deltas from here on
            times = [times[0] + k * period for k in range(len(times))]
        s = readings.Series(times=times, period=period,
                            points=[readings.Point(p, o, [f.values[p] for f in frames])
                                    for p, o in points],
                            quality=[f.quality for f in frames])
        # the transaction's time is the light node's own clock, as on the board; the
        # device's timestamps (a spoofed PMU's too) are the samples'
        self.sign(spec.KIND_READINGS, readings.encode_body([s]), len(frames) * len(points))

    def heartbeat(self) -> None:
        link = spec.LINK_UP if self.transport is not None and self.transport.connected \
            else spec.LINK_DOWN
        self.sign(spec.KIND_HEARTBEAT, {spec.HB_FIRMWARE: FIRMWARE_VERSION,
                                        spec.HB_FREE_HEAP: 60_000,
                                        spec.HB_JOURNAL: len(self.pending),
                                        spec.HB_LINK: link, spec.HB_TIME_QUALITY: spec.TQ_NTP,
                                        spec.HB_RESET_CAUSE: 0})

    # -- acks and NACKs ---------------------------------------------------------------------

    def _on_ack(self, _topic: str, payload: bytes) -> None:
        keys = self._keys
        assert keys is not None
        try:
            a = acks.verify_ack(payload, keys.node, keys.witnesses, device_id=self.device_id)
        except acks.AckError as e:
            if e.reason == spec_ack.AR_CTY:
                self._on_nack(payload)
            else:
                self.stats["bad_acks"] += 1
            return
        r = self.records.get(a.seq)
        if r is None or r.data is None and r.acked_at is None:
            self.stats["bad_acks"] += 1
            return
        if r.acked_at is None:
            assert r.data is not None
            try:  # the device's own bytes in the tree the checkpoint signs
                acks.verify_ack(payload, keys.node, keys.witnesses, expected_tx_id=r.tx_id,
                                record=r.data, device_id=self.device_id)
            except acks.AckError:
                self.stats["bad_acks"] += 1
                return
        self.stats["acks"] += 1
        now = time.time()
        for seq in [s for s in self.pending if s <= a.seq]:
            p = self.pending.pop(seq)
            p.acked_at = now
            p.data = None

    def _on_nack(self, payload: bytes) -> None:
        keys = self._keys
        assert keys is not None
        try:
            n = acks.verify_nack(payload, keys.node)
        except acks.AckError:
            self.stats["bad_acks"] += 1
            return
        r = self.records.get(n.seq) if n.seq is not None else None
        if r is None or n.device != self.device_id:
            self.stats["foreign_nacks"] += 1  # about bytes this node never signed
            return
        if r.seq not in self.pending:
            return
        if n.reason not in DEVICE_REFUSALS:
            # the bytes were refused: ours (same id) spoiled on the way, or someone else's under
            # our number (another id). Our own copy verifies: send it again, a few times at most
            # (if it is in the ledger already, that is a duplicate and gets the ack again)
            self.stats["nacks" if n.tx_id == r.tx_id else "foreign_nacks"] += 1
            if r.resends < MAX_RESENDS:
                r.resends += 1
                self.stats["resent"] += 1
                self._send(r)
            return
        if n.tx_id != r.tx_id:
            self.stats["foreign_nacks"] += 1  # a clone's or a replay's bytes: not ours
            return
        self.stats["nacks"] += 1
        r.refused = n.reason
        self.pending.pop(r.seq, None)
        self.stats["set_aside"] += 1

    # -- the link ---------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Cut the uplink for ``seconds`` (the journal keeps what is signed meanwhile)."""
        self._paused_until = time.time() + seconds
        if self.transport is not None:
            self.transport.close()  # the reconnect loop ends; ``watch`` makes a new link after

    def watch(self) -> None:
        """Called often: a link back (or a pause over) sends every unacknowledged record again."""
        now = time.time()
        t = self.transport
        if now < self._paused_until:
            self._was_up = False
            return
        if self._paused_until and (t is None or t._closing):
            self._paused_until = 0.0
            self.transport = None
            self.connect(self._host, self._port)
            return
        if t is None:
            return
        up = t.connected
        if up and not self._was_up:
            if self.stats["reconnects"] or any(r.published_at for r in self.pending.values()):
                self.resend_all()
            self.stats["reconnects"] += 1
        self._was_up = up
        if up:
            for r in list(self.pending.values()):
                if r.published_at and now - r.published_at > self.resend_s or not r.published_at:
                    self.stats["resent"] += 1
                    self._send(r)

    def resend_all(self) -> None:
        for r in list(self.pending.values()):
            self._send(r)

    # -- the run ------------------------------------------------------------------------

    async def run(self, t0: float, stop: asyncio.Event, from_start: bool = True) -> None:
        """Close a window every ``window_s`` of run time (from ``t0``, time.monotonic) until ``stop``.

        The first window reads from the run's start (its first sample included), or from now
        for a node that joins a running fleet.
        """
        self._t_read = 0.0 if from_start else max(0.0, time.monotonic() - t0)
        k = max(1, math.ceil((time.monotonic() - t0 - self.phase_s) / self.window_s))
        while not stop.is_set():
            due = t0 + self.phase_s + k * self.window_s
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
            except TimeoutError:
                pass
            self.close_window(time.monotonic() - t0)
            k += 1

    def summary(self) -> dict[str, Any]:
        legit = [r for r in self.records.values() if r.legit]
        return {
            "name": self.name,
            "device_id": self.hex,
            "device_kind": getattr(self.source, "kind", "device"),
            "board": self.board,
            "firmware": False,
            "tx_signed": len(legit),
            "tx_acked": sum(1 for r in legit if r.acked_at is not None),
            "readings": sum(r.readings for r in legit),
            "pending": len(self.pending),
            **self.stats,
        }


class Fleet:
    """Light nodes sharing one broker, one segment and one set of node keys, in this event loop."""

    def __init__(self, host: str, port: int, segment: str, node_keys: Mapping[bytes, bytes],
                 witness_keys: Mapping[bytes, bytes],
                 on_signed: Callable[[LightNode, Record], None] | None = None) -> None:
        self.host, self.port, self.segment = host, port, segment
        self.keys = Keys(dict(node_keys), dict(witness_keys))
        self.nodes: list[LightNode] = []
        self.on_signed = on_signed
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Future[None]] = []
        self.t0 = time.monotonic()

    def add(self, node: LightNode) -> LightNode:
        node.bind(self.segment, self.keys, self.on_signed)
        self.nodes.append(node)
        return node

    def by_name(self, name: str) -> LightNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    async def connect(self, timeout: float = 20.0) -> None:
        """Every node's link up (and its ack subscription made) before the clock starts."""
        for n in self.nodes:
            if n.transport is None:
                n.connect(self.host, self.port)
        deadline = time.monotonic() + timeout
        while not all(n.transport is not None and n.transport.connected and n.transport.subacks
                      for n in self.nodes):
            if time.monotonic() > deadline:
                down = [n.name for n in self.nodes if not (n.transport and n.transport.connected)]
                raise TimeoutError("light nodes not connected within %.0f s: %s"
                                   % (timeout, ", ".join(down[:10])))
            await asyncio.sleep(0.05)
        for n in self.nodes:
            n._was_up = True

    def launch(self, node: LightNode) -> None:
        """Add a node to a fleet already running: it connects and starts its windows now."""
        if node not in self.nodes:
            self.add(node)
        node.connect(self.host, self.port)
        self._tasks.append(asyncio.ensure_future(node.run(self.t0, self._stop, from_start=False)))

    async def start(self, t0: float | None = None) -> None:
        await self.connect()
        self.t0 = time.monotonic() if t0 is None else t0
        self._tasks = [asyncio.ensure_future(n.run(self.t0, self._stop)) for n in self.nodes]
        self._tasks.append(asyncio.ensure_future(self._watch()))

    async def _watch(self) -> None:
        while not self._stop.is_set():
            for n in self.nodes:
                n.watch()
            try:
                await asyncio.wait_for(self._stop.wait(), 0.5)
            except TimeoutError:
                pass

    def pending(self) -> int:
        return sum(len(n.pending) for n in self.nodes)

    async def stop(self, drain_s: float = 20.0) -> None:
        """Stop sampling (each node closes its last window), wait up to ``drain_s`` for the acks, disconnect."""
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        deadline = time.monotonic() + drain_s
        last_watch = 0.0
        while self.pending() and time.monotonic() < deadline:
            if time.monotonic() - last_watch > 0.5:
                last_watch = time.monotonic()
                for n in self.nodes:
                    n.watch()
            await asyncio.sleep(0.1)
        await asyncio.gather(*(n.disconnect() for n in self.nodes), return_exceptions=True)


def stagger(n: int, window_s: float, seed: int = 0) -> list[float]:
    """Window phases for ``n`` nodes spread over one window, so a fleet does not sign in step."""
    rnd = random.Random(seed)
    return [rnd.uniform(0, window_s) for _ in range(n)]


@dataclass
class Provisioned:
    """A light node's identity as the runner registers it."""

    name: str
    device_id: bytes
    seed: bytes
    extra: dict[str, Any] = field(default_factory=dict)
