"""What a run must show, checked against the stores: attacks detected, nothing legitimate lost.

Two things are checked in every run, whatever the scenario file says:

- ``no_loss``: every transaction a light node signed legitimately is
  committed exactly once, with its own id (the fleet's own record of what
  it signed against the stores; after a wiped producer, against the
  witnesses' copies too);
- ``attack_detected`` for every attack: for attacks made of transactions
  (spoofed, replayed, tampered, revoked, cloned, flood) each injected
  transaction is refused with the right reason (counted per source and
  reason in the store's rejections) or flagged, and a replay on its own
  topic takes no second entry; for the others (GPS spoofing, a stolen
  credential, a wiped node) the attack's flag kind is raised.

Then the file's own ``[[expect]]`` entries (``attack_detected`` with a
reason/flag and ``within_s``, ``no_time_flags``, ``flag``,
``event_committed``, ``no_loss``).

    attack = evaluate_attack(injector, store_rejections, [(node, Flag), ...], runner)
    results = check(scenario, record, runner)     # [{"name", "met", "detail"}, ...]
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from lightnode.firmware.ln import wire as spec

__all__ = ["TIME_FLAGS", "check", "evaluate_attack"]

# the node's time-anomaly flags (lightnode.node.analysis), and the ledger's own clock-back
TIME_FLAGS = ("angle-drift", "time-step", "clock-bracket", "clock-back")
EVENT_TYPES = {
    "alarm_high": spec.EV_ALARM_HIGH, "alarm_low": spec.EV_ALARM_LOW,
    "alarm_clear": spec.EV_ALARM_CLEAR, "comm_loss": spec.EV_COMM_LOSS,
    "comm_restored": spec.EV_COMM_RESTORED, "status": spec.EV_STATUS,
    "seq_skip": spec.EV_SEQ_SKIP, "clock_step": spec.EV_CLOCK_STEP,
}


def evaluate_attack(inj: Any, rejections: list[dict[str, Any]], flags: list[tuple[str, Any]],
                    runner: Any) -> dict[str, Any]:
    """One attack's line of the run record: injected, refused and flagged, detected and when."""
    fired = inj.fired_at
    since_us = int((fired or 0) * 1e6) - 1_000_000
    reasons: Counter[str] = Counter()
    first: list[float] = []
    for row in rejections:
        for source, allowed in inj.sources:
            if row["source"] == source and row["reason"] in allowed and row["last"] >= since_us:
                reasons[row["reason"]] += int(row["count"])
                first.append(row["first"] / 1e6)
    flag_counts: Counter[str] = Counter()
    for _node, f in flags:
        if f.kind not in inj.flag_kinds or f.time < since_us:
            continue
        if inj.flag_device and f.device is not None and f.device.hex() != inj.flag_device:
            continue
        flag_counts[f.kind] += 1
        first.append(f.time / 1e6)
    injected = len(inj.injected)
    absorbed = _absorbed(inj, runner)
    if absorbed:
        reasons["duplicate"] += absorbed
        first.append(max(i.at for i in inj.own))  # taken once on arrival: nothing to wait for
    rejected = min(injected, sum(reasons.values()))
    flagged = sum(flag_counts.values())
    if not fired:
        detected = False
    elif inj.per_tx:
        detected = injected > 0 and rejected + min(flagged, injected - rejected) >= injected
    else:
        detected = flagged > 0
    after = None
    if detected and first and fired:
        after = round(max(0.0, min(first) - fired), 3)
    return {
        "name": inj.name, "kind": inj.kind, "at_s": round(float(inj.at_s), 3),
        "target": inj.target, "injected": injected, "rejected": rejected, "flagged": flagged,
        "detected": bool(detected), "detected_after_s": after,
        "reasons": dict(reasons), "flags": dict(flag_counts),
        **({"note": inj.note} if inj.note else {}),
    }


def _absorbed(inj: Any, runner: Any) -> int:
    """Replays on their own topic that left exactly the one entry they copy: taken once, not twice."""
    own = getattr(inj, "own", None)
    if not own:
        return 0
    entries = runner._entries
    n = 0
    for i in own:
        e = entries.get((i.device, i.seq))
        if e is not None and e.tx_id == i.tx_id:
            n += 1
    return n


def _result(name: str, met: bool, detail: Any) -> dict[str, Any]:
    return {"name": name, "met": bool(met), "detail": detail}


