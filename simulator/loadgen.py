"""A load generator for full nodes: pre-signed transactions of many devices, published at QoS1 from one asyncio process.

Signing is done before the clock starts (``presign``), so what is measured
is the broker and the node, not the generator's Ed25519. Publishing keeps
at most ``window`` messages unacknowledged by the broker (the device
uplink's bounded in-flight window, for a fleet at once) and stamps each
message's send time, for latency.

    msgs = presign(seeds_and_ids, per_device=100, segment="feeder-7", body=body)
    stamps = asyncio.run(publish("127.0.0.1", 1883, msgs))

or, as a process of its own pinned to one core (``bench/ingest.py`` runs it so)::

    python -m lightnode.simulator.loadgen --port 1883 --messages msgs.bin --stamps t.bin --cpu 0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import time
from collections.abc import Sequence
from typing import Any

from lightnode import wire
from lightnode.firmware.ln import wire as spec
from lightnode.node.mqtt import Transport

__all__ = ["load", "presign", "publish", "save"]


def presign(
    devices: Sequence[tuple[bytes, bytes]],
    per_device: int,
    segment: str,
    body: Any,
    kind: int = spec.KIND_READINGS,
    t0_us: int | None = None,
    window_us: int = 5_000_000,
    first_seq: int = 0,
) -> list[tuple[str, bytes]]:
    """``(topic, transaction)`` for every device (``(seed, device_id)``), one window at a time, devices interleaved."""
    t0 = time.time_ns() // 1000 if t0_us is None else t0_us
    signers = [wire.Signer(seed, did, segment) for seed, did in devices]
    prev = [bytes(32)] * len(signers)
    topics = [spec.TOPIC_TX % (segment, s.device_id.hex()) for s in signers]
    out = []
    for k in range(per_device):
        seq = first_seq + k
        for i, s in enumerate(signers):
            data, prev[i] = s.make(
                seq, prev[i], (t0 + k * window_us, spec.TQ_NTP, 1500), kind, body
            )
            out.append((topics[i], data))
    return out


def save(path: str, msgs: Sequence[tuple[str, bytes]]) -> None:
    with open(path, "wb") as f:
        for topic, data in msgs:
            t = topic.encode()
            f.write(struct.pack(">HI", len(t), len(data)) + t + data)


def load(path: str) -> list[tuple[str, bytes]]:
    out = []
    with open(path, "rb") as f:
        raw = f.read()
    at = 0
    while at < len(raw):
        tl, dl = struct.unpack_from(">HI", raw, at)
        at += 6
        out.append((raw[at : at + tl].decode(), raw[at + tl : at + tl + dl]))
        at += tl + dl
    return out


async def publish(
    host: str,
    port: int,
    msgs: Sequence[tuple[str, bytes]],
    window: int = 2000,
    client_id: str = "loadgen",
) -> list[float]:
    """Publish every message at QoS1, at most ``window`` unacknowledged; each one's send time (time.time())."""
    t = Transport(host, port, client_id, clean_session=True)
    link = asyncio.ensure_future(t.run())
    deadline = time.monotonic() + 10
    while not t.connected:
        if time.monotonic() > deadline:
            raise TimeoutError("no link to %s:%d" % (host, port))
        await asyncio.sleep(0.01)
    stamps = [0.0] * len(msgs)
    i = 0
    while i < len(msgs):
        room = window - t.inflight
        if room <= 0:
            await asyncio.sleep(0.0005)
            continue
        now = time.time()
        for topic, data in msgs[i : i + room]:
            t.publish(topic, data)
            stamps[i] = now
            i += 1
        await asyncio.sleep(0)
    deadline = time.monotonic() + 60
    while t.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    t.close()
    await asyncio.wait_for(link, 5)
    return stamps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", required=True, help="file written by save()")
    ap.add_argument("--stamps", help="write the send times here (float64 each)")
    ap.add_argument("--cpu", type=int, help="pin this process to one core")
    ap.add_argument("--window", type=int, default=2000)
    a = ap.parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    msgs = load(a.messages)
    stamps = asyncio.run(publish(a.host, a.port, msgs, a.window))
    if a.stamps:
        with open(a.stamps, "wb") as f:
            f.write(struct.pack(">%dd" % len(stamps), *stamps))


if __name__ == "__main__":
    main()
