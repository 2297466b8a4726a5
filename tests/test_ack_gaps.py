"""An ack never frees what the ledger lacks: gaps, late arrivals, declared skips, a node restart.

A device frees every record up to the acked sequence number, so records
lost on the way (a broker restarted without persistence) must not be
passed over by an ack for later ones; numbers the device itself said it
skipped (an EV_SEQ_SKIP event) may be. Run through the real commands: a
producer and two witnesses (``lightnode node``) over one Mosquitto, a
device publishing signed transactions, every ack verified against the
node's and the witnesses' keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _need import missing
from _node_support import (
    HEARTBEAT,
    MOSQUITTO,
    MOSQUITTO_CONF,
    SEGMENT,
    Device,
    NodeProcess,
    free_port,
    make_registry,
    running_mosquitto,
    store_url,
)
from lightnode import keys, registry, wire
from lightnode.firmware.ln import ack
from lightnode.firmware.ln import wire as spec
from lightnode.ledger import checkpoint as cp
from lightnode.node import acks
from lightnode.node.mqtt import Transport

WITNESS_SEEDS = {"node-b": (b"\x1b" * 32, b"\x2b" * 32), "node-c": (b"\x1c" * 32, b"\x2c" * 32)}
NODE_KEYS = {
    registry.key_id(keys.public_key(s)): keys.public_key(s) for s in (b"\x0a" * 32, b"\x0c" * 32)
}
WITNESS_KEYS = {
    registry.key_id(keys.public_key(c)): keys.public_key(c) for c, _ in WITNESS_SEEDS.values()
}
QUIET_S = 1.5  # after a block is final, how long its acks may take to arrive


class Net:
    """A producer, two witnesses and a device's view of the broker: what it sends, the acks it gets."""

    def __init__(self, tmp: Path, port: int, urls: dict[str, str], reg_path: Path) -> None:
        self.tmp, self.port, self.urls, self.reg_path = tmp, port, urls, reg_path
        self.producer = NodeProcess(tmp, port, urls["p"], reg_path)
        self.witnesses: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self.acks: dict[bytes, list[acks.Ack]] = {}
        self.nacks: list[acks.Nack] = []
        self.final_size = 0
        self.records: dict[tuple[bytes, int], bytes] = {}
        self.client = Transport.from_url("mqtt://127.0.0.1:%d" % port, client_id="ack-gaps")
        self.broker: Broker | None = None

    def start(self, devices: list[Device]) -> None:
        for name, (cp_seed, ack_seed) in WITNESS_SEEDS.items():
            key_file = self.tmp / ("%s-keys.json" % name)
            key_file.write_text(
                json.dumps({"node": name, "checkpoint": cp_seed.hex(), "ack": ack_seed.hex()})
            )
            with open(self.tmp / ("%s.log" % name), "wb") as log:
                self.witnesses.append(
                    subprocess.Popen(
                        [sys.executable, "-c", "from lightnode.cli import main; main()", "node",
                         "--witness", "--segment", SEGMENT,
                         "--broker", "mqtt://127.0.0.1:%d" % self.port,
                         "--store", self.urls[name[-1]], "--registry", str(self.reg_path),
                         "--key-file", str(key_file)],
                        stdout=log, stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
        self.start_producer()
        for d in devices:
            self.client.subscribe(spec.TOPIC_ACK % (SEGMENT, d.hex), self._on_ack)
        self.client.subscribe(spec.TOPIC_COSIG % SEGMENT, self._on_cosig)
        self.client.start()
        assert self.client.wait_connected(5)
        time.sleep(1.0)  # the witnesses subscribe

    def start_producer(self) -> None:
        self.producer.stats_path.unlink(missing_ok=True)  # a restart waits for its own "subscribed"
        self.producer.start()
        self.producer.wait_ready()

    def stop(self) -> None:
        self.client.close()
        self.producer.stop()
        for w in self.witnesses:
            w.terminate()
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait(5)

    def _on_ack(self, _topic: str, payload: bytes) -> None:
        try:
            a = acks.verify_ack(payload, NODE_KEYS, WITNESS_KEYS)
        except acks.AckError:
            nack = acks.verify_nack(payload, NODE_KEYS)
            with self.lock:
                self.nacks.append(nack)
            return
        rec = self.records[(a.device, a.seq)]
        # what the device checks: its own record under that seq, in the cosigned tree
        acks.verify_ack(payload, NODE_KEYS, WITNESS_KEYS, record=rec, device_id=a.device)
        with self.lock:
            self.acks.setdefault(a.device, []).append(a)

    def _on_cosig(self, _topic: str, payload: bytes) -> None:
        size = cp.decode(payload).checkpoint.size
        with self.lock:
            self.final_size = max(self.final_size, size)

    def send(
        self, d: Device, seqs: range | list[int], kind: int = 4, body: dict | None = None
    ) -> None:
        for seq in seqs:
            t = time.time_ns() // 1000
            data, tx_id = d.signer.make(
                seq,
                d.prev,
                (t, 1, 500),
                kind,
                body or {0: "1.0", 1: 50_000, 2: 3, 3: 1, 4: 1, 5: 0},
            )
            d.prev = tx_id
            self.records[(d.device_id, seq)] = data
            self.client.publish(spec.TOPIC_TX % (SEGMENT, d.hex), data)

    def send_refused(self, d: Device, seq: int) -> None:
        """A record the device signed for another segment (moved, old ones pending): NACKed."""
        other = wire.Signer(d.seed, d.device_id, "feeder-8")
        data, tx_id = other.make(seq, d.prev, (time.time_ns() // 1000, 1, 500), 4, HEARTBEAT)
        d.prev = tx_id  # the device chains on what it signed
        self.records[(d.device_id, seq)] = data
        self.client.publish(spec.TOPIC_TX % (SEGMENT, d.hex), data)

    def acked(self, d: Device) -> list[int]:
        with self.lock:
            return [a.seq for a in self.acks.get(d.device_id, [])]

    def await_ack(self, d: Device, seq: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while seq not in self.acked(d):
            if time.monotonic() > deadline:
                pytest.fail(
                    "no ack for seq %d (acked %s); producer log:\n%s"
                    % (seq, self.acked(d), self.producer.log()[-3000:])
                )
            time.sleep(0.05)

    def await_final(self, entries: int, timeout: float = 20.0) -> None:
        """Until the producer has stored ``entries`` segment entries and a witness cosigned them, and a while after."""
        deadline = time.monotonic() + timeout
        while True:
            stored = self.producer.stats().get("stored", 0)
            with self.lock:
                final = self.final_size
            if stored >= entries and final >= stored:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    "not final: stored %s of %d, cosigned %d; producer log:\n%s"
                    % (stored, entries, final, self.producer.log()[-3000:])
                )
            time.sleep(0.05)
        time.sleep(QUIET_S)


class Broker:
    """Our Mosquitto (no persistence), which a test may SIGKILL and start again on the same port."""

    def __init__(self, stack: contextlib.ExitStack, conf: Path, port: int, tmp: Path) -> None:
        self.stack, self.conf, self.port, self.tmp = stack, conf, port, tmp
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        if not os.path.exists(MOSQUITTO):
            missing("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.runs += 1
        log = self.tmp / ("mosquitto-%d.log" % self.runs)
        self.proc = self.stack.enter_context(
            running_mosquitto(MOSQUITTO, self.conf, [self.port], log)
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)


@contextlib.contextmanager
def net(tmp: Path, kind: str, devices: list[Device]) -> Iterator[Net]:
    with contextlib.ExitStack() as stack:
        urls = {}
        for part in ("p", "b", "c"):
            (tmp / part).mkdir()
            urls[part] = stack.enter_context(store_url(kind, tmp / part))
        reg_path = tmp / "registry.db"
        reg = make_registry(reg_path, devices)
        admin = reg.as_operator("admin", b"\xad" * 32)
        for name, (cp_seed, ack_seed) in WITNESS_SEEDS.items():
            reg.add_node_key(name, "checkpoint", keys.public_key(cp_seed), admin)
            reg.add_node_key(name, "ack", keys.public_key(ack_seed), admin)
        reg.close()
        port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=port, inflight=4096, queued=200_000))
        n = Net(tmp, port, urls, reg_path)
        n.broker = Broker(stack, conf, port, tmp)
        n.broker.start()
        try:
            n.start(devices)
            yield n
        finally:
            n.stop()


def _lost_then_late(tmp: Path, kind: str, restart: bool) -> None:
    d = Device(31)
    with net(tmp, kind, [d]) as n:
        n.send(d, range(10))
        n.await_ack(d, 9)
        # 10..19 lost on the way: 20..29 are committed with the gap flag, and made final
        n.send(d, range(20, 30))
        n.await_final(30 - 10)
        assert max(n.acked(d)) == 9, n.acked(d)
        if restart:  # the watermark is made again from the store
            n.producer.kill()
            n.start_producer()
        # a redelivered record past the gap: no ack covers it, and none is sent (an ack for 9
        # again could name a record the device has freed since: it would count a bad ack)
        before = len(n.acked(d))
        n.client.publish(spec.TOPIC_TX % (SEGMENT, d.hex), n.records[(d.device_id, 25)])
        time.sleep(QUIET_S)
        assert n.acked(d)[before:] == [] and max(n.acked(d)) == 9, n.acked(d)
        # the device sends them again: the gap closes, and the ack covers everything
        n.send(d, range(10, 20))
        n.await_ack(d, 29)
        assert max(n.acked(d)[:before]) == 9 and max(n.acked(d)) == 29, n.acked(d)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_ack_never_passes_records_the_ledger_lacks(tmp_path: Path, kind: str) -> None:
    _lost_then_late(tmp_path, kind, restart=False)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_node_restart_keeps_the_rule(tmp_path: Path, kind: str) -> None:
    _lost_then_late(tmp_path, kind, restart=True)


def test_a_block_the_witnesses_missed_in_a_broker_restart_is_sent_again(tmp_path: Path) -> None:
    # The broker SIGKILLed and started again without persistence, the witnesses back after the
    # producer: the blocks cut in between reach no witness. The producer sends a witness the
    # blocks it has not cosigned again, per chain: the general chain's blocks, cosigned after
    # the restart, must not stand for the segment's (the segment block stayed never final, and
    # the device got no ack again however much the chain grew).
    d = Device(35)
    with net(tmp_path, "sqlite", [d]) as n:
        assert n.broker is not None
        n.send(d, range(5))
        n.await_ack(d, 4)
        for w in n.witnesses:
            os.kill(w.pid, signal.SIGSTOP)
        try:
            n.broker.kill()
            n.broker.start()
            assert n.client.wait_connected(10)
            deadline = time.monotonic() + 15
            while not n.producer.stats().get("connected"):
                assert time.monotonic() < deadline, "the producer did not reconnect"
                time.sleep(0.05)
            time.sleep(0.5)  # the producer's subscription is renewed with its CONNECT
            n.send(d, range(5, 10))  # committed and cut while no witness listens
            deadline = time.monotonic() + 15
            while n.producer.stats().get("stored", 0) < 10:
                assert time.monotonic() < deadline, n.producer.log()[-3000:]
                time.sleep(0.05)
            time.sleep(1.0)  # cut (block age 200 ms) and published to nobody
        finally:
            for w in n.witnesses:
                os.kill(w.pid, signal.SIGCONT)
        # the witnesses reconnect; new records, one a second, make new blocks (and catch-up tries)
        seq = 10
        deadline = time.monotonic() + 30
        while not n.acked(d) or max(n.acked(d)) < 9:
            if time.monotonic() > deadline:
                pytest.fail(
                    "no ack past 4 after the restart (acked %s); producer log:\n%s"
                    % (n.acked(d), n.producer.log()[-3000:])
                )
            n.send(d, [seq])
            seq += 1
            time.sleep(1.0)
        n.await_ack(d, seq - 1)


def _set_aside_event(seq: int, reason: str) -> dict:
    return {
        spec.E_TYPE: spec.EV_SET_ASIDE,
        spec.E_SEVERITY: spec.SEV_WARNING,
        spec.E_VALUE: seq,
        spec.E_LIMIT: ack.NACK_REASONS.index(reason),
        spec.E_TIME: time.time_ns() // 1000,
    }


def test_a_record_the_device_set_aside_after_a_nack_is_passed_a_nack_alone_is_not(
    tmp_path: Path,
) -> None:
    told, silent = Device(36), Device(37)
    with net(tmp_path, "sqlite", [told, silent]) as n:
        for d in (told, silent):
            n.send(d, range(5))
            n.send_refused(d, 5)
            n.await_ack(d, 4)
        deadline = time.monotonic() + 10
        while sorted(x.seq for x in n.nacks if x.seq == 5) != [5, 5]:
            assert time.monotonic() < deadline, "no NACK for seq 5: %s" % n.nacks
            time.sleep(0.05)
        reason = n.nacks[0].reason
        assert reason == ack.NR_TOPIC, n.nacks
        # one device says it set 5 aside (its own signed event at 6), the other says nothing
        n.send(told, [6], spec.KIND_EVENT, _set_aside_event(5, reason))
        n.send(told, range(7, 10))
        n.send(silent, range(6, 10))
        n.await_ack(told, 9)
        n.await_final(2 * 9)
        assert max(n.acked(silent)) == 4, n.acked(silent)
        # the rule holds when the watermark is made again from the store after a restart,
        # and a second event for the same seq (a reboot resent it, NACKed again) changes nothing
        n.producer.kill()
        n.start_producer()
        n.send(told, [10], spec.KIND_EVENT, _set_aside_event(5, reason))
        n.send(told, [11])
        n.send(silent, [10])
        n.await_ack(told, 11)
        n.await_final(2 * 9 + 3)
        assert max(n.acked(silent)) == 4, n.acked(silent)


def _skip_event(value: int) -> dict:
    return {
        spec.E_TYPE: spec.EV_SEQ_SKIP,
        spec.E_SEVERITY: spec.SEV_WARNING,
        spec.E_VALUE: value,
        spec.E_TIME: time.time_ns() // 1000,
    }


def test_numbers_the_device_said_it_skipped_are_passed_others_not(tmp_path: Path) -> None:
    told, short = Device(32), Device(33)
    with net(tmp_path, "sqlite", [told, short]) as n:
        for d in (told, short):
            n.send(d, range(5))
        # a reboot skipped 5..7: the skip event at 8 says so (value 3)
        n.send(told, [8], spec.KIND_EVENT, _skip_event(3))
        n.send(told, range(9, 13))
        # the other says only 6..7 (value 2): 5 is missing, not skipped
        n.send(short, [8], spec.KIND_EVENT, _skip_event(2))
        n.send(short, range(9, 13))
        n.await_ack(told, 12)
        n.await_final(2 * 10)
        assert max(n.acked(short)) == 4, n.acked(short)
        # 5 arrives after all: nothing is missing any more
        n.send(short, [5])
        n.await_ack(short, 12)


class _Out:
    def __init__(self) -> None:
        self.acks: list[int] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if topic.endswith("/ack"):
            self.acks.append(
                acks.verify_ack(payload, {ACK_KID: ACK_PUB, P_KID: P_PUB}, {W_KID: W_PUB}).seq
            )

    def subscribe(self, topic, handler, qos: int = 1) -> None:
        pass


P_SEED, W_SEED, ACK_SEED = b"\x71" * 32, b"\x72" * 32, b"\x73" * 32
P_PUB, W_PUB, ACK_PUB = (keys.public_key(s) for s in (P_SEED, W_SEED, ACK_SEED))
P_KID, W_KID, ACK_KID = (registry.key_id(k) for k in (P_PUB, W_PUB, ACK_PUB))


def test_after_a_restart_the_watermark_is_made_again_a_bounded_step_a_block(tmp_path: Path) -> None:
    from lightnode.ledger.chain import Ledger
    from lightnode.ledger.store import open_store
    from lightnode.node import quorum

    ledger = Ledger(open_store(str(tmp_path / "p.db")), P_SEED, P_KID, witnesses={W_KID: W_PUB})
    d = Device(34)

    def block(seqs, producer):
        for s in seqs:
            ledger.add_transaction(d.tx(seq=s))
        signed = ledger.cut(cp.SEGMENT_PREFIX + SEGMENT)
        producer.on_block(signed)
        assert producer.on_cosig(cp.cosign(signed.raw, W_SEED, W_KID)) is True

    top = [0]

    def next_blocks(producer, out, want):
        """One new record a block until the ack reaches ``want``; each step at most one look's worth."""
        for _ in range(8):
            if out.acks and out.acks[-1] == want:
                return
            before = out.acks[-1] if out.acks else -1
            top[0] += 1
            block([top[0]], producer)
            assert 0 < out.acks[-1] - before <= quorum.BREAKS_PER_LOOK + 1, out.acks
        pytest.fail("acks %s never reached %d" % (out.acks, want))

    out = _Out()
    p = quorum.Producer(ledger, out, SEGMENT, ACK_SEED, ACK_KID)
    n = 2 * quorum.BREAKS_PER_LOOK + 40
    block(range(0, n, 2), p)  # every odd number missing: each even one after 0 flagged gap
    assert out.acks == [0]
    top[0] = n - 1  # new ones from n on
    block(range(1, n - 3, 2), p)  # all but the last two odd ones come late
    assert out.acks == [0, quorum.BREAKS_PER_LOOK + 1]  # every one a break: one look's worth
    next_blocks(p, out, n - 4)  # and so on, a look a block, up to the first still missing
    # a restart: made again from the store, from the start, a look a block, to the same place
    out2 = _Out()
    p2 = quorum.Producer(ledger, out2, SEGMENT, ACK_SEED, ACK_KID)
    next_blocks(p2, out2, n - 4)
    block([n - 3, n - 1], p2)  # the last missing ones: the ack covers everything
    assert out2.acks[-1] == top[0], out2.acks
