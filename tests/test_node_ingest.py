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
