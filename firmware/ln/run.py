"""The application's start, precompiled with the rest of ``ln``: config, journal, uplink, loop.

firmware/main.py (compiled from source at every boot, so kept small)
calls ``main``. Besides the provisioned config, the board keeps
``/lightnode/app.json``: where the point map's source answers and the
application's settings,

    {"source": {"host": "192.0.2.7", "port": 4712}, "window_s": 5, "heartbeat_every": 2}

(``window_s`` defaults to the map's, else the board's, else 5 s;
``heartbeat_every`` to 2 windows). The run ends by printing its counters
as one ``@@LN {...}`` line.

    from ln import run
    run.main(seconds=60, window_s=5)
"""

import gc
import json
import sys

APP_FILE = "app.json"
JOURNAL_DIR = "journal"
JOURNAL_QUOTA = 196608  # without a board.json: the smallest board's (pico_w); the ring a quarter more
DEFAULT_WINDOW_S = 5
DEFAULT_HEARTBEAT_EVERY = 2
READ_BUF = 4096  # the journal's record buffer: a usual record; a longer one gets its own
GC_THRESHOLD = 8192  # bytes allocated between collections
MQTT_WINDOW = 4  # publishes in flight: each holds its record's bytes until PUBACK


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


def _configure(window_s):
    """Boot the keystore and read the board's config: plain values, the parser not kept."""
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
    source, s = _settings(root)
    plan["window_s"] = s.get("window_s") or plan["window_s"] or window_s or DEFAULT_WINDOW_S
    plan["app"] = s
    plan["app_source"] = source
    plan["root"] = root
    plan["dir"] = root + keystore.DIR
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


def _start(plan, rec_buf, client, log):
    """The application, made from the plan: journal, sampler, batcher, uplink."""
    from ln import app, journal

    s = plan["app"]
    jdir = plan["dir"] + "/" + JOURNAL_DIR
    _ensure_dir(jdir)
    j = journal.Journal(jdir, _quota(plan), buf=rec_buf)
    source = plan["app_source"]
    a = app.App(plan, plan["key"], j, client, source, window_s=plan["window_s"],
                heartbeat_every=s.get("heartbeat_every", DEFAULT_HEARTBEAT_EVERY),
                reset_cause=app.reset_cause(), log=log)
    log("device %s, segment %s, window %s s, source %s:%d, %d records pending"
        % ("".join("%02x" % b for b in plan["device"]),
           plan["segment"], plan["window_s"], source[0], source[1], j.usage()[1]))
    return a


def main(seconds=None, window_s=None):
    import asyncio

    gc.collect()
    base = gc.mem_alloc()  # what the heap held before the application (heap_* counters less this)
    # large buffers first, while the heap is whole: the journal's, then the uplink's
    rec_buf = bytearray(READ_BUF)
    plan = _configure(window_s)
    # the keystore ran once: the plan keeps plain values
    _forget("ln.keystore")
    gc.collect()
    client = _client(plan)
    gc.collect()
    a = _start(plan, rec_buf, client, lambda m: print("lightnode:", m))
    plan = None
    gc.collect()
    # collect after every few KB allocated: garbage is freed before it spreads long-lived
    # objects over the heap (a late allocation fails in a fragmented heap, not a full one)
    gc.threshold(GC_THRESHOLD)
    a.stats["heap_base"] = base
    stats = asyncio.run(a.run(seconds))
    a.journal.close()
    print("@@LN " + json.dumps(stats))
    return stats
