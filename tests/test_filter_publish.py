"""The node publishes its segment's signed filter retained; a board that connects later gets it and accepts it.

Against a Mosquitto the test starts: the filter is built from a real
registry (a revoked device left out), signed with the node's filter key,
published retained, committed on the ledger's registry chain, and checked
by the device code (``lightnode.bloom.signed.verify_filter``) as a board
does, on a message received by a client that subscribed after publication.
"""

import threading
import time

from _node_support import mosquitto
from lightnode import keys, registry
from lightnode.bloom import signed as bsigned
from lightnode.firmware.ln import wire
from lightnode.ledger import checkpoint, merkle
from lightnode.ledger.chain import Ledger
from lightnode.ledger.store import open_store
from lightnode.node import filterpub
from lightnode.node.mqtt import Transport

SEG = "feeder-7"
FILTER_SEED = b"\x0f" * 32


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
    return reg, devs


def test_retained_filter_reaches_a_late_board_and_is_committed(tmp_path):
    reg, devs = _registry(tmp_path / "reg.db")
    ledger = Ledger(open_store(str(tmp_path / "ledger.db")), b"\x0c" * 32, b"node-a")
    now = int(time.time())
    with mosquitto(tmp_path) as port:
        node = Transport.from_url("mqtt://127.0.0.1:%d" % port, client_id="node-a")
        node.start()
        assert node.wait_connected(5)
        signed = filterpub.publish(node, reg, SEG, FILTER_SEED, epoch=3, not_after_s=now + 3600,
                                   ledger=ledger)
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
    # committed: a signed block of the registry chain holds exactly the signed filter
    signed_cp = ledger.cut(filterpub.REGISTRY_CHAIN)
    assert signed_cp is not None
    cpt = checkpoint.verify_checkpoint(signed_cp.raw, {ledger.kid: ledger.public_key}).checkpoint
    assert cpt.size == 1
    tree = ledger.chain(filterpub.REGISTRY_CHAIN).tree
    merkle.verify_inclusion(merkle.leaf_hash(signed), 0, cpt.size, tree.inclusion_proof(0, cpt.size),
                            cpt.root)
