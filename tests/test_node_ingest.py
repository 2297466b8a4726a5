"""The node's MQTT layer and ingest pipeline against a Mosquitto of the test's own (lightnode.node)."""

from __future__ import annotations

import threading
import time

from _node_support import mosquitto
from lightnode.node import mqtt

WAIT = 5.0


def _until(cond, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- codec --------------------------------------------------------------------------------


def test_parser_whole_and_one_byte_at_a_time():
    stream = (
        mqtt.encode_publish("ln/a/b/tx", b"x" * 300, 1, 7)
        + mqtt.encode_pubacks([1, 2])
        + mqtt.encode_publish("t", b"", 0)
    )
    whole = mqtt.Parser().feed(stream)
    p, bytewise = mqtt.Parser(), []
    for i in range(len(stream)):
        bytewise += p.feed(stream[i : i + 1])
    assert whole == bytewise and len(whole) == 4
    m = mqtt.decode_publish(whole[0][1], whole[0][2])
    assert (m.topic, m.payload, m.qos, m.pid) == ("ln/a/b/tx", b"x" * 300, 1, 7)


def test_parser_refuses_a_five_byte_length():
    import pytest

    with pytest.raises(mqtt.MqttError):
        mqtt.Parser().feed(b"\x30\xff\xff\xff\xff\x7f")


def test_topic_matches():
    assert mqtt.topic_matches("ln/s/+/tx", "ln/s/ab/tx")
    assert not mqtt.topic_matches("ln/s/+/tx", "ln/s/ab/ack")
    assert not mqtt.topic_matches("ln/s/+/tx", "ln/s/ab/tx/x")
    assert mqtt.topic_matches("ln/#", "ln/s/ab/tx")


# -- Transport against Mosquitto ----------------------------------------------------------


def test_transport_publish_subscribe_and_persistent_session(tmp_path):
    with mosquitto(tmp_path) as port:
        got, lock = [], threading.Lock()

        def on(topic, payload):
            with lock:
                got.append((topic, payload))

        a = mqtt.Transport("127.0.0.1", port, "sub-a", clean_session=False)
        a.subscribe("ln/s/+/ack", on)
        a.start()
        b = mqtt.Transport.from_url("mqtt://127.0.0.1:%d" % port, "pub-b", clean_session=True)
        b.publish("ln/s/00/ack", b"before the link")  # queued until connected
        b.start()
        try:
            assert a.wait_connected(WAIT) and b.wait_connected(WAIT)
            for i in range(200):
                b.publish("ln/s/%02x/ack" % (i % 7), b"%d" % i)
            assert _until(lambda: len(got) == 201), len(got)
            assert {p for _, p in got} == {b"before the link"} | {b"%d" % i for i in range(200)}
            # the subscriber goes away; QoS1 messages wait in its session
            a.close()
            time.sleep(0.2)
            for i in range(50):
                b.publish("ln/s/01/ack", b"offline %d" % i)
            assert _until(lambda: not b._inflight)
            got.clear()
            a2 = mqtt.Transport("127.0.0.1", port, "sub-a", clean_session=False)
            a2.subscribe("ln/s/+/ack", on)
            a2.start()
            try:
                assert _until(lambda: len(got) == 50), len(got)
            finally:
                a2.close()
        finally:
            a.close()
            b.close()


# -- the pipeline in process --------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.t = time.time_ns() // 1000

    def __call__(self) -> int:
        return self.t


def _pipeline(tmp_path, devs, **kw):
    from _node_support import ACK_SEED, CP_SEED, make_registry, node_kids
    from lightnode.ledger.chain import Ledger
    from lightnode.ledger.store import open_store
    from lightnode.node.ingest import Ingest

    reg = make_registry(tmp_path / "reg.db", devs)
    clock = _Clock()
    kids = node_kids()
    ledger = Ledger(
        open_store(str(tmp_path / "l.db")),
        CP_SEED,
        kids["checkpoint"],
        clock=clock,
        block_entries=100,
        block_age_us=1_000_000,
    )
    sent = []
    ingest = Ingest(
        ledger,
        reg,
        "feeder-9",
        ACK_SEED,
        kids["ack"],
        lambda t, p: sent.append((t, p)),
        clock=clock,
        **kw,
    )
    return ingest, clock, sent


def test_a_flood_of_garbage_is_counted_rate_limited_and_bounded(tmp_path):
    from _node_support import Device
    from lightnode.ledger.audit import audit

    devs = [Device(1), Device(2)]
    ingest, clock, sent = _pipeline(tmp_path, devs, summary_every_us=10_000_000)
    store = ingest.ledger.store
    for i in range(20_000):  # a registered device's topic and made-up ones
        dev = devs[0].hex if i % 2 else "%016x" % i
        ingest.receive("ln/feeder-9/%s/tx" % dev, b"\x82garbage %d" % i, i)
        if i % 1000 == 0:
            clock.t += 100_000
            ingest.tick()
    assert sum(ingest.stats.refused.values()) == 20_000
    assert (
        len(sent) <= 20 + 20 + 5 * 2 * 2 + 500 * 2 + 5
    )  # bursts, then the per-source and total rates
    assert ingest.stats.nacks_suppressed == 20_000 - len(sent)
    clock.t += 20_000_000
    ingest.tick()
    ingest.flush()
    rows = store.rejections()
    assert {r["source"] for r in rows} == {devs[0].hex, "stranger"}
    assert sum(r["count"] for r in rows) == 20_000
    # the summary is a transaction of the segment chain, made with the checkpoint key
    summaries = [e for e in store.entries(chain="seg:feeder-9") if e.kind == 6]
    assert len(summaries) == 1
    assert len(ingest.settled()) == 20_000  # every refusal acknowledged once counted
    from _node_support import CP_SEED, node_kids
    from lightnode import keys

    kids = node_kids()
    key_map = {d.device_id: d.public_key for d in devs}
    key_map[kids["checkpoint"]] = keys.public_key(CP_SEED)
    assert audit(store, key_map).ok


def test_out_of_order_waits_then_commits_with_a_gap_flag(tmp_path):
    from _node_support import Device

    d = Device(3)
    ingest, clock, _ = _pipeline(tmp_path, [d], reorder_timeout_us=2_000_000)
    txs = [d.tx() for _ in range(5)]
    topic = "ln/feeder-9/%s/tx" % d.hex
    assert ingest.receive(topic, txs[2], "t2").status == "buffered"
    assert ingest.receive(topic, txs[2], "t2 again").status == "duplicate"
    assert ingest.receive(topic, txs[0], "t0").status == "added"  # 1 still missing: 2 waits
    assert ingest.waiting == 1
    assert ingest.receive(topic, txs[4], "t4").status == "buffered"
    clock.t += 3_000_000
    ingest.tick()  # the wait is over: 2 and 4 go in, flagged
    ingest.flush()
    store = ingest.ledger.store
    assert [e.seq for e in store.entries(chain="seg:feeder-9", device=d.device_id)] == [0, 2, 4]
    assert {f.kind for f in store.flags()} == {"gap"}
    assert sorted(map(str, ingest.settled())) == sorted(["t0", "t2", "t2 again", "t4"])
    # 1 and 3 arrive late: committed, flagged late, not refused
    assert ingest.receive(topic, txs[1]).status == "added"
    assert ingest.receive(topic, txs[3]).status == "added"


def test_the_embedded_broker_carries_a_publish(tmp_path):
    import asyncio

    from _node_support import free_port
    from lightnode.node.embedded import embedded_broker

    async def run():
        got = []
        async with embedded_broker(free_port()) as port:
            a = mqtt.Transport("127.0.0.1", port, "emb-a", clean_session=True)
            a.subscribe("ln/x/+/ack", lambda t, p: got.append(p))
            b = mqtt.Transport("127.0.0.1", port, "emb-b", clean_session=True)
            ta, tb = asyncio.ensure_future(a.run()), asyncio.ensure_future(b.run())
            for _ in range(200):
                if a.subacks and b.connected:
                    break
                await asyncio.sleep(0.02)
            b.publish("ln/x/01/ack", b"hello")
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.02)
            a.close()
            b.close()
            await asyncio.wait_for(asyncio.gather(ta, tb), 5)
        return got

    assert asyncio.run(asyncio.wait_for(run(), 20)) == [b"hello"]
