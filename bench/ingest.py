"""End-to-end ingest of one full node: load generator -> Mosquitto -> ``lightnode node`` -> signed blocks.

One asyncio load generator process (``lightnode.simulator.loadgen``)
pinned to one core publishes pre-signed PMU readings transactions (the
compactness bench's 5 s window, ``_window``, signed per device and
sequence number with ``lightnode.wire.Signer``) at QoS1 to a Mosquitto of
its own on loopback; one node process (``lightnode node``, SQLite) checks
and commits them. Measured:

- ``tx_per_s``, ``readings_per_s``: committed end to end (first publish
  to the last transaction in a stored block), readings = samples x points;
- ``verify_only_tx_per_s``: the same transactions through the bare
  decode + key look-up + verify loop in this process (the ceiling);
  ``ratio`` = ours / ceiling;
- ``drain_tx_per_s``: a backlog already waiting in the broker (the node's
  persistent session, QoS1, node offline) drained after the node starts;
- ``ack_latency_ms``: p50/p99 from publish to commit in a stored, signed
  block (the block's checkpoint time): block acks over MQTT to devices
  are the quorum's work and not yet in this path;
- ``cpu_ms_per_1000_tx`` by stage, from the node's own accounting
  (thread CPU time): ``decode``, ``verify`` (registry key + Ed25519),
  ``ledger_add`` (the ledger's duplicate look-up in the store, flags, leaf
  hash, tree append), ``block_cut`` (tree root, checkpoint signature, the
  block's one DB transaction), ``mqtt`` (the rest of the process: socket,
  MQTT parsing, PUBACKs, NACK/publish, the loop).

The last line printed is one JSON object. Not a test: run it by hand.

    python bench/ingest.py [--devices 100] [--per-device 200] [--drain 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import _window  # noqa: E402
from lightnode import keys, wire  # noqa: E402
from lightnode.ledger.store import open_store  # noqa: E402
from lightnode.simulator import loadgen  # noqa: E402

SEGMENT = _window.SEGMENT


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--per-device", type=int, default=200)
    ap.add_argument("--drain", type=int, default=100_000)
    ap.add_argument("--block-entries", type=int, default=1024)
    a = ap.parse_args()

    import _node_support as ns  # the tests' Mosquitto and node process helpers

    w = _window.window_transaction()
    body = w["body"]
    readings_per_tx = sum(w["frames"] * len(series[3]) for series in body)
    devices = [
        (bytes([i % 251 + 1, i // 251 + 1]) * 16, b"PMU" + i.to_bytes(5, "big"))
        for i in range(a.devices)
    ]
    t_sign = time.perf_counter()
    live = loadgen.presign(devices, a.per_device, SEGMENT, body)
    per_drain = max(1, a.drain // a.devices)
    backlog = loadgen.presign(devices, per_drain, SEGMENT, body, first_seq=a.per_device)
    sign_s = time.perf_counter() - t_sign
    print(
        "pre-signed %d + %d transactions of %d bytes in %.1f s"
        % (len(live), len(backlog), len(live[0][1]), sign_s),
        file=sys.stderr,
    )

    # the ceiling: decode + key + verify, one core, same transactions
    key_of = {did: keys.public_key(seed) for seed, did in devices}
    sample = live[: min(len(live), 20_000)]
    t0 = time.perf_counter()
    for _topic, data in sample:
        tx = wire.decode(data)
        tx.verify(key_of[tx.device_id])
    verify_only = len(sample) / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory(prefix="ln-bench-") as d:
        tmp = Path(d)
        regdevs = []
        for seed, did in devices:
            dev = ns.Device.__new__(ns.Device)
            dev.seed, dev.device_id, dev.segment = seed, did, SEGMENT
            dev.public_key = keys.public_key(seed)
            regdevs.append(dev)
        ns.make_registry(tmp / "reg.db", regdevs, ack_seed=ns.ACK_SEED, cp_seed=ns.CP_SEED).close()
        url = "sqlite:///" + str(tmp / "ledger.db")
        with ns.mosquitto(tmp, inflight=8192, queued=a.drain + 10_000) as port:
            node = ns.NodeProcess(
                tmp, port, url, tmp / "reg.db", SEGMENT, "--block-entries", str(a.block_entries)
            )
            node.args[node.args.index("--block-age-ms") + 1] = "100"
            node.start()
            node.wait_ready()
            os.sched_setaffinity(node.proc.pid, {1})
            loadgen.save(str(tmp / "live.bin"), live)
            t_start = time.time()
            gen = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "lightnode.simulator.loadgen",
                    "--port",
                    str(port),
                    "--messages",
                    str(tmp / "live.bin"),
                    "--stamps",
                    str(tmp / "stamps.bin"),
                    "--cpu",
                    "0",
                ],
                check=True,
            )
            assert gen.returncode == 0
            if not _wait(lambda: node.stats().get("stored", 0) >= len(live), 300):
                sys.exit(
                    "node did not commit everything: %s\n%s" % (node.stats(), node.log()[-2000:])
                )
            stats = node.stats()
            store = open_store(url)
            entries = list(store.entries(chain="seg:" + SEGMENT))
            blocks = {b.height: b.time for b in store.blocks("seg:" + SEGMENT)}
            t_last = max(blocks[e.height] for e in entries) / 1e6
            tx_per_s = len(live) / (t_last - t_start)
            raw = (tmp / "stamps.bin").read_bytes()
            stamps = struct.unpack(">%dd" % (len(raw) // 8), raw)
            index = {(t, data): i for i, (t, data) in enumerate(live)}
            lat = [
                blocks[e.height] / 1e6 - stamps[index[(ns_topic(e.device), e.data)]]
                for e in entries
            ]
            store.close()
            n_live = stats["added"]
            cpu = stats["cpu_s"]

            # drain: the node offline, a backlog waiting in its session, then the node again
            assert node.stop() == 0
            loadgen.save(str(tmp / "backlog.bin"), backlog)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "lightnode.simulator.loadgen",
                    "--port",
                    str(port),
                    "--messages",
                    str(tmp / "backlog.bin"),
                    "--cpu",
                    "0",
                ],
                check=True,
            )
            node.stats_path.unlink(missing_ok=True)
            t_drain = time.time()
            node.start()
            os.sched_setaffinity(node.proc.pid, {1})
            total = len(live) + len(backlog)

            def stored() -> int:
                return node.stats().get("stored", 0)

            if not _wait(lambda: stored() >= total, 900):
                sys.exit("backlog not drained: %s" % node.stats())
            drain_s = time.time() - t_drain
            node.stop()

    stages = {
        "mqtt": cpu["mqtt_and_other"],
        "decode": cpu["decode"],
        "verify": cpu["verify"],
        "ledger_add": cpu["ledger"],
        "block_cut": cpu["cut"],
    }
    out = {
        "tx_per_s": round(tx_per_s, 1),
        "readings_per_s": round(tx_per_s * readings_per_tx),
        "verify_only_tx_per_s": round(verify_only, 1),
        "ratio": round(tx_per_s / verify_only, 3),
        "drain_tx_per_s": round(len(backlog) / drain_s, 1),
        "drain_tx": len(backlog),
        "ack_latency_ms": {
            "p50": round(_pct(lat, 0.5) * 1000, 1),
            "p99": round(_pct(lat, 0.99) * 1000, 1),
            "to": "commit in a stored signed block (MQTT block acks not yet in the path)",
        },
        "cpu_ms_per_1000_tx": {k: round(v * 1e6 / max(n_live, 1), 1) for k, v in stages.items()},
        "tx": len(live),
        "tx_bytes": len(live[0][1]),
        "readings_per_tx": readings_per_tx,
        "devices": a.devices,
        "block_entries": a.block_entries,
    }
    print(json.dumps(out))


def ns_topic(device: bytes) -> str:
    return "ln/%s/%s/tx" % (SEGMENT, device.hex())


if __name__ == "__main__":
    main()
