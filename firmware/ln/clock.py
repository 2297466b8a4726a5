"""The device clock: microseconds since 1970, disciplined on ``ticks_us``.

Time is the last sync point plus the ticks elapsed since, corrected by the
crystal's frequency error (estimated from successive syncs). A large
offset is stepped at once and returned, so the caller records an event; a
small one is slewed out at a bounded rate, so time never runs backwards.

The wrap rule: ``ticks_us`` wraps every 2**30 us (17.9 min) and a tick
difference is only right within half of that. Every ``now_us()`` folds the
elapsed ticks into a running total, and so does ``touch()``: call one of
them at least once every ``MAX_FEED_US`` (8.9 min) - the main loop does.
A longer gap is detected where it can be (ticks seen going backwards) and
the clock then says ``TQ_UNSYNCED`` until the next sync.

    from ln import clock, sntp
    c = clock.Clock()
    step = c.sync_sample(sntp.query(server, now_us=c.now_us))
    if step is not None:
        record_event(...)              # the clock jumped by ``step`` us
    t, quality, uncertainty = c.stamp()
"""

from lightnode.drivers import ticks
from ln import wire

MAX_FEED_US = ticks.PERIOD >> 1
STEP_US = 128000  # offsets above this are stepped (ntpd's step threshold)
SLEW_PPM = 500  # the rate a small offset is slewed out at
MAX_PPM = 500  # bound of the frequency correction
WANDER_PPM = 100  # how fast error may grow before the frequency is known
TRACKED_PPM = 10  # ... and after (temperature, ageing)
MIN_FREQ_INTERVAL_US = 16000000  # shorter sync intervals teach little of the frequency
HOLDOVER_US = 3600000000  # NTP quality kept this long after the last sync
UNKNOWN_US = (1 << 64) - 1  # uncertainty of a clock never set: no bound


class Clock:
    """Wall time from ``ticks_us``; ``initial_us`` is the time before any sync
    (the RTC's, if the board has one), reported as ``TQ_UNSYNCED``."""

    def __init__(
        self,
        initial_us=None,
        step_us=STEP_US,
        max_ppm=MAX_PPM,
        holdover_us=HOLDOVER_US,
        min_freq_interval_us=MIN_FREQ_INTERVAL_US,
    ):
        if initial_us is None:
            initial_us = _rtc_us()
        self.step_us = step_us
        self.max_ppm = max_ppm
        self.holdover_us = holdover_us
        self.min_freq_interval_us = min_freq_interval_us
        self.freq_ppb = 0  # our ticks run slow by this: add it
        self.freq_known = False
        self.synced = False
        self.lost = False  # the ticks were not fed within half a period
        self.steps = 0
        self._base_unc = UNKNOWN_US
        self._last_sync_us = None  # local time of the last sync, for frequency
        self._rebase(initial_us)

    def _rebase(self, base_us):
        self._base = base_us  # wall time at the reference tick
        self._last = ticks.ticks_us()
        self._elapsed = 0  # ticks from the reference to _last, unwrapped
        self._slew = 0  # offset still to slew out, us (signed)

    def touch(self):
        """Fold the ticks since the last call into the running total."""
        now = ticks.ticks_us()
        d = ticks.ticks_diff(now, self._last)
        if d < 0:  # over half a period unfed: how much is gone is unknown
            self.lost = True
            d = 0
        self._elapsed += d
        self._last = now

    def _slewed(self, elapsed):
        # The part of the pending offset slewed out after ``elapsed`` us.
        s = self._slew
        most = elapsed * SLEW_PPM // 1000000
        return s if -most <= s <= most else (most if s > 0 else -most)

    def _corrected(self, elapsed):
        return elapsed + elapsed * self.freq_ppb // 1000000000 + self._slewed(elapsed)

    def now_us(self):
        """Microseconds since 1970 by this clock (never decreasing between steps)."""
        self.touch()
        return self._base + self._corrected(self._elapsed)

    def since_sync_us(self):
        self.touch()
        return self._elapsed

    def sync(self, offset_us, delay_us=0, root_delay_us=0, root_disp_us=0):
        """Take a measured offset (true time minus ours, us).

        Returns the step in us when the clock was stepped (first sync, or
        |offset| above ``step_us``), else None (the offset is slewed).
        """
        now = self.now_us()
        left = self._pending()
        stepped = not self.synced or self.lost or abs(offset_us) > self.step_us
        if not stepped and self._last_sync_us is not None:
            interval = now - self._last_sync_us
            if interval >= self.min_freq_interval_us:
                drift = offset_us - left  # what the frequency error made
                f = self.freq_ppb + drift * 1000000000 // interval
                bound = self.max_ppm * 1000
                self.freq_ppb = -bound if f < -bound else (bound if f > bound else f)
                self.freq_known = True
        self._rebase(now + offset_us if stepped else now)
        if stepped:
            self.steps += 1
        else:
            self._slew = offset_us
        self._last_sync_us = self._base
        self.synced = True
        self.lost = False
        self._base_unc = delay_us // 2 + root_delay_us // 2 + root_disp_us
        return offset_us if stepped else None

    def sync_sample(self, sample):
        """``sync`` with an ``ln.sntp.Sample``."""
        return self.sync(
            sample.offset_us, sample.delay_us, sample.root_delay_us, sample.root_disp_us
        )

    def _pending(self):
        return self._slew - self._slewed(self._elapsed)

    def quality(self):
        """(wire TQ code, uncertainty us) of ``now_us()`` at this moment.

        uncertainty = delay/2 + root delay/2 + root dispersion (at the sync)
        + offset not yet slewed out + wander ppm x time since the sync.
        """
        elapsed = self.since_sync_us()
        if not self.synced or self.lost:
            return wire.TQ_UNSYNCED, UNKNOWN_US
        ppm = TRACKED_PPM if self.freq_known else WANDER_PPM
        unc = self._base_unc + abs(self._pending()) + elapsed * ppm // 1000000
        if elapsed > self.holdover_us:
            return wire.TQ_UNSYNCED, unc
        return wire.TQ_NTP, unc

    def stamp(self, source_us=None, source_unc_us=None):
        """The transaction time field: (us since 1970, TQ code, uncertainty us).

        With the device's own timestamp (a PMU's SOC/FRACSEC, an MMS
        report's entry time) it is preferred: ``TQ_SOURCE`` with the
        source's uncertainty (or ours, when the source gives none).
        """
        if source_us is not None:
            if source_unc_us is None:
                source_unc_us = self.quality()[1]
            return source_us, wire.TQ_SOURCE, source_unc_us
        t = self.now_us()
        q, u = self.quality()
        return t, q, u


def _rtc_us():
    import time

    if hasattr(time, "time_ns"):
        return time.time_ns() // 1000
    return int(time.time()) * 1000000
