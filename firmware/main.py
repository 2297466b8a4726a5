"""The board's entry: boot the keystore, load the config, run the application.

Besides the provisioned config, the board keeps ``/lightnode/app.json``:
where the point map's source answers and the application's settings,

    {"source": {"host": "192.0.2.7", "port": 4712}, "window_s": 5, "heartbeat_every": 2}

(``window_s`` defaults to the map's, else 5 s; ``heartbeat_every`` to 2
windows). Under the unix port, the first argument is how many seconds to
run (``-`` or none: forever), the second the board's default window; the run ends by printing its counters as one
``@@LN {...}`` line.
"""

import gc
import json
import sys

gc.collect()

APP_FILE = "app.json"
JOURNAL_DIR = "journal"
JOURNAL_QUOTA = 400000  # bytes of pending records; the ring gets a quarter more
DEFAULT_WINDOW_S = 5
DEFAULT_HEARTBEAT_EVERY = 2


def _settings(root):
    from ln import keystore

    with open(root + keystore.DIR + "/" + APP_FILE) as f:
        s = json.loads(f.read())
    src = s["source"]
    return (src["host"], int(src["port"])), s


def _ensure_dir(path):
    import os

    try:
        os.mkdir(path)
    except OSError:
        pass


def main(seconds=None, window_s=None):
    import asyncio

    # code and large buffers first: after the config's parse the heap is fragmented
    from ln import VERSION, app, journal, keystore, mqtt

    gc.collect()
    rec_buf = bytearray(journal.wire.MAX_TX_BYTES)
    root = keystore.default_root()
    ident = keystore.read_identity(root) or {}
    board = ident.get("board") or sys.platform
    keystore.boot(board, VERSION, root, stands_in_for=ident.get("stands_in_for"))
    cfg = keystore.load_config(root)
    source, s = _settings(root)
    window_s = s.get("window_s") or cfg.pointmap.window_s or window_s or DEFAULT_WINDOW_S
    gc.collect()
    jdir = root + keystore.DIR + "/" + JOURNAL_DIR
    _ensure_dir(jdir)
    j = journal.Journal(jdir, JOURNAL_QUOTA, buf=rec_buf)
    ssl = None
    if cfg.broker_tls:
        with open(root + keystore.DIR + "/ca.der", "rb") as f:
            ssl = mqtt.tls_context(f.read())
    dev_hex = "".join("%02x" % b for b in cfg.device)
    client = mqtt.Client(cfg.broker_host, cfg.broker_port, dev_hex, user=cfg.username,
                         password=cfg.password, ssl=ssl, keepalive=30)
    key = keystore.signing_key(root)
    gc.collect()
    a = app.App(cfg, key, j, client, source, window_s=window_s,
                heartbeat_every=s.get("heartbeat_every", DEFAULT_HEARTBEAT_EVERY),
                reset_cause=app.reset_cause(), log=lambda m: print("lightnode:", m))
    print("lightnode: device %s, segment %s, window %s s, source %s:%d, %d records pending"
          % (dev_hex, cfg.segment, window_s, source[0], source[1], j.usage()[1]))
    stats = asyncio.run(a.run(seconds))
    j.close()
    print("@@LN " + json.dumps(stats))
    return stats


if __name__ == "__main__":
    _a = sys.argv[1:]
    main(float(_a[0]) if _a and _a[0] != "-" else None, float(_a[1]) if len(_a) > 1 else None)
