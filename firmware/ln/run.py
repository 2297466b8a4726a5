"""The application's start, precompiled with the rest of ``ln``: boot, config, journal, uplink, loop.

firmware/main.py (compiled from source at every boot, so kept small)
calls ``main``. ``main`` first decides the boot (``ln.boot``: normal,
safe after repeated crashes or with the board's safe-mode pin held, or a
rollback), starts the watchdog, installs an uploaded update bundle if
one waits, then runs the application, the active slot's if an update is
active (its ``ln.run.start``). An uncaught exception is written to the
crash log on flash before it ends the run. docs/updates.md has the rules.

Besides the provisioned config, the board keeps ``/lightnode/app.json``:
where the point map's source answers and the application's settings,

    {"source": {"host": "192.0.2.7", "port": 4712}, "window_s": 5, "heartbeat_every": 2,
     "ntp": {"host": "192.0.2.1", "port": 123}}

(``window_s`` defaults to the map's, else the board's, else 5 s;
``heartbeat_every`` to 2 windows; without ``ntp`` the clock is not
synced). The board's facts (``safe_mode_pin``, ``watchdog_max_ms``,
``journal_quota_bytes``) come from the ``board.json`` flashing puts at
its root. The run ends by printing its counters as one ``@@LN {...}`` line.

    from ln import run
    run.main(seconds=60, window_s=5)
"""

import gc
import json
import sys

APP_FILE = "app.json"
BOARD_FILE = "board.json"
UPDATE_FILE = "update.bin"  # an uploaded bundle, in the keystore's folder: installed at boot
JOURNAL_DIR = "journal"
JOURNAL_QUOTA = 196608  # without a board.json: the smallest board's (pico_w); the ring a quarter more
DEFAULT_WINDOW_S = 5
DEFAULT_HEARTBEAT_EVERY = 2
READ_BUF = 4096  # the journal's record buffer: a usual record; a longer one gets its own
GC_THRESHOLD = 8192  # bytes allocated between collections
MQTT_WINDOW = 4  # publishes in flight: each holds its record's bytes until PUBACK
WATCHDOG_MS = 8000  # without a board.json: inside every board's longest (rp2: 8388 ms)
SAFE_HEARTBEAT_S = 60  # a heartbeat this often in safe mode
SAFE_VERSION = "+safe"  # added to the version a safe-mode heartbeat names (semver build metadata)
NTP_EVERY_S = 600  # between SNTP queries
NTP_RETRY_S = 30  # after a failed one
NTP_TIMEOUT_MS = 1500  # a query blocks the loop this long at most (UDP, socket timeout)
NTP_SAMPLES = 3  # replies asked for; the one with the least delay is kept


def _settings(root):
    from ln.keystore import DIR

    with open(root + DIR + "/" + APP_FILE) as f:
        s = json.loads(f.read())
    src = s["source"]
    return (src["host"], int(src["port"])), s


def _ensure_dir(path):
    import os

    try:
        os.mkdir(path)
    except OSError:
        pass


def _forget(name):
    # drop a module nothing refers to any more: its code and tables leave the heap
    sys.modules.pop(name, None)
    pkg, _, leaf = name.rpartition(".")
    parent = sys.modules.get(pkg)
    if parent is not None and leaf in parent.__dict__:
        delattr(parent, leaf)


def _configure(window_s, safe=False):
    """Boot the keystore and read the board's config: plain values, the parser not kept.

    In safe mode a missing or broken app.json is no reason to stop: the
    uplink needs only the provisioned config.
    """
    from ln import VERSION, keystore, points

    root = keystore.default_root()
    ident = keystore.read_identity(root) or {}
    board = ident.get("board") or sys.platform
    keystore.boot(board, VERSION, root, stands_in_for=ident.get("stands_in_for"))
    plan = points.load_plan(root + keystore.DIR)
    if plan is None:
        # no plan made from this config yet: check it in full (the map's parser), keep the plan
        plan = points.plan(keystore.load_config(root))
        points.save_plan(root + keystore.DIR, plan)
    try:
        source, s = _settings(root)
    except (OSError, ValueError, KeyError, TypeError):
        if not safe:
            raise
        source, s = ("-", 0), {}
    plan["window_s"] = s.get("window_s") or plan["window_s"] or window_s or DEFAULT_WINDOW_S
    plan["app"] = s
    plan["app_source"] = source
    plan["root"] = root
    plan["dir"] = root + keystore.DIR
    plan["board"] = board
    plan["key"] = keystore.signing_key(root)
    return plan


