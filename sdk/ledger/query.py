"""What a store holds, as plain rows (dicts of str, int, hex): chains, blocks, transactions, flags, rejections.

The CLI (``lightnode ledger ...``) prints these; ``--json`` prints them as they are.

    >>> from lightnode.ledger import query
    >>> from lightnode.ledger.store import open_store
    >>> query.chains(open_store(":memory:"))
    []
    >>> query.parse_time("2023-11-14T22:13:20Z")
    1700000000000000
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from lightnode.firmware.ln import wire as spec
from lightnode.ledger.store import FLAG_NAMES, Store, flag_names

__all__ = ["blocks", "chains", "flags", "parse_kind", "parse_time", "rejections", "transactions"]


def parse_time(text: str) -> int:
    """Microseconds since 1970 from an integer (us) or an ISO 8601 time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("time %r: microseconds since 1970 or ISO 8601" % text) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return (t - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)) // _dt.timedelta(microseconds=1)


def parse_kind(text: str) -> int:
    """A transaction kind by name (``readings``, ``event``, ...) or number."""
    if text.isdigit():
        return int(text)
    for number, name in spec.KIND_NAMES.items():
        if name == text:
            return number
    raise ValueError("kind %r: one of %s or a number" % (text, ", ".join(spec.KIND_NAMES.values())))


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    t = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(microseconds=us)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def chains(store: Store) -> list[dict[str, Any]]:
    return store.chains()


def blocks(store: Store, chain: str, since: int | None = None) -> list[dict[str, Any]]:
    out = []
    for b in store.blocks(chain, since=since):
        kids = [k.hex() for k, _ in store.cosignatures(chain, b.height)]
        out.append(
            {
                "chain": b.chain,
                "height": b.height,
                "size": b.size,
                "root": b.root.hex(),
                "header_hash": b.header_hash.hex(),
                "prev": b.prev.hex(),
                "time": b.time,
                "final": b.final,
                "final_time": b.final_time,
                "witnesses": kids,
            }
        )
    return out


def transactions(
    store: Store,
    device: bytes | None = None,
    since: int | None = None,
    until: int | None = None,
    kind: int | None = None,
    chain: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Committed transactions (segment chains), by device time; each with its ledger time bracket."""
    out = []
    for e in store.entries(chain, device, since, until, kind, limit=limit):
        if e.device is None:
            continue
        before, after = store.bracket(e.chain, e.index)
        out.append(
            {
                "chain": e.chain,
                "index": e.index,
                "device": _hex(e.device),
                "seq": e.seq,
                "kind": spec.KIND_NAMES.get(e.kind or 0, str(e.kind)),
                "device_time": e.device_time,
                "id": _hex(e.tx_id),
                "leaf_hash": e.leaf_hash.hex(),
                "bytes": len(e.data),
                "block": e.height,
                "flags": flag_names(e.flags),
                "received": e.received,
                "bracket": [before.time if before else None, after.time if after else None],
            }
        )
    return out


def flags(store: Store, since: int | None = None) -> list[dict[str, Any]]:
    return [
        {
            "id": f.id,
            "kind": f.kind,
            "chain": f.chain,
            "time": f.time,
            "detail": f.detail,
            "index": f.index,
            "device": _hex(f.device),
            "seq": f.seq,
            "evidence": _hex(f.evidence),
            "evidence2": _hex(f.evidence2),
        }
        for f in store.flags(since=since)
    ]


def rejections(store: Store, since: int | None = None) -> list[dict[str, Any]]:
    return store.rejections(since=since)


FLAG_KINDS = tuple(FLAG_NAMES.values()) + ("fork", "checkpoint-fork")