def check(scn: Any, record: dict[str, Any], runner: Any, extra: list[Any] | None = None
          ) -> list[dict[str, Any]]:
    """Every expectation of the run: the standing two, then the scenario's own, then ``extra``."""
    out = []
    t = record["totals"]
    out.append(_result("no_loss", t["lost"] == 0,
                       "%d of %d legitimate transactions committed exactly once%s" % (
                           t["committed"], t["transactions"],
                           "" if not t["lost"] else "; lost: " + ", ".join(record["lost_detail"]))))
    by_name = {a["name"]: a for a in record["attacks"]}
    for a in record["attacks"]:
        out.append(_result("attack_detected:%s" % a["name"], a["detected"], _attack_detail(a)))
    for x in list(scn.expect) + list(extra or []):
        out.append(_one(x, record, by_name, runner))
    return out


def _attack_detail(a: dict[str, Any]) -> str:
    parts = ["%d injected" % a["injected"], "%d refused" % a["rejected"],
             "%d flagged" % a["flagged"]]
    if a["reasons"]:
        parts.append("reasons " + ", ".join("%s %d" % kv for kv in sorted(a["reasons"].items())))
    if a["flags"]:
        parts.append("flags " + ", ".join("%s %d" % kv for kv in sorted(a["flags"].items())))
    if a.get("note"):
        parts.append(a["note"])
    return "; ".join(parts)


def _one(x: Any, record: dict[str, Any], attacks: dict[str, dict[str, Any]], runner: Any
         ) -> dict[str, Any]:
    p = dict(x.params)
    name = "expect:" + getattr(x, "name", x.kind)
    if x.kind == "no_loss":
        return _result(name, record["totals"]["lost"] == 0, "%d lost" % record["totals"]["lost"])
    if x.kind == "attack_detected":
        a = attacks.get(p["attack"])
        if a is None:
            return _result(name, False, "no attack %r in this run" % p["attack"])
        ok, why = a["detected"], []
        if "reason" in p and not a["reasons"].get(p["reason"]):
            ok = False
            why.append("no refusal with reason %s" % p["reason"])
        if "flag" in p and not a["flags"].get(p["flag"]):
            ok = False
            why.append("no %s flag" % p["flag"])
        within = p.get("within_s")
        if within is not None and (a["detected_after_s"] is None
                                   or a["detected_after_s"] > float(within)):
            ok = False
            why.append("not within %g s (after %s)" % (float(within), a["detected_after_s"]))
        return _result(name, ok, "; ".join(why) or _attack_detail(a))
    if x.kind == "no_time_flags":
        time_flags = [d for d in record["detections"] if d["kind"] in TIME_FLAGS]
        n = len(time_flags)
        return _result(name, n == 0, "%d time flags%s" % (n, ": " + ", ".join(
            "%s on %s at %.1f s" % (d["kind"], d["device"], d["t_s"]) for d in time_flags[:5])
            if time_flags else ""))
    if x.kind == "flag":
        kind, device = str(p.get("kind") or p.get("flag")), str(p["device"])
        within = p.get("within_s")
        start = _attack_time_on(record, device)
        hits = [d for d in record["detections"] if d["kind"] == kind and d["device"] == device]
        ok = bool(hits)
        detail = "%d %s flags on %s" % (len(hits), kind, device)
        if ok and within is not None:
            first = min(d["t_s"] for d in hits) - start
            ok = first <= float(within)
            detail += ", the first %.1f s after %.1f s (within %g s)" % (first, start, float(within))
        return _result(name, ok, detail)
    if x.kind == "event_committed":
        return _event_committed(name, p, runner)
    return _result(name, False, "unknown expectation kind %r" % x.kind)


def _attack_time_on(record: dict[str, Any], device: str) -> float:
    """When the latest attack on ``device`` (a light node or its device) started; else 0."""
    ts = [a["at_s"] for a in record["attacks"] if a["target"] == device]
    return max(ts) if ts else 0.0


def _event_committed(name: str, p: dict[str, Any], runner: Any) -> dict[str, Any]:
    from lightnode import wire

    node = runner.light_node(str(p["device"]))
    want = p["type"]
    etype = EVENT_TYPES.get(str(want).replace("-", "_"), want) if not isinstance(want, int) else want
    entries = runner._entries
    n = 0
    for (device, _seq), e in entries.items():
        if device != node.device_id or e.kind != spec.KIND_EVENT:
            continue
        tx = wire.decode(e.data)
        if isinstance(tx.body, dict) and tx.body.get(spec.E_TYPE) == etype:
            n += 1
    return _result(name, n > 0, "%d events of type %s from %s committed" % (n, want, node.name))