def _client(plan):
    """The uplink's MQTT client: its receive buffer is the largest allocation after the journal's."""
    from ln import mqtt

    host, port, tls, user, password = plan["broker"]
    ssl = None
    if tls:
        with open(plan["dir"] + "/ca.der", "rb") as f:
            ssl = mqtt.tls_context(f.read())
    dev_hex = "".join("%02x" % b for b in plan["device"])
    return mqtt.Client(host, port, dev_hex, user=user, password=password, ssl=ssl,
                       keepalive=30, window=MQTT_WINDOW)


def _quota(plan):
    """Bytes of pending records: app.json's "journal_quota_bytes" (tests), else the board's
    board.json (put at its root by flashing), else JOURNAL_QUOTA (a unix board has none)."""
    q = plan["app"].get("journal_quota_bytes")
    if q:
        return int(q)
    try:
        with open(plan["root"] + "/board.json") as f:
            return int(json.loads(f.read())["journal_quota_bytes"])
    except (OSError, ValueError, KeyError):
        return JOURNAL_QUOTA


def _start(plan, rec_buf, client, log, cause, clock=None, firmware=None):
    """The application, made from the plan: journal, sampler, batcher, uplink."""
    from ln import app, journal

    if firmware is not None:
        # the heartbeat names the module's VERSION: a safe-mode run says so there
        app.VERSION = firmware
    s = plan["app"]
    jdir = plan["dir"] + "/" + JOURNAL_DIR
    _ensure_dir(jdir)
    j = journal.Journal(jdir, _quota(plan), buf=rec_buf)
    source = plan["app_source"]
    a = app.App(plan, plan["key"], j, client, source, clock=clock, window_s=plan["window_s"],
                heartbeat_every=s.get("heartbeat_every", DEFAULT_HEARTBEAT_EVERY),
                reset_cause=cause, log=log)
    log("device %s, segment %s, window %s s, source %s:%d, %d records pending"
        % ("".join("%02x" % b for b in plan["device"]),
           plan["segment"], plan["window_s"], source[0], source[1], j.usage()[1]))
    return a


# -- the board: facts, pins, reset cause, watchdog, RTC -------------------------------------


def _machine():
    try:
        import machine

        return machine
    except ImportError:
        return None


def _facts(root):
    """The board.json facts start-up needs (an empty dict without the file)."""
    try:
        with open(root + "/" + BOARD_FILE) as f:
            d = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return {"safe_mode_pin": d.get("safe_mode_pin"), "watchdog_max_ms": d.get("watchdog_max_ms")}


def _safe_pin(machine, pin):
    """True if the safe-mode pin is held to GND (it has a pull-up): read once, at boot."""
    if pin is None or machine is None or not hasattr(machine, "Pin"):
        return False
    p = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
    return p.value() == 0


def _cause(machine):
    f = getattr(machine, "reset_cause", None)
    return f() if f is not None else 0  # the unix port's own machine has none: 0, unknown


def _watchdog(machine, facts):
    """The board's watchdog at its longest timeout, or None where there is none."""
    wdt = getattr(machine, "WDT", None)
    if wdt is None:
        return None
    return wdt(timeout=facts.get("watchdog_max_ms") or WATCHDOG_MS)


def _rtc_us(machine):
    """The RTC's time (us since 1970) the clock starts from; None: the clock's own default."""
    rtc = getattr(machine, "RTC", None)
    if rtc is None:
        return None
    import time

    d = rtc().datetime()  # (year, month, day, weekday, hours, minutes, seconds, subseconds)
    return time.mktime((d[0], d[1], d[2], d[4], d[5], d[6], 0, 0)) * 1000000


