"""The light node's application: sampler -> batcher -> signer -> journal -> uplink, on asyncio.

One task per stage, joined by bounded buffers (STYLE 7): the sampler
reads the point map's source (a PMU over C37.118) and keeps each frame as
integers at the map's resolution with its source timestamp; an alarm
crossing, a status change or a lost stream is an event at once. The
batcher closes one readings transaction per window, and at once on an
event; it signs, appends to the journal and syncs. The uplink publishes
every pending record (keyed by its sequence number) and frees the
journal on each valid block ack; a NACKed record is set aside. A
heartbeat goes out every ``heartbeat_every`` windows.

    app = App(points.plan(cfg), key, journal, client, source=("127.0.0.1", 4712))
    asyncio.run(app.run(seconds=20))
"""

import asyncio
import gc
from array import array

from lightnode.drivers import ticks
from lightnode.drivers.c37118 import client as c37
from lightnode.drivers.c37118 import frames
from lightnode.drivers.c37118.errors import RemoteProtocolError

from . import VERSION, ack, readings, txn, wire
from .journal import JournalFull
from .points import (
    P_HIGH,
    P_ID,
    P_INDEX,
    P_KIND,
    P_LOW,
    P_ORDER,
    P_RES,
    P_STATE,
    alarm_state,
    quantize,
)

# asyncio loads these on first use; loaded with the code, they do not land amid data
_PRELOAD = (asyncio.open_connection, asyncio.wait_for_ms)

LINK_CODES = {"down": wire.LINK_DOWN, "connecting": wire.LINK_CONNECTING, "up": wire.LINK_UP,
              "closed": wire.LINK_CLOSED}

MAX_SAMPLES = 512  # per window at most; a fuller window closes early
_OFFSET_MAX = 1 << 31  # a sample's time offset in the window fits an array('i')
MAX_EVENTS = 16  # events waiting for the batcher; more are counted, not kept
MAX_ACKS = 4  # acks waiting for checking: they are cumulative, the newest count most
SEND_AHEAD = 2  # records read from the journal per uplink pass (copies: heap)
RX_BYTES = 512  # read from the source at a time
LOSS_MS = 3000  # no frame this long: the source is lost
RETRY_MS = 1000  # before connecting to the source again
RESEND_POLL_MS = 1000  # an idle uplink looks this often for a new MQTT session
RESEND_AFTER_MS = 20000  # records out, link up, no ack this long: every pending record again
# Flash running short (pending bytes, % of the journal's quota; docs/journal.md):
DECIMATE_AT = 50  # from here each routine window is signed as one min/max/mean sample
WIDEN_AT = 80  # from here WIDEN_WINDOWS decimated windows share one transaction
WIDEN_WINDOWS = 12  # (a minute at a Pico W's 5 s window; held in RAM until signed)
EVENT_ROOM = 10  # the quota's last part is for events only: routine records stop short of it
TX_OVERHEAD = 320  # bytes a transaction adds to its body on flash, at most (record header, COSE)
OFFLINE_HB_MS = 600000  # link down, records unsent: one heartbeat in 10 min (the offline budget)

# C37.118 STAT bits
_STAT_ERROR = 0xC000  # data error: anything but 00 is not good data
_STAT_UNSYNC = 0x2000


