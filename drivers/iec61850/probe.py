"""What ``lightnode probe mms`` does, in plain values, on CPython and on a board.

    from lightnode.drivers.iec61850 import client, probe
    m = client.MmsClient("127.0.0.1", 102)
    out = probe.discover(m)      # {"params": ..., "devices": {LD: {"nodes": [...], "data_sets": [...]}}}
    m.close()
"""

from . import mms
from .client import split_ref

DBPOS = ("intermediate", "on", "off", "bad")  # by bit value (bit 0 first): 00, 10, 01, 11


def plain(v):
    """An MMS value as JSON-able data: times as seconds, bit strings as their bits."""
    if isinstance(v, mms.UtcTime):
        return {"utc": v.secs + v.frac / 16777216.0, "tq": v.q}
    if isinstance(v, mms.Bits):
        return {"bits": v.value, "size": v.size}
    if isinstance(v, mms.AccessError):
        return {"access_error": v.code}
    if isinstance(v, bytes):
        return {"hex": "".join("%02x" % b for b in v)}
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    return v


def discover(m):
    params = m.associate()
    out = {"params": params, "devices": {}}
    for ld in m.logical_devices():
        out["devices"][ld] = {"nodes": m.logical_nodes(ld), "data_sets": m.data_sets(ld)}
    return out


def read(m, ref, fc):
    m.associate()
    split_ref(ref, fc)
    return {"ref": ref, "fc": fc.upper(), "value": plain(m.read(ref, fc))}


def report_plain(r):
    return {"rpt_id": r.rpt_id, "seq": r.seq_num, "gap": r.gap,
            "entry_id": plain(r.entry_id) if r.entry_id is not None else None,
            "time_of_entry_ms": r.time_of_entry, "data_set": r.data_set,
            "conf_rev": r.conf_rev, "buf_ovfl": r.buf_ovfl,
            "members": [{"index": i, "ref": ref, "value": plain(v),
                         "reason": why.value if why is not None else None}
                        for i, ref, v, why in r.members]}


def report(m, rcb, seconds, integrity_ms=None, ticks=None, emit=None, keep=1000):
    """Enable ``rcb``, listen for ``seconds``, disable it.

    ``emit`` sees each report as it comes; at most ``keep`` are returned
    (a board emits them and keeps none).
    """
    if ticks is None:
        from lightnode.drivers import ticks
    m.associate()
    m.enable_report(rcb, integrity_ms=integrity_ms, gi=True)
    reports = []
    count = 0
    t0 = ticks.ticks_us()
    end_ms = int(seconds * 1000)
    while True:
        left = end_ms - ticks.ticks_diff(ticks.ticks_us(), t0) // 1000
        if left <= 0:
            break
        r = m.wait_report(left)
        if r is None:
            break
        count += 1
        p = report_plain(r)
        if emit is not None:
            emit(p)
        if len(reports) < keep:
            reports.append(p)
        p = r = None
    m.disable_report(rcb)
    return {"rcb": rcb, "count": count, "reports": reports, "gaps": m.gaps, "dropped": m.reports_dropped}