def _reset(root):
    """Reset the board on purpose (an update installed, a trial overdue): not counted as a crash."""
    from ln import boot

    boot.planned_reset(root)
    m = _machine()
    if m is not None and hasattr(m, "reset"):
        m.reset()
    raise SystemExit(0)  # the unix port: the process ends, its supervisor starts it again


# -- boot -------------------------------------------------------------------------------------


def main(seconds=None, window_s=None):
    """Decide the boot, start the watchdog, run the application (or safe mode); log a crash."""
    from ln import boot
    from ln.fs import default_root

    root = default_root()
    machine = _machine()
    facts = _facts(root)
    cause = _cause(machine)
    mode = boot.decide(root, safe_pin=_safe_pin(machine, facts.get("safe_mode_pin")),
                       reset_cause=cause)
    print("lightnode: boot %s, reset cause %s" % (mode, cause))
    wdt = _watchdog(machine, facts)
    try:
        path = boot.app_path(root) if mode != boot.SAFE else None
        if path is None:
            return start(mode, cause, wdt, seconds, window_s)
        # an update is active: its own ln runs, from its slot
        for k in list(sys.modules):
            if k == "ln" or k.startswith("ln.") or k == "lightnode" or k.startswith("lightnode."):
                del sys.modules[k]
        sys.path.insert(0, path)
        slot = __import__("ln.run").run
        return slot.start(mode, cause, wdt, seconds, window_s)
    except Exception as e:  # KeyboardInterrupt and SystemExit are not crashes
        pe = getattr(sys, "print_exception", None)
        if pe is not None:
            pe(e)  # shown even when the crash log cannot be written (out of heap)
        boot.record_crash(e, root)
        raise


def start(mode, cause, wdt, seconds=None, window_s=None):
    """Run the application after ``main`` decided the boot (a slot's entry: keep the signature)."""
    import asyncio

    from ln import boot

    gc.collect()
    base = gc.mem_alloc()  # what the heap held before the application (heap_* counters less this)
    # large buffers first, while the heap is whole: the journal's, then the uplink's
    rec_buf = bytearray(READ_BUF)
    safe = mode == boot.SAFE
    st = boot.load()
    trial = st["trial"]
    unhealthy = st["unhealthy"]
    _forget("ln.boot")
    st = None
    if safe:
        return _safe(seconds, window_s, cause, wdt, rec_buf, unhealthy)
    plan = _configure(window_s)
    # the keystore ran once: the plan keeps plain values
    _forget("ln.keystore")
    gc.collect()
    if _install_upload(plan, wdt):
        _reset(plan["root"])
    client = _client(plan)
    gc.collect()
    ntp = plan["app"].get("ntp")
    a = _start(plan, rec_buf, client, lambda m: print("lightnode:", m), cause,
               clock=_clock(_machine()))
    root = plan["root"]
    plan = None
    gc.collect()
    # collect after every few KB allocated: garbage is freed before it spreads long-lived
    # objects over the heap (a late allocation fails in a fragmented heap, not a full one)
    gc.threshold(GC_THRESHOLD)
    a.stats["heap_base"] = base
    stats = asyncio.run(_run(a, wdt, root, trial, ntp, seconds))
    a.journal.close()
    print("@@LN " + json.dumps(stats))
    return stats


def _clock(machine):
    t = _rtc_us(machine)
    if t is None:
        return None  # the application makes its own
    from ln.clock import Clock

    return Clock(initial_us=t)


def _install_upload(plan, wdt):
    """Install an uploaded bundle (``/lightnode/update.bin``) if there is one; True if installed.

    The file is removed either way: a refused bundle is logged, never tried again.
    """
    from ln import fs

    path = plan["dir"] + "/" + UPDATE_FILE
    if not fs.exists(path):
        return False
    from ln import boot, update

    ok = False
    try:
        with open(path, "rb") as f:
            info = update.install(f, plan["node_keys"], None, root=plan["root"], board=plan["board"],
                                  feed=wdt.feed if wdt is not None else None)
        print("lightnode: update %s installed in slot %s" % (info["version"], info["slot"]))
        ok = True
    except update.UpdateError as e:
        boot.log("update refused: %s" % e, plan["root"])
        print("lightnode: update refused: %s" % e)
    fs.remove(path)
    _forget("ln.update")
    gc.collect()
    return ok


