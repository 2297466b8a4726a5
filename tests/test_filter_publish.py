"""The node publishes its segment's signed filter retained; a board that connects later gets it and accepts it.

Against a Mosquitto the test starts: the filter is built from a real
registry (a revoked device left out), signed with the node's filter key,
its hash recorded in the registry by the node's registry key (so it is on
the registry chain), published retained, and checked by the device code
(``lightnode.bloom.signed.verify_filter``) as a board does, on a message
received by a client that subscribed after publication.
"""

import threading
import time

import pytest
from _node_support import mosquitto
from lightnode import filters, keys, registry
from lightnode.bloom import signed as bsigned
from lightnode.firmware.ln import wire
from lightnode.node import filterpub
from lightnode.node.mqtt import Transport

SEG = "feeder-7"
FILTER_SEED = b"\x0f" * 32
REGISTRY_SEED = b"\x0e" * 32


def _registry(path):
    reg = registry.open_registry(str(path))
    admin_seed = b"\xad" * 32
    reg.init_admin("admin", keys.public_key(admin_seed), admin_seed)
    admin = reg.as_operator("admin", admin_seed)
    devs = []
    for i in range(5):
        seed = bytes([i + 1]) * 32
        dev = bytes([0x4C, 0x4E, 0, i]) + b"\x00" * 4
        reg.add_device(dev, keys.public_key(seed), SEG, "unix", "0.1.0", "ab" * 32, admin)
        devs.append((dev, keys.public_key(seed)))
    reg.revoke_device(devs[4][0], "stolen", admin)
    reg.add_node_key("node-a", wire.ROLE_FILTER, keys.public_key(FILTER_SEED), admin)
    reg.add_node_key("node-a", wire.ROLE_REGISTRY, keys.public_key(REGISTRY_SEED), admin)
    return reg, devs


def test_retained_filter_reaches_a_late_board_and_is_recorded(tmp_path):
    reg, devs = _registry(tmp_path / "reg.db")
    node_signer = reg.as_node("node-a", REGISTRY_SEED)
    now = int(time.time())
    with mosquitto(tmp_path) as port:
        node = Transport.from_url("mqtt://127.0.0.1:%d" % port, client_id="node-a")
        node.start()
        assert node.wait_connected(5)
        signed = filterpub.publish(node, reg, SEG, FILTER_SEED, node_signer, epoch=3,
                                   not_after_s=now + 3600)
        time.sleep(0.3)  # the broker holds it retained before the board connects

        got = []
        done = threading.Event()
        board = Transport.from_url("mqtt://127.0.0.1:%d" % port, client_id="board-1")

        def on_filter(topic, payload):
            got.append((topic, payload))
            done.set()

        board.subscribe(wire.TOPIC_FILTER % SEG, on_filter)
        board.start()
        assert done.wait(5), "the retained filter never arrived"
        board.close()
        node.close()

    topic, payload = got[0]
    assert topic == wire.TOPIC_FILTER % SEG and payload == signed
    pub = keys.public_key(FILTER_SEED)
    node_keys = {registry.key_id(pub): (pub, (wire.ROLE_FILTER,))}
    f = bsigned.verify_filter(payload, node_keys, held_epoch=2, now_s=now, max_bytes=64 * 1024)
    for dev, key in devs[:4]:
        assert f.might_contain(dev, key)
    assert not f.might_contain(*devs[4])  # revoked: left out (a false positive here is 1 in 10^4)
    # recorded: the registry's newest transaction, signed by the node's registry key, holds its hash
    rec = reg.filter_record(SEG)
    assert (rec.epoch, rec.not_after, rec.hash) == (3, now + 3600, filters.filter_hash(signed))
    assert rec.published_by == "node-a"
    again = registry.open_registry(str(tmp_path / "reg.db"))  # replayed from the signed chain
    assert again.filter_record(SEG) == rec


def test_filter_epochs_only_go_forward_and_only_registry_keys_record(tmp_path):
    reg, _ = _registry(tmp_path / "reg.db")
    node_signer = reg.as_node("node-a", REGISTRY_SEED)
    reg.publish_filter(SEG, 5, 100, b"\x01" * 32, node_signer)
    with pytest.raises(registry.RegistryError):
        reg.publish_filter(SEG, 5, 200, b"\x02" * 32, node_signer)  # not after the published 5
    with pytest.raises(registry.RegistryError):  # the filter key has no registry role
        reg.publish_filter(SEG, 6, 200, b"\x02" * 32, reg.as_node("node-a", FILTER_SEED))
    assert reg.filter_record(SEG).epoch == 5
