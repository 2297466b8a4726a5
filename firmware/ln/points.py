"""A point map's points as plain values: what the application keeps after the map's parser goes.

The checked ``Config`` (ln.keystore) holds the whole point map, parsed by
lightnode.drivers.pointmap, which costs more heap than a Pico W can keep
beside the application. ``plan`` takes what the application needs once,
as plain values, so the config, the map and the parser can leave the
heap (firmware/main.py drops them). ``quantize`` and ``alarm_state``
give the same integers and states as the map's own (tests/device/
test_points.py holds them together): exact arithmetic on a float's
binary value and the resolution's decimal, so every interpreter agrees.

    from ln import points
    p = points.plan(keystore.load_config())
    pt = p["points"][0]
    v, bad = points.quantize(pt[points.P_RES], 50.0123)   # (50012, 0) at 1 mHz
"""

import binascii
import hashlib
import json
import math

from . import wire
from .fs import read_limited, write_atomic

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_INT32 = 1 << 31  # a window keeps values in an array('i')

# a planned point (plan_point): [id, order, kind, index, resolution, alarm low, alarm high,
# alarm state, alarm low as a ratio, alarm high as a ratio]
P_ID = 0
P_ORDER = 1
P_KIND = 2
P_INDEX = 3
P_RES = 4
P_LOW = 5
P_HIGH = 6
P_STATE = 7
_P_LOW_R = const(8)
_P_HIGH_R = const(9)



_PLAN_FILE = const("plan.json")  # in the keystore's folder, beside config.json
_MAX_PLAN_BYTES = const(16384)


def plan(cfg):
    """The plain values the application keeps of a checked ``Config``, as a dict."""
    from .keystore import map_file

    pm = cfg.pointmap
    return {
        "device": bytes(cfg.device),
        "segment": cfg.segment,
        "node_keys": cfg.node_keys(),
        "broker": (cfg.broker_host, cfg.broker_port, cfg.broker_tls, cfg.username, cfg.password),
        "protocol": pm.protocol,
        "source": pm.source,
        "window_s": pm.window_s,
        "points": [plan_point(p) for p in pm.points],
        "map": map_file(pm.digest()),
    }


def _files_digest(d, map_name):
    # what the plan was made from: config.json, then the point map's file
    h = hashlib.sha256()
    for name in ("config.json", map_name):
        with open(d + "/" + name, "rb") as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                h.update(b)
    return binascii.hexlify(h.digest()).decode()


def save_plan(d, p):
    """Keep plan ``p`` in ``d``/plan.json, tied to the config and map files it was made from.

    Written only from a config just checked in full (``keystore.install_config``,
    or a boot that found no valid plan), so later boots skip the map's parser.
    """
    doc = {
        "files": _files_digest(d, p["map"]),
        "device": binascii.hexlify(p["device"]).decode(),
        "node_keys": [[binascii.hexlify(k).decode(), binascii.hexlify(v[0]).decode(), list(v[1])]
                      for k, v in p["node_keys"].items()],
    }
    for k in ("segment", "broker", "protocol", "source", "window_s", "points", "map"):
        doc[k] = p[k]
    write_atomic(d + "/" + _PLAN_FILE, (json.dumps(doc).encode(),))


def load_plan(d):
    """The plan kept in ``d``/plan.json if it was made from the config and map there now, else None."""
    try:
        doc = json.loads(read_limited(d + "/" + _PLAN_FILE, _MAX_PLAN_BYTES))
        if doc["files"] != _files_digest(d, doc["map"]):
            return None
        doc["device"] = binascii.unhexlify(doc["device"])
        keys = {}
        for kid, pk, roles in doc.pop("node_keys"):
            keys[binascii.unhexlify(kid)] = (binascii.unhexlify(pk), tuple(roles))
        doc["node_keys"] = keys
        doc["broker"] = tuple(doc["broker"])
        return doc
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, torn or from another config: check the config in full


def plan_point(p):
    """``[id, order, kind, index, resolution, low, high, state, low ratio, high ratio]``.

    The resolution and the alarm limits are the map's decimals ``(m, e)``
    (a limit None if the point has none), the ratios the limits exactly as
    ``(num, den)``; the state is the alarm state (None: normal).
    """
    d = p.data()
    rd = d["read"]
    alarm = d.get("alarm") or {}
    low = alarm.get("low")
    high = alarm.get("high")
    return [p.id, p.order, rd.get("kind"), rd.get("index", 0), tuple(d["resolution"]), low, high,
            None, None if low is None else ratio(low), None if high is None else ratio(high)]


def ratio(x):
    """x exactly as ``(num, den > 0)``: an int, a finite float, a decimal ``(m, e)``, a ratio."""
    if isinstance(x, int):
        return x, 1
    if isinstance(x, float):
        f, ex = math.frexp(x)
        m = int(math.ldexp(f, 53))
        ex -= 53
        if ex >= 0:
            return m << ex, 1
        while m and not (m & 1) and ex < 0:  # keeps the integers short on a board
            m >>= 1
            ex += 1
        return m, 1 << -ex
    m, e = x
    return (m * 10 ** e, 1) if e >= 0 else (m, 10 ** -e)


def quantize(res, x):
    """``(integer kept for x at resolution (m, e), quality bits)``: rounded half away from zero.

    A value that is not a finite number is kept as 0, quality invalid; one
    past what a window's array('i') holds is clamped, quality overflow.
    """
    if isinstance(x, float) and x - x != 0:
        return 0, wire.Q_INVALID
    num, den = ratio(x)
    m, e = res
    if e >= 0:
        d = den * m * 10 ** e
    else:
        num *= 10 ** -e
        d = den * m
    q, r = divmod(abs(num), d)
    if 2 * r >= d:
        q += 1
    if num < 0:
        q = -q
    if q >= _INT32:
        return _INT32 - 1, wire.Q_OVERFLOW
    if q < -_INT32:
        return -_INT32, wire.Q_OVERFLOW
    return q, 0


def alarm_state(pt, x):
    """"low" below the point's alarm low, "high" above its alarm high, else None."""
    num, den = ratio(x)
    lim = pt[_P_LOW_R]
    if lim is not None and num * lim[1] < lim[0] * den:
        return "low"
    lim = pt[_P_HIGH_R]
    if lim is not None and num * lim[1] > lim[0] * den:
        return "high"
    return None