# -- the tasks beside the application ---------------------------------------------------------


def _died(loop, ctx):
    # a task ended by an exception nobody awaits: end the run with it (crash log, non-zero
    # exit; a board resets) rather than limp on without a sampler or an uplink
    raise ctx["exception"]


async def _run(a, wdt, root, trial, ntp, seconds):
    import asyncio

    asyncio.get_event_loop().set_exception_handler(_died)
    tasks = [asyncio.create_task(_keeper(a, wdt, root, trial))]
    if ntp:
        tasks.append(asyncio.create_task(_timesync(a, ntp)))
    try:
        return await a.run(seconds)
    finally:
        for t in tasks:
            t.cancel()


def _feed_ms(wdt):
    # a quarter of the timeout: three feeds may be late before the board resets
    return min(1000, (getattr(wdt, "timeout", None) or WATCHDOG_MS) // 4) if wdt else 1000


async def _keeper(a, wdt, root, trial):
    """Feed the watchdog; mark the boot healthy after the first acknowledged heartbeat; reset a
    slot on trial that is not healthy in time (``ln.boot.TRIAL_MS``)."""
    import asyncio
    import time

    from ln import boot

    trial_ms = boot.TRIAL_MS
    boot = None
    _forget("ln.boot")
    t0 = time.ticks_ms()
    every = _feed_ms(wdt)
    hb_seq = None  # a seq at or after the first heartbeat's
    healthy = False
    while True:
        if wdt is not None:
            wdt.feed()
        if not healthy:
            if hb_seq is None:
                if a.stats["heartbeats"]:
                    hb_seq = a.stats["last_seq"]
            elif a.journal._freed > hb_seq:  # a block ack freed the heartbeat: the ledger has it
                from ln import boot

                boot.mark_healthy(root)
                boot = None
                _forget("ln.boot")
                healthy = True
                trial = False
                a.stats["healthy_ms"] = time.ticks_diff(time.ticks_ms(), t0)
                a.log("healthy: a heartbeat was acknowledged")
            if trial and time.ticks_diff(time.ticks_ms(), t0) > trial_ms:
                a.log("the update on trial was not healthy in time: reset")
                _reset(root)
        elif wdt is None:
            return  # nothing left to do
        await asyncio.sleep_ms(every)


# -- time -------------------------------------------------------------------------------------


def _sync_once(a, host, port, threshold_us):
    """One SNTP query against the application's clock; the step (us) if it was stepped by at
    least ``threshold_us`` (then signed as an EV_CLOCK_STEP event), else None."""
    from ln import sntp, wire

    c = a.clock
    s = sntp.query(host, port, now_us=c.now_us, samples=NTP_SAMPLES, timeout_ms=NTP_TIMEOUT_MS)
    step = c.sync_sample(s)
    if step is None or abs(step) < threshold_us:
        return None
    a._event(wire.EV_CLOCK_STEP, wire.SEV_WARNING, None, step, threshold_us, c.now_us())
    return step


async def _timesync(a, cfg):
    """Keep the clock on app.json's NTP server: at once, then every ``every_s`` (docs/time.md)."""
    import asyncio

    from ln import clock, sntp

    host, port = cfg["host"], int(cfg.get("port", 123))
    every = int(cfg.get("every_s") or NTP_EVERY_S)
    retry = int(cfg.get("retry_s") or NTP_RETRY_S)
    ms = cfg.get("step_event_ms")
    threshold = clock.STEP_US if ms is None else int(ms) * 1000
    st = a.stats
    st["ntp_syncs"] = st["ntp_steps"] = 0
    while True:
        try:
            step = _sync_once(a, host, port, threshold)
            st["ntp_syncs"] += 1
            if step is not None:
                st["ntp_steps"] += 1
                a.log("clock stepped by %d us (NTP %s:%d)" % (step, host, port))
            wait = every
        except (sntp.SntpError, OSError) as e:
            a.log("NTP %s:%d: %s" % (host, port, e))
            wait = retry
        await asyncio.sleep_ms(wait * 1000)


# -- safe mode --------------------------------------------------------------------------------


def _crash_id(root):
    """CRC-32 of the last crash entry in the crash log (0 if none): the safe-mode event names it."""
    import binascii

    from ln import boot

    for line in reversed(boot.crash_log(root)):
        if " crash " in line:
            return binascii.crc32(line.encode()) & 0xFFFFFFFF
    return 0


def _safe(seconds, window_s, cause, wdt, rec_buf, unhealthy):
    """Safe mode: no sampling. Keep the journal, connect, sign a heartbeat (its version ending
    "+safe") and an EV_SAFE_MODE event naming the crash, then wait for an update or a reset."""
    import asyncio

    from ln import VERSION, fs

    root = fs.default_root()
    log = lambda m: print("lightnode:", m)  # noqa: E731
    a = plan = None
    every = SAFE_HEARTBEAT_S
    try:
        plan = _configure(window_s, safe=True)
        _forget("ln.keystore")
        gc.collect()
        if _install_upload(plan, wdt):
            _reset(root)
        a = _start(plan, rec_buf, _client(plan), log, cause, firmware=VERSION + SAFE_VERSION)
        every = plan["app"].get("safe_heartbeat_s") or SAFE_HEARTBEAT_S
    except Exception as e:  # noqa: BLE001 - safe mode stays up, offline, waiting for a reset
        from ln import boot

        boot.record_crash(e, root)
        log("safe mode offline: %r" % (e,))
    gc.collect()
    stats = asyncio.run(_safe_loop(a, plan, wdt, root, unhealthy, every, seconds))
    if a is not None:
        a.journal.close()
    print("@@LN " + json.dumps(stats))
    return stats


async def _safe_loop(a, plan, wdt, root, unhealthy, every_s, seconds):
    import asyncio
    import time

    from ln import fs, wire

    asyncio.get_event_loop().set_exception_handler(_died)
    tasks = []
    if a is not None:
        c = a.client
        c.on_reject = a.on_reject
        c.subscribe(a.topic_ack, a.on_message)
        tasks = [asyncio.create_task(c.run()), asyncio.create_task(a.uplink()),
                 asyncio.create_task(a.acker())]
        a.heartbeat()  # first: a reboot's skipped numbers are recorded under it
        a._event(wire.EV_SAFE_MODE, wire.SEV_CRITICAL, None, unhealthy, _crash_id(root),
                 a.clock.now_us())
        a.close_window()
        a.log("safe mode: %d crashes in a row; waiting for an update" % unhealthy)
    t0 = last = time.ticks_ms()
    every = _feed_ms(wdt)
    while seconds is None or time.ticks_diff(time.ticks_ms(), t0) < seconds * 1000:
        if wdt is not None:
            wdt.feed()
        if plan is not None and fs.exists(plan["dir"] + "/" + UPDATE_FILE):
            if _install_upload(plan, wdt):
                _reset(root)  # the next boot switches to it
        if a is not None and time.ticks_diff(time.ticks_ms(), last) >= every_s * 1000:
            last = time.ticks_ms()
            a.heartbeat()
        await asyncio.sleep_ms(every)
    stats = {"mode": "safe"}
    if a is not None:
        t1 = time.ticks_ms()
        while a.journal.usage()[1] and time.ticks_diff(time.ticks_ms(), t1) < 10000:
            await asyncio.sleep_ms(100)
        await a.client.close()
        stats.update(a.stats)
        stats["mode"] = "safe"
        stats["pending"] = a.journal.usage()[1]
    for t in tasks:
        t.cancel()
    await asyncio.sleep_ms(0)
    return stats
