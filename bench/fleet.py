"""How many light nodes one full node (with two witnesses) keeps up with on this machine.

    .venv/bin/python bench/fleet.py [--sizes 100,200,400,500,800,1000,1500] [--seconds 30]

A fleet of CPython light nodes (``lightnode.simulator.fleet``) in one
asyncio process, each sending the foundation bench's PMU window
(bench/_window.py: 5 s of a 50 frames/s PMU, a Pico W's default window)
once per window, signed per node and sequence number with the SDK's
signer, over its own MQTT session to a Mosquitto of its own on loopback;
a producing ``lightnode node`` and two witnesses (SQLite) behind it
(``lightnode.simulator.cluster``, the runner's own). Each light node keeps
every record until a block ack it has checked (node signature, checkpoint,
a witness's cosignature, inclusion proof of its own bytes) covers it.

For each fleet size, upward, it runs ``--seconds`` after a warm-up window
and measures the block-ack latency of every record signed in that time
(signed -> verified ack at the light node). A size is kept up with when
that p99 is under 5 s and every record was acked by the end of a drain.
The search stops at the first size that is not.

``firmware_light_nodes``: the same for light nodes running the real
firmware in the MicroPython unix port (``lightnode firmware run`` at the
board's heap budget, one process each, each reading a simulated 50
frames/s PMU of its own over C37.118; boards made and provisioned as the
simulator's ``--firmware`` does), searched over ``--firmware-sizes``. Their
latency is taken from the producer's store: the block's final time minus
the transaction's device time (the board's clock is the host's).

Progress lines go to stderr; the last line printed is one JSON object:
``light_nodes``, ``readings_per_s`` at that size, ``firmware_light_nodes``
and the per-size figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import _window  # noqa: E402
from lightnode import keys  # noqa: E402
from lightnode.simulator.cluster import Cluster  # noqa: E402
from lightnode.simulator.fleet import FixedWindowSource, Fleet, LightNode, stagger  # noqa: E402

P99_LIMIT_S = 5.0
SEGMENT = _window.SEGMENT


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(math.ceil(p * len(xs))) - 1))] if xs else float("nan")


async def _run_fleet(n: int, port: int, cluster: Cluster, seconds: float, body: Any,
                     readings_per_tx: int) -> dict[str, Any]:
    window_s = float(_window.WINDOW_S)
    fleet = Fleet("127.0.0.1", port, SEGMENT, cluster.node_keys(), cluster.witness_keys())
    phases = stagger(n, window_s, seed=n)
    for i, (seed, did) in enumerate(_devices(n)):
        fleet.add(LightNode("pmu-%d" % i, did, seed, FixedWindowSource(body, readings_per_tx),
                            board="pico_w", window_s=window_s, phase_s=phases[i],
                            heartbeat_every=10 ** 9))
    t_connect = time.monotonic()
    await fleet.connect(timeout=120)
    connect_s = time.monotonic() - t_connect
    await fleet.start()
    t_from = time.time() + window_s  # a window of warm-up: every node has signed once
    await asyncio.sleep(window_s + seconds)
    t_to = time.time()
    await fleet.stop(drain_s=30)
    recs = [r for nd in fleet.nodes for r in nd.records.values() if t_from <= r.signed_at < t_to]
    lat = [r.acked_at - r.signed_at for r in recs if r.acked_at is not None]
    unacked = sum(1 for r in recs if r.acked_at is None)
    bad = sum(nd.stats["bad_acks"] for nd in fleet.nodes)
    return {
        "light_nodes": n,
        "records": len(recs),
        "unacked": unacked,
        "bad_acks": bad,
        "ack_p50_s": round(_pct(lat, 0.5), 3) if lat else None,
        "ack_p99_s": round(_pct(lat, 0.99), 3) if lat else None,
        "ack_max_s": round(max(lat), 3) if lat else None,
        "tx_per_s": round(len(recs) / (t_to - t_from), 1),
        "readings_per_s": round(len(recs) * readings_per_tx / (t_to - t_from)),
        "connect_s": round(connect_s, 1),
        "kept_up": bool(lat) and unacked == 0 and _pct(lat, 0.99) < P99_LIMIT_S,
    }


def _devices(n: int) -> list[tuple[bytes, bytes]]:
    return [(hashlib.sha256(b"bench-fleet/%d" % i).digest(), b"PMU" + i.to_bytes(5, "big"))
            for i in range(n)]


def measure(n: int, seconds: float, body: Any, readings_per_tx: int,
            block_entries: int) -> dict[str, Any]:
    import _node_support as ns  # the tests' Mosquitto helper

    with tempfile.TemporaryDirectory(prefix="ln-bench-fleet-") as d:
        tmp = Path(d)
        cluster = Cluster(tmp, SEGMENT, block_entries=block_entries)
        cluster.init_registry()
        for seed, did in _devices(n):
            cluster.add_device(did, keys.public_key(seed), "pico_w")
        with ns.mosquitto(tmp, inflight=8192, queued=200_000) as port:
            cluster.start("mqtt://127.0.0.1:%d" % port)
            try:
                cluster.wait_ready(60)
                out = asyncio.run(_run_fleet(n, port, cluster, seconds, body, readings_per_tx))
                st = cluster.producer.stats()
                out["node_cpu_s"] = round(st.get("cpu_total_s", 0.0), 1)
            finally:
                cluster.close()
    return out


def measure_firmware(n: int, seconds: float, board: str) -> dict[str, Any]:
    import contextlib
    import types

    import _node_support as ns
    from lightnode.ledger.store import open_store
    from lightnode.simulator.devices import MAP_FILES, MAPS
    from lightnode.simulator.pmu_server import PmuServer
    from lightnode.simulator.run import FirmwareNode

    with tempfile.TemporaryDirectory(prefix="ln-bench-fw-") as d, contextlib.ExitStack() as stack:
        tmp = Path(d)
        cluster = Cluster(tmp, SEGMENT)
        cluster.init_registry()
        port = stack.enter_context(ns.mosquitto(tmp, inflight=8192, queued=200_000))
        boards = []
        for i in range(n):
            dev = types.SimpleNamespace(map_path=MAPS / MAP_FILES["pmu"], params={"idcode": 100 + i})
            fw = FirmwareNode("fw-%d" % i, board, dev, tmp / "boards" / ("fw-%d" % i))
            fw.provision(cluster, "mqtt://127.0.0.1:%d" % port, tmp)
            boards.append(fw)
        cluster.start("mqtt://127.0.0.1:%d" % port)
        stack.callback(cluster.close)
        cluster.wait_ready(60)
        for i, fw in enumerate(boards):
            pmu = stack.enter_context(PmuServer(idcode=100 + i, rate=50, seed=i + 1))
            host, pmu_port = pmu.address
            fw.start(types.SimpleNamespace(host=host, port=pmu_port), seconds)
            stack.callback(fw.kill)
        for fw in boards:
            fw.wait(seconds + 180)
        cluster.stop()
        store = open_store(cluster.stores["node-a"])
        try:
            final = {b.height: b.final_time for b in store.blocks("seg:" + SEGMENT)}
            lat, signed, committed, pending = [], 0, 0, 0
            for fw in boards:
                st = fw.stats
                signed += int(st.get("appended", 0))
                pending += int(st.get("pending", 0)) if st else 1
                for e in store.entries(chain="seg:" + SEGMENT, device=fw.device_id):
                    committed += 1
                    ft = final.get(e.height)
                    if ft is not None and e.device_time is not None:
                        lat.append((ft - e.device_time) / 1e6)
        finally:
            store.close()
    p99 = _pct(lat, 0.99) if lat else float("nan")
    return {"firmware_light_nodes": n, "board": board, "signed": signed, "committed": committed,
            "pending": pending, "ack_p50_s": round(_pct(lat, 0.5), 3) if lat else None,
            "ack_p99_s": round(p99, 3) if lat else None,
            "kept_up": bool(lat) and signed > 0 and committed >= signed and p99 < P99_LIMIT_S
            and pending <= n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,200,400,500,800,1000,1500,2000")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--firmware-sizes", default="1,2,4,8")
    ap.add_argument("--firmware-board", default="pico_w")
    ap.add_argument("--block-entries", type=int, default=1024,
                    help="the producer's --block-entries (blocks are also cut every 500 ms)")
    a = ap.parse_args()
    w = _window.window_transaction()
    body = w["body"]
    readings_per_tx = sum(w["frames"] * len(series[3]) for series in body)
    best: dict[str, Any] | None = None
    runs = []
    for n in [int(x) for x in a.sizes.split(",") if x]:
        r = measure(n, a.seconds, body, readings_per_tx, a.block_entries)
        runs.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
        if not r["kept_up"]:
            break
        best = r
    fw_best = 0
    fw_runs = []
    for n in [int(x) for x in a.firmware_sizes.split(",") if x]:
        r = measure_firmware(n, a.seconds, a.firmware_board)
        fw_runs.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
        if not r["kept_up"]:
            break
        fw_best = n
    print(json.dumps({
        "light_nodes": best["light_nodes"] if best else 0,
        "readings_per_s": best["readings_per_s"] if best else 0,
        "firmware_light_nodes": fw_best,
        "firmware_board": a.firmware_board,
        "firmware_runs": fw_runs,
        "p99_limit_s": P99_LIMIT_S,
        "window_s": _window.WINDOW_S,
        "readings_per_tx": readings_per_tx,
        "seconds": a.seconds,
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
