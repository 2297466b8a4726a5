"""SIGKILL the node at random points of a run, ten times, and restart it: nothing acknowledged lost, nothing twice.

"Acknowledged" here is committed in a signed block in the store (the
block ack to the device over MQTT is the quorum's); the node PUBACKs a
message to the broker only once it is stored, so the broker, holding the
node's persistent session, sends the rest again after each restart.
At the end every published transaction is in the store exactly once and
``lightnode audit`` passes. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from _node_support import (
    ACK_SEED,
    CP_SEED,
    SEGMENT,
    Device,
    NodeProcess,
    make_registry,
    mosquitto,
    node_kids,
    store_url,
)
from click.testing import CliRunner
from lightnode import keys
from lightnode.cli import main
from lightnode.ledger.store import open_store
from lightnode.node import mqtt

KILLS = 10
DEVICES, PER_DEVICE = 20, 150


def _committed(url: str) -> list[tuple[bytes, int]]:
    s = open_store(url)
    try:
        return [(e.device, e.seq) for e in s.entries(chain="seg:" + SEGMENT)]
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_killed_ten_times_nothing_lost_nothing_twice(kind, tmp_path):
    rng = random.Random(2024)
    with store_url(kind, tmp_path) as url, mosquitto(tmp_path) as port:
        devs = [Device(i) for i in range(1, DEVICES + 1)]
        make_registry(tmp_path / "reg.db", devs).close()
        node = NodeProcess(
            tmp_path, port, url, tmp_path / "reg.db", SEGMENT, "--block-entries", "64"
        )
        node.start()
        node.wait_ready()
        pub = mqtt.Transport("127.0.0.1", port, "fleet", clean_session=True)
        pub.start()
        assert pub.wait_connected(5)
        msgs = [(d, d.tx()) for _ in range(PER_DEVICE) for d in devs]
        sent = 0
        acknowledged: set[tuple[bytes, int]] = set()
        try:
            for k in range(KILLS):
                # publish a slice while the node runs, kill it at a random moment inside
                n = len(msgs) * (k + 1) // (KILLS + 1)
                for d, data in msgs[sent:n]:
                    pub.publish(mqtt_topic(d), data)
                sent = n
                time.sleep(rng.uniform(0.05, 0.6))
                node.kill()
                now = _committed(url)
                assert len(now) == len(set(now)), "a transaction twice"
                assert acknowledged <= set(now), "an acknowledged transaction lost"
                acknowledged = set(now)
                node.start()
                node.wait_ready()
            for d, data in msgs[sent:]:
                pub.publish(mqtt_topic(d), data)
            deadline = time.monotonic() + 60
            while len(_committed(url)) < len(msgs):
                assert time.monotonic() < deadline, "not all committed: %d of %d\n%s" % (
                    len(_committed(url)),
                    len(msgs),
                    node.log()[-3000:],
                )
                time.sleep(0.1)
        finally:
            pub.close()
            assert node.stop() == 0, node.log()[-3000:]
        final = _committed(url)
        assert len(final) == len(msgs) == len(set(final))
        assert acknowledged <= set(final)
        assert set(final) == {(d.device_id, s) for d in devs for s in range(PER_DEVICE)}
        # lightnode audit over the store, with the devices' and the node's keys
        kids = node_kids()
        key_map = {d.device_id.hex(): d.public_key.hex() for d in devs}
        key_map[kids["checkpoint"].hex()] = keys.public_key(CP_SEED).hex()
        key_map[kids["ack"].hex()] = keys.public_key(ACK_SEED).hex()
        (tmp_path / "keys.json").write_text(json.dumps(key_map))
        r = CliRunner().invoke(
            main, ["audit", "--store", url, "--keys", str(tmp_path / "keys.json")]
        )
        assert r.exit_code == 0, r.output
        assert "audit: ok" in r.output


def mqtt_topic(d: Device) -> str:
    return "ln/%s/%s/tx" % (SEGMENT, d.hex)