class App:
    def __init__(self, plan, key, journal, client, source, clock=None, window_s=5,
                 heartbeat_every=2, reset_cause=0, max_samples=MAX_SAMPLES, log=None):
        if window_s <= 0 or heartbeat_every < 1:
            raise ValueError("window_s > 0 and heartbeat_every >= 1 expected")
        if plan["protocol"] != "c37118":
            raise ValueError("this application reads C37.118 point maps; the map is %s"
                             % plan["protocol"])
        if clock is None:
            from .clock import Clock

            clock = Clock()
        self.device = plan["device"]
        self.segment = plan["segment"]
        self.key = key
        self.journal = journal
        self.client = client
        self.clock = clock
        self.source = source
        self.window_ms = int(window_s * 1000)
        self.heartbeat_every = heartbeat_every
        self.reset_cause = reset_cause
        self.log = log or (lambda msg: None)
        dev_hex = "".join("%02x" % b for b in self.device)
        self.topic_tx = wire.TOPIC_TX % (self.segment, dev_hex)
        self.topic_ack = wire.TOPIC_ACK % (self.segment, dev_hex)
        self.node_keys = plan["node_keys"]
        from .cose import envelope_header

        self._protected = envelope_header(self.device)
        self.idcode = plan["source"]["idcode"]
        self.points = plan["points"]
        # window buffers: typed, sized from the source's frame rate when its
        # configuration frame arrives (``_size_window``), at most max_samples
        self.max_samples = max_samples
        self.cap = 0
        self.t0 = 0  # source time of the window's first sample; times[] are offsets from it
        self.times = None
        self.cols = None
        self.quality = None
        self.q_any = False
        self.n = 0
        self.gaps = []
        self.period_us = 0
        self.overflow = 0  # windows closed early: the buffer was full
        self.events = []  # event bodies waiting for the batcher (at most MAX_EVENTS)
        self.events_dropped = 0
        self.acks = []  # ack or NACK payloads waiting for checking (at most MAX_ACKS)
        self.set_aside = {}  # seq -> NACK reason: never sent again
        self.sent_through = -1  # highest seq handed to the uplink on this MQTT session
        self._session = 0  # the client's session count when sent_through was last reset
        self._freed_seen = 0  # stats["freed"] when acks last moved
        self._progress_us = 0
        self._agg = []  # decimated windows (encoded series) waiting to share a transaction
        self._hb_off = None  # ticks_ms of the last heartbeat signed while offline
        # app.json may set it (tests: a widened transaction sooner)
        self.widen_windows = int(plan.get("app", {}).get("widen_windows", WIDEN_WINDOWS))
        self.stats = {"readings": 0, "events": 0, "heartbeats": 0, "frames": 0, "freed": 0,
                      "acks": 0, "bad_acks": 0, "nacks": 0, "appended": 0, "first_seq": None,
                      "last_seq": None, "min_free_heap": None, "window_samples": 0,
                      "decimated": 0, "dropped": 0, "quota": journal.quota}
        self._flush = asyncio.Event()  # an event: close the window now
        self._new = asyncio.Event()  # a new record or an ack for the uplink
        self._ack_ev = asyncio.Event()
        self._rx = bytearray(RX_BYTES)  # the source's bytes are read into this, not new objects
        self._rxv = memoryview(self._rx)
        self._running = True
        self._last_stat = None
        self._lost = False

    def _size_window(self, period_us):
        """Buffers for one window at this frame period, with a quarter to spare.

        Allocated once per rate (a reconnect at the same rate keeps them):
        one array('i') per point and for the times, one byte of quality per sample.
        """
        n = self.window_ms * 1000 // max(period_us, 1)
        n = min(self.max_samples, max(8, n + n // 4 + 2))
        if n == self.cap:
            return
        if self.n:
            self.close_window()
        self.times = self.cols = self.quality = None
        gc.collect()
        self.times = array("i", bytes(4 * n))
        self.cols = [array("i", bytes(4 * n)) for _ in self.points]
        self.quality = bytearray(n)
        self.cap = n
        self.stats["window_samples"] = n

    # -- sampler ----------------------------------------------------------------

    def _event(self, etype, severity, point, value, limit, t_us):
        body = {wire.E_TYPE: etype, wire.E_SEVERITY: severity, wire.E_TIME: t_us}
        if point is not None:
            body[wire.E_POINT] = point
        if value is not None:
            body[wire.E_VALUE] = value
        if limit is not None:
            body[wire.E_LIMIT] = limit
        if len(self.events) >= MAX_EVENTS:
            self.events_dropped += 1
            return
        self.events.append(body)
        self._flush.set()

    def _value(self, pc, data, kind, index):
        """The point's value in its unit (float) from one PMU's data in a frame."""
        if kind == "freq":
            return pc.freq_hz(data.freq)
        if kind == "dfreq":
            return pc.dfreq_hz_s(data.dfreq)
        if kind == "analog":
            return data.an[index]
        if kind == "digital":
            return data.dg[index]
        mag, ang = pc.phasor(index, data.ph[2 * index], data.ph[2 * index + 1])
        if kind == "phasor-mag":
            return mag
        return ang * 57.29577951308232  # degrees

    def sample(self, cfg, frame):
        """Keep one data frame: its time, every point at the map's resolution; alarms as events."""
        t = frame.time_us(cfg.time_base)
        pc = cfg.pmus[0]
        data = frame.pmus[0]
        self.stats["frames"] += 1
        if self.cap == 0:
            self._size_window(self.period_us)
        i = self.n
        if i and not -_OFFSET_MAX < t - self.t0 < _OFFSET_MAX:
            self.close_window()  # the offset would not fit the window's array('i')
            i = 0
        if i >= self.cap:
            # a full window closes at once: no sample is dropped
            self.overflow += 1
            self.close_window()
            i = 0
        if i == 0:
            self.t0 = t
        elif self.period_us:
            missed = (t - self.t0 - self.times[i - 1] + self.period_us // 2) // self.period_us - 1
            if missed > 0:
                self.gaps.append((i, missed))
        self.times[i] = t - self.t0
        stat = data.stat
        q = wire.Q_GOOD
        if stat & _STAT_ERROR:
            q |= wire.Q_INVALID
        if stat & _STAT_UNSYNC:
            q |= wire.Q_TIME_UNLOCKED
        for j in range(len(self.points)):
            pt = self.points[j]
            x = self._value(pc, data, pt[P_KIND], pt[P_INDEX])
            v, bad = quantize(pt[P_RES], x)
            if bad:
                q |= bad
            self.cols[j][i] = v
            if bad & wire.Q_INVALID:
                continue  # no alarm from a value that is not a number
            state = alarm_state(pt, x)
            if state != pt[P_STATE]:
                if state == "high":
                    self._event(wire.EV_ALARM_HIGH, wire.SEV_ALARM, pt[P_ID], v,
                                quantize(pt[P_RES], pt[P_HIGH])[0], t)
                elif state == "low":
                    self._event(wire.EV_ALARM_LOW, wire.SEV_ALARM, pt[P_ID], v,
                                quantize(pt[P_RES], pt[P_LOW])[0], t)
                else:
                    self._event(wire.EV_ALARM_CLEAR, wire.SEV_INFO, pt[P_ID], v, None, t)
                pt[P_STATE] = state
        self.quality[i] = q
        if q:
            self.q_any = True
        self.n = i + 1
        masked = stat & 0xFFFF
        if self._last_stat is not None and masked != self._last_stat:
            self._event(wire.EV_STATUS, wire.SEV_WARNING, None, masked, None, t)
        self._last_stat = masked

    def _lose(self, why):
        if not self._lost:
            self._lost = True
            self.log("source lost: %s" % why)
            self._event(wire.EV_COMM_LOSS, wire.SEV_ALARM, None, None, None, self.clock.now_us())

    async def sampler(self):
        host, port = self.source
        while self._running:
            try:
                r, w = await asyncio.open_connection(host, port)
            except OSError as e:
                self._lose("connect: %r" % (e,))
                await asyncio.sleep_ms(RETRY_MS)
                continue
            s = c37.Session(self.idcode)
            cfg = None
            try:
                w.write(s.command(c37.CMD_SEND_CFG2))
                await w.drain()
                while self._running:
                    try:
                        k = await asyncio.wait_for_ms(r.readinto(self._rx), LOSS_MS)
                    except asyncio.TimeoutError:
                        self._lose("no frame for %d ms" % LOSS_MS)
                        break
                    if not k:
                        self._lose("closed by the source")
                        break
                    mv = self._rxv[:k]
                    off = 0
                    while True:
                        if off < len(mv):
                            off += s.receive_data(mv[off:])
                        try:
                            ev = s.next_event()
                        except RemoteProtocolError as e:
                            self.log("bad frame: %s" % e)
                            continue
                        if ev is None:
                            if off >= len(mv):
                                break
                            continue
                        if isinstance(ev, frames.Config):
                            cfg = ev
                            if cfg.data_rate > 0:
                                self.period_us = 1000000 // cfg.data_rate
                            else:
                                self.period_us = -cfg.data_rate * 1000000
                            self._size_window(self.period_us)
                            w.write(s.command(c37.CMD_DATA_ON))
                            await w.drain()
                        elif isinstance(ev, frames.DataFrame) and cfg is not None:
                            if self._lost:
                                self._lost = False
                                self._event(wire.EV_COMM_RESTORED, wire.SEV_INFO, None, None, None,
                                            ev.time_us(cfg.time_base))
                            self.sample(cfg, ev)
            except (OSError, RemoteProtocolError) as e:
                self._lose("%r" % (e,))
            try:
                w.close()
                await w.wait_closed()
            except OSError:
                pass
            if self._running:
                await asyncio.sleep_ms(RETRY_MS)

    # -- batcher and signer -------------------------------------------------------

    def _fill(self):
        """Pending bytes as a percentage of the journal's quota."""
        return self.journal.pending_bytes() * 100 // self.journal.quota

    def _room(self, kind, body_bytes):
        """Whether a transaction of about ``body_bytes`` fits; routine ones leave EVENT_ROOM free."""
        j = self.journal
        limit = j.quota
        if kind != wire.KIND_EVENT:
            limit -= j.quota * EVENT_ROOM // 100
        return j.pending_bytes() + body_bytes + 2 * TX_OVERHEAD <= limit  # a skip event may go first

    def _sign(self, kind, body, body_bytes=64):
        """Sign and journal one transaction; False if the journal has no room for it (not signed)."""
        if not self._room(kind, body_bytes):
            return False
        j = self.journal
        seq, skipped = j.reserve_seq()
        if skipped > 0:
            # every skip is recorded, before whatever comes first (an event too), as its own
            # event under the number just reserved: the skip event at s with value k covers
            # s-k .. s-1, and the node's cumulative acks rely on it (docs/journal.md)
            self._append(seq, wire.KIND_EVENT,
                         {wire.E_TYPE: wire.EV_SEQ_SKIP, wire.E_SEVERITY: wire.SEV_WARNING,
                          wire.E_VALUE: skipped, wire.E_TIME: self.clock.now_us()})
            self.stats["events"] += 1
            seq, skipped = j.reserve_seq()
        return self._append(seq, kind, body)

    def _append(self, seq, kind, body):
        j = self.journal
        data, tx_id = txn.make(self.key, self.device, self.segment, seq, j.prev,
                               self.clock.stamp(), kind, body, self._protected)
        try:
            j.append(seq, tx_id, data)
        except JournalFull:
            # larger than _room guessed: the number is skipped, and recorded with the next
            self.log("journal full: seq %d not used" % seq)
            return False
        data = None
        st = self.stats
        st["appended"] += 1
        if st["first_seq"] is None:
            st["first_seq"] = seq
        st["last_seq"] = seq
        return True

    def close_window(self):
        """Sign what the window holds: events first, then its readings.

        Events are never decimated and never dropped: one the journal has
        no room for waits for the next window. Routine readings are
        decimated before signing as the journal fills (docs/journal.md):
        past DECIMATE_AT % of the quota a window becomes one min/max/mean
        sample, past WIDEN_AT % ``widen_windows`` such windows share one
        transaction; in the quota's last EVENT_ROOM % they are dropped, and
        counted.
        """
        while self.events:
            if not self._sign(wire.KIND_EVENT, self.events[0]):
                self.log("journal full: %d events wait" % len(self.events))
                break
            self.events.pop(0)
            self.stats["events"] += 1
        fill = self._fill()
        n = self.n
        if n:
            # memoryviews of the window's arrays: encoded in place, nothing copied
            pts = [(pt[P_ID], pt[P_ORDER], memoryview(self.cols[j])[:n])
                   for j, pt in enumerate(self.points)]
            q = memoryview(self.quality)[:n] if self.q_any else None
            enc = readings.window_cbor if fill >= DECIMATE_AT else readings.series_cbor
            raw = enc(memoryview(self.times)[:n], self.period_us or 1, pts, q,
                      self.gaps or None, t0=self.t0)
            pts = q = None
            self.n = 0
            self.q_any = False
            self.gaps = []
            gc.collect()
            if fill >= DECIMATE_AT:
                self._agg.append(raw)
                self.stats["decimated"] += 1
            elif self._sign(wire.KIND_READINGS, [raw], len(raw.data)):
                self.stats["readings"] += 1
            else:
                self.stats["dropped"] += 1
            raw = None
        agg = self._agg
        if agg and (fill < WIDEN_AT or len(agg) >= self.widen_windows or not self._running):
            size = 0
            for r in agg:
                size += len(r.data)
            if self._sign(wire.KIND_READINGS, agg, size):
                self.stats["readings"] += 1
            else:
                self.stats["dropped"] += len(agg)
            self._agg = []
        self.journal.sync()
        self._new.set()

    def _heap_mark(self, what):
        # the most heap in use seen at this point of the loop, for the run's counters
        key = "heap_" + what
        used = gc.mem_alloc()
        if used > self.stats.get(key, 0):
            self.stats[key] = used

    def heartbeat(self):
        # offline, each heartbeat only eats the journal: the first says the link is down, then
        # one per OFFLINE_HB_MS; the first after the link is back says how deep the journal got
        import time  # ms ticks: 10 min is past the us ticks' half period on rp2 and esp32

        now = time.ticks_ms()
        if self.client.connected or not self.journal.pending_bytes():
            self._hb_off = None
        elif self._hb_off is not None and time.ticks_diff(now, self._hb_off) < OFFLINE_HB_MS:
            return
        else:
            self._hb_off = now
        free = gc.mem_free()
        mf = self.stats["min_free_heap"]
        if mf is None or free < mf:
            self.stats["min_free_heap"] = free
        body = {
            wire.HB_FIRMWARE: VERSION,
            wire.HB_FREE_HEAP: free,
            wire.HB_JOURNAL: self.journal.usage()[1],
            wire.HB_LINK: LINK_CODES.get(self.client.state, 0),
            wire.HB_TIME_QUALITY: self.clock.quality()[0],
            wire.HB_RESET_CAUSE: self.reset_cause,
        }
        if not self._sign(wire.KIND_HEARTBEAT, body):
            self.stats["hb_dropped"] = self.stats.get("hb_dropped", 0) + 1
            return
        self.journal.sync()
        self.stats["heartbeats"] += 1
        self._new.set()

    async def batcher(self):
        windows = 0
        while self._running:
            try:
                await asyncio.wait_for_ms(self._flush.wait(), self.window_ms)
            except asyncio.TimeoutError:
                pass
            self._flush.clear()
            if not self._running:
                break
            self._heap_mark("before_gc")
            gc.collect()
            self._heap_mark("live")
            self.close_window()
            windows += 1
            if windows % self.heartbeat_every == 0:
                self.heartbeat()

    # -- uplink and acks ----------------------------------------------------------

    def on_message(self, topic, payload):
        # runs in the MQTT reader: keep it short, check later
        if len(self.acks) >= MAX_ACKS:
            self.acks.pop(0)
        self.acks.append(bytes(payload))
        self._ack_ev.set()

    def on_reject(self, key, reason):
        if key not in self.set_aside and reason not in (ack.NR_UNKNOWN_DEVICE,
                                                        ack.NR_REVOKED_DEVICE,
                                                        ack.NR_QUARANTINED_DEVICE):
            # our signed word that we keep it and never send it again: the node's acks may
            # then pass it, and free it into the ring (docs/acks.md); once a boot. Not when
            # the node refuses the device itself: the event would be refused too, and so on
            self._event(wire.EV_SET_ASIDE, wire.SEV_WARNING, None, key,
                        ack.NACK_REASONS.index(reason), self.clock.now_us())
        self.set_aside[key] = reason
        self.log("record %s set aside: %s" % (key, reason))

    def check_acks(self):
        while self.acks:
            data = self.acks.pop(0)
            try:
                freed = self.journal.free_through(data, self.node_keys, self.device,
                                                  self.segment)
                self.stats["acks"] += 1
                self.stats["freed"] += freed
                continue
            except ack.AckError as e:
                if e.reason != ack.AR_CTY:
                    self.stats["bad_acks"] += 1
                    self.log("ack refused: %s" % e)
                    continue
            try:
                n = ack.check_nack(data, self.node_keys, self.device)
            except ack.AckError as e:
                self.stats["bad_acks"] += 1
                self.log("NACK refused: %s" % e)
                continue
            self.stats["nacks"] += 1
            # only for our record's own bytes: the node NACKs a topic mismatch before any
            # signature check, so a stranger's bytes under our seq must not set ours aside
            r = self.journal.record_for(n.seq) if n.seq is not None else None
            if r is not None and r[1] == n.tx_id:
                self.client.reject(n.seq, n.reason)
            r = None

    async def acker(self):
        while self._running or self.acks:
            await self._ack_ev.wait()
            self._ack_ev.clear()
            self.check_acks()
            gc.collect()

    def _next_records(self):
        out = []
        g = self.journal.pending()
        try:
            for seq, _id, data in g:
                if seq > self.sent_through and seq not in self.set_aside:
                    out.append((seq, bytes(data)))
                    if len(out) >= SEND_AHEAD:
                        break
        finally:
            g.close()
        return out

    def _check_session(self):
        # a new MQTT session: what the last one carried may have died with the broker
        # (PUBACKed, never delivered), so every record still pending goes out again. The
        # first session carries nothing lost: the client's window sends what it holds.
        # Records in that window at a reconnect go twice; the node takes a repeat as one.
        # Likewise when the link is up and acks have not moved for RESEND_AFTER_MS though
        # records went out: a node that came back after the broker lost its subscription
        # missed them, and nothing else would send them again.
        c = self.client
        k = c.sessions
        now = ticks.ticks_us()
        freed = self.stats["freed"]
        if (freed != self._freed_seen or self.sent_through < 0 or not c.connected
                or not self.journal.pending_bytes()):
            self._freed_seen = freed
            self._progress_us = now
        stalled = ticks.ticks_diff(now, self._progress_us) > RESEND_AFTER_MS * 1000
        if k != self._session or stalled:
            if self._session:
                self.sent_through = -1
                self._progress_us = now
                self.stats["republishes"] = self.stats.get("republishes", 0) + 1
            self._session = k

    async def uplink(self):
        while True:
            self._check_session()
            recs = self._next_records()
            if not recs:
                if not self._running:
                    break
                try:
                    # woken by a new record, or soon enough to notice a new session
                    await asyncio.wait_for_ms(self._new.wait(), RESEND_POLL_MS)
                except asyncio.TimeoutError:
                    pass
                self._new.clear()
                continue
            for seq, data in recs:
                await self.client.publish(self.topic_tx, data, key=seq)
                self.sent_through = seq
            recs = None

    # -- the whole --------------------------------------------------------------

    async def run(self, seconds=None, drain_s=10):
        """Run until ``seconds`` have passed (forever if None); then flush, and wait up to
        ``drain_s`` for the last records' block acks."""
        c = self.client
        c.on_reject = self.on_reject
        c.subscribe(self.topic_ack, self.on_message)
        tasks = [asyncio.create_task(c.run()),
                 asyncio.create_task(self.sampler()),
                 asyncio.create_task(self.batcher()),
                 asyncio.create_task(self.uplink()),
                 asyncio.create_task(self.acker())]
        if seconds is None:
            await tasks[2]
            return self.stats
        await asyncio.sleep_ms(int(seconds * 1000))
        self._running = False
        self._flush.set()
        await tasks[2]
        tasks[1].cancel()
        self.close_window()
        self.heartbeat()
        self._new.set()
        t0 = ticks.ticks_us()
        while self.journal.usage()[1] and ticks.ticks_diff(ticks.ticks_us(), t0) < drain_s * 1000000:
            await asyncio.sleep_ms(100)
        self._ack_ev.set()
        await c.close()
        for t in tasks:
            t.cancel()
        await asyncio.sleep_ms(0)
        self.stats["pending"] = self.journal.usage()[1]
        self.stats["link"] = c.status()
        return self.stats


def reset_cause():
    try:
        import machine

        return machine.reset_cause()
    except (ImportError, AttributeError):
        return 0
