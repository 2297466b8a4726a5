"""One full node process: the MQTT transport, the ingest pipeline and the clock that drives them.

``Node`` subscribes to ``ln/<segment>/+/tx`` at QoS1 on a persistent
session, hands each received chunk to ``Ingest.receive_batch``, and
acknowledges (PUBACK) the messages ``Ingest`` has settled, many at once.
A tick (every ``tick_s``) releases timed-out buffers, catches the registry
up, commits rejection counts and summaries and cuts due blocks. A producer
(``lightnode.node.quorum.Producer``), if attached, gets every cut block
(``on_block(signed_checkpoint, block)``) and the segment's cosignatures
(``on_cosig(payload)``).

    node = Node(transport, ingest)
    await node.run(stop)        # until stop (an asyncio.Event) is set
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from lightnode.firmware.ln import wire as spec
from lightnode.node.ingest import Ingest
from lightnode.node.mqtt import Message, Transport

__all__ = ["Node"]

log = logging.getLogger("lightnode.node")


class Node:
    def __init__(
        self,
        transport: Transport,
        ingest: Ingest,
        tick_s: float = 0.05,
        stats_path: str | None = None,
        stats_every_s: float = 1.0,
    ) -> None:
        self.transport = transport
        self.ingest = ingest
        self.tick_s = tick_s
        self.stats_path = stats_path
        self.stats_every_s = stats_every_s
        self.cpu_mqtt = 0.0
        self.started = time.monotonic()
        segment = ingest.segment
        transport.subscribe_batch(spec.TOPIC_TX % (segment, "+"), self._on_batch, qos=1)
        if ingest.producer is not None:
            producer = ingest.producer
            transport.subscribe(
                spec.TOPIC_COSIG % segment, lambda _topic, payload: producer.on_cosig(payload)
            )

    def _on_batch(self, messages: list[Message]) -> None:
        self.ingest.receive_batch([(m.topic, m.payload, m) for m in messages])
        self._ack()

    def _ack(self) -> None:
        tokens = [t for t in self.ingest.settled() if isinstance(t, Message)]
        if tokens:
            self.transport.ack(tokens)

    def stats(self) -> dict[str, Any]:
        s = self.ingest.stats
        cpu = dict(s.cpu)
        total = time.process_time()
        cpu["mqtt_and_other"] = max(0.0, total - sum(cpu.values()))
        return {
            "received": s.received,
            "added": s.added,
            "duplicate": s.duplicate,
            "buffered": s.buffered,
            "waiting": self.ingest.waiting,
            "released_late": s.released_late,
            "refused": dict(s.refused),
            "forks": s.forks,
            "nacks_sent": s.nacks_sent,
            "nacks_suppressed": s.nacks_suppressed,
            "blocks": s.blocks,
            "summaries": s.summaries,
            "stored": self.ingest.chain.head.size if self.ingest.chain.head else 0,
            "cpu_s": cpu,
            "cpu_total_s": total,
            "mqtt_errors": self.transport.errors,
            "connected": self.transport.connected,
            "subscribed": self.transport.subacks > 0,
            "analysis": self.ingest.analyzer.stats if self.ingest.analyzer is not None else None,
        }

    def _write_stats(self) -> None:
        if self.stats_path:
            tmp = self.stats_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.stats(), f)
            import os

            os.replace(tmp, self.stats_path)

    async def run(self, stop: asyncio.Event) -> None:
        link = asyncio.ensure_future(self.transport.run())
        last_stats = 0.0
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.tick_s)
                except TimeoutError:
                    pass
                self.ingest.tick()
                self._ack()
                now = time.monotonic()
                if now - last_stats >= self.stats_every_s:
                    last_stats = now
                    self._write_stats()
        finally:
            self.ingest.flush()
            self._ack()
            self._write_stats()
            await asyncio.sleep(0.05)  # let the PUBACKs out
            self.transport.close()
            try:
                await asyncio.wait_for(link, 2)
            except (TimeoutError, asyncio.CancelledError):
                link.cancel()
