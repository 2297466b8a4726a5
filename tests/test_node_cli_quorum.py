"""Three ``lightnode node`` processes over one Mosquitto: a producer and two ``--witness``.

What DESIGN's data path promises a device, end to end through the real
commands: it publishes, blocks become final (producer + one witness), and
a block ack comes back on its ack topic that the SDK verifies against the
node's and the witnesses' keys, covering its highest sequence number. With
either witness stopped, finality goes on.
"""

import contextlib
import json
import subprocess
import sys
import threading
import time

import pytest
from _node_support import Device, NodeProcess, make_registry, mosquitto, store_url
from click.testing import CliRunner
from lightnode import keys, registry
from lightnode.cli import main
from lightnode.firmware.ln import wire
from lightnode.node import acks
from lightnode.node.mqtt import Transport

WITNESS_SEEDS = {"node-b": (b"\x1b" * 32, b"\x2b" * 32), "node-c": (b"\x1c" * 32, b"\x2c" * 32)}


def _witness(tmp, name, port, reg_path, store):
    cp_seed, ack_seed = WITNESS_SEEDS[name]
    key_file = tmp / ("%s-keys.json" % name)
    key_file.write_text(json.dumps({"node": name, "checkpoint": cp_seed.hex(), "ack": ack_seed.hex()}))
    log = open(tmp / ("%s.log" % name), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-c", "from lightnode.cli import main; main()", "node", "--witness",
         "--segment", "feeder-9", "--broker", "mqtt://127.0.0.1:%d" % port,
         "--store", store, "--registry", str(reg_path),
         "--key-file", str(key_file)],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_producer_and_two_witnesses_ack_devices_and_survive_a_stopped_witness(tmp_path, kind):
    with contextlib.ExitStack() as stores:
        urls = {n: stores.enter_context(store_url(kind, tmp_path / n)) for n in ("p", "b", "c")}
        _three_nodes(tmp_path, urls)


def _three_nodes(tmp_path, urls):
    for n in urls:
        (tmp_path / n).mkdir(exist_ok=True)
    dev = Device(7)
    reg_path = tmp_path / "registry.db"
    reg = make_registry(reg_path, [dev])
    admin = reg.as_operator("admin", b"\xad" * 32)
    for name, (cp_seed, ack_seed) in WITNESS_SEEDS.items():
        reg.add_node_key(name, "checkpoint", keys.public_key(cp_seed), admin)
        reg.add_node_key(name, "ack", keys.public_key(ack_seed), admin)
    reg.close()
    node_keys = {registry.key_id(keys.public_key(s)): keys.public_key(s)
                 for s in (b"\x0a" * 32, b"\x0c" * 32)}
    witness_keys = {registry.key_id(keys.public_key(cp)): keys.public_key(cp)
                    for cp, _ in WITNESS_SEEDS.values()}

    with mosquitto(tmp_path) as port:
        witnesses = {name: _witness(tmp_path, name, port, reg_path, urls[name[-1]])
                     for name in WITNESS_SEEDS}
        producer = NodeProcess(tmp_path, port, urls["p"], reg_path)
        producer.start()
        try:
            producer.wait_ready()
            got = []
            arrived = threading.Event()

            def on_ack(_topic, payload):
                got.append(payload)
                arrived.set()

            device = Transport.from_url("mqtt://127.0.0.1:%d" % port, client_id="dev-7")
            device.subscribe(wire.TOPIC_ACK % ("feeder-9", dev.hex), on_ack)
            device.start()
            assert device.wait_connected(5)
            time.sleep(1.0)  # the witnesses subscribe

            def send_and_await_ack(n):
                last = None
                for _ in range(n):
                    last = dev.tx()
                    device.publish(wire.TOPIC_TX % ("feeder-9", dev.hex), last)
                want = dev.seq - 1
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    arrived.wait(0.5)
                    arrived.clear()
                    for data in list(got):
                        try:
                            ack = acks.verify_ack(data, node_keys, witness_keys)
                        except acks.AckError:
                            continue
                        if ack.seq == want:
                            acks.verify_ack(data, node_keys, witness_keys, record=last,
                                            device_id=dev.device_id)
                            return ack
                pytest.fail("no verified ack for seq %d; producer log:\n%s\nwitness logs:\n%s" % (
                    want, producer.log()[-3000:],
                    "\n".join((tmp_path / ("%s.log" % n)).read_text()[-1500:] for n in WITNESS_SEEDS)))

            send_and_await_ack(5)
            _stop(witnesses.pop("node-b"))  # either witness may go: one is enough
            send_and_await_ack(5)
            device.close()
        finally:
            producer.stop()
            for proc in witnesses.values():
                _stop(proc)

    # The investigator's end: the producer's store audits against the registry, and a
    # bundle of the device's transactions verifies against only the node and witness keys
    # (no registry key is trusted: the registry is anchored through the cosigned checkpoints).
    store = urls["p"]
    runner = CliRunner()
    audit = runner.invoke(main, ["audit", "--store", store, "--registry", str(reg_path)])
    assert audit.exit_code == 0, audit.output
    bundle = tmp_path / "case.lnev"
    export = runner.invoke(main, ["evidence", "export", "--store", store, "--registry", str(reg_path),
                                  "--device", dev.hex, "--out", str(bundle)])
    assert export.exit_code == 0, export.output
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({
        "nodes": {k.hex(): v.hex() for k, v in node_keys.items()},
        "witnesses": {k.hex(): v.hex() for k, v in witness_keys.items()},
        "registry": [], "quorum": 1}))
    verify = runner.invoke(main, ["evidence", "verify", str(bundle), "--trust", str(trust), "--json"])
    assert verify.exit_code == 0, verify.output
    report = json.loads(verify.output)
    assert len(report["transactions"]) >= 5, report
