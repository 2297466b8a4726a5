"""Witnesses and quorum (lightnode.node.quorum, lightnode.node.witness).

Three nodes on loopback over a Mosquitto of the test's own: the producer in
this process, two witnesses as child processes (``witness.run``). Blocks
become final; with either witness stopped they still do, and a witness
that comes back catches up. Then a witness fed a forged block, an
inconsistent checkpoint, or a second checkpoint at one size raises a fork
alarm and does not cosign. Every wait is bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _node_support import SEGMENT, Device, mosquitto
from lightnode import keys, registry
from lightnode.firmware.ln import wire as spec
from lightnode.ledger import checkpoint as cp
from lightnode.ledger.chain import Ledger
from lightnode.ledger.store import FLAG_CHECKPOINT_FORK, open_store
from lightnode.node import acks, quorum, witness
from lightnode.node.mqtt import Transport

P_SEED, A_SEED, B_SEED, ACK_SEED = b"\x51" * 32, b"\x52" * 32, b"\x53" * 32, b"\x54" * 32
P_PUB, A_PUB, B_PUB, ACK_PUB = (keys.public_key(s) for s in (P_SEED, A_SEED, B_SEED, ACK_SEED))
P_KID, A_KID, B_KID, ACK_KID = (registry.key_id(k) for k in (P_PUB, A_PUB, B_PUB, ACK_PUB))
PRODUCERS = {P_KID: P_PUB}
WITNESSES = {A_KID: A_PUB, B_KID: B_PUB}
CHAIN = cp.SEGMENT_PREFIX + SEGMENT
WAIT = 10.0

WITNESS_SCRIPT = """
import json, signal, sys, threading
from lightnode.node import witness
from lightnode.node.mqtt import Transport
a = json.loads(sys.argv[1])
h = bytes.fromhex
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
t = Transport("127.0.0.1", a["port"], client_id=a["name"], clean_session=True)
t.start()
assert t.wait_connected(10)
w = witness.run(t, a["store"], a["segment"], h(a["seed"]), h(a["kid"]),
                {h(k): h(v) for k, v in a["producers"].items()},
                {h(k): h(v) for k, v in a["witnesses"].items()})
print("ready", flush=True)
stop.wait()
t.close()
"""


class WitnessProcess:
    def __init__(self, tmp: Path, name: str, port: int, seed: bytes, kid: bytes) -> None:
        self.store = str(tmp / ("%s.db" % name))
        self.log = tmp / ("%s.log" % name)
        self.arg = json.dumps(
            {
                "port": port,
                "name": name,
                "store": self.store,
                "segment": SEGMENT,
                "seed": seed.hex(),
                "kid": kid.hex(),
                "producers": {k.hex(): v.hex() for k, v in PRODUCERS.items()},
                "witnesses": {k.hex(): v.hex() for k, v in WITNESSES.items()},
            }
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WITNESS_SCRIPT, self.arg],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        line = _bounded_readline(self.proc.stdout, WAIT)
        assert line.strip() == b"ready", self.log.read_text()
        time.sleep(0.2)  # its SUBSCRIBE went before "ready"; let the broker take it

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _bounded_readline(stream, timeout: float) -> bytes:
    out: list[bytes] = []
    t = threading.Thread(target=lambda: out.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else b""


def _until(what: str, cond, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.02)


class ProducerNode:
    """The producing node, in this process: a ledger, its transport, the Producer, and a device-side ack listener."""

    def __init__(self, tmp: Path, port: int) -> None:
        self.ledger = Ledger(
            open_store(str(tmp / "producer.db")),
            P_SEED,
            P_KID,
            witnesses=WITNESSES,
            quorum=1,
        )
        self.t = Transport("127.0.0.1", port, client_id="producer", clean_session=True)
        self.p = quorum.Producer(self.ledger, self.t, SEGMENT, ACK_SEED, ACK_KID, chunk_bytes=600)
        self.t.subscribe(spec.TOPIC_COSIG % SEGMENT, lambda topic, m: self.p.on_cosig(m))
        self.acks: list[tuple[str, bytes]] = []
        self.t.subscribe("ln/%s/+/ack" % SEGMENT, lambda topic, m: self.acks.append((topic, m)))
        self.t.start()
        assert self.t.wait_connected(WAIT)
        time.sleep(0.2)

    def block(self, txs: list[bytes]):
        with self.p.lock:
            for data in txs:
                assert self.ledger.add_transaction(data).status == "added"
            s = self.ledger.cut(CHAIN)
            assert s is not None
            self.p.on_block(s)
        return s

    def final(self, size: int) -> bool:
        with self.p.lock:
            b = self.ledger.store.block_at_size(CHAIN, size)
            return b is not None and b.final

    def cosigners(self, size: int) -> set[bytes]:
        with self.p.lock:
            b = self.ledger.store.block_at_size(CHAIN, size)
            assert b is not None
            return {k for k, _ in self.ledger.store.cosignatures(CHAIN, b.height)}

    def close(self) -> None:
        self.t.close()


def test_three_nodes_final_with_either_witness_stopped(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        wa = WitnessProcess(tmp_path, "witness-a", port, A_SEED, A_KID)
        wb = WitnessProcess(tmp_path, "witness-b", port, B_SEED, B_KID)
        wa.start()
        wb.start()
        node = ProducerNode(tmp_path, port)
        d1, d2 = Device(1), Device(2)
        records: dict[tuple[bytes, int], bytes] = {}

        def txs(n: int) -> list[bytes]:
            out = []
            for d in (d1, d2):
                for _ in range(n):
                    seq = d.seq
                    data = d.tx()
                    records[(d.device_id, seq)] = data
                    out.append(data)
            return out

        try:
            # both witnesses up: final, cosigned by both, one ack per device
            s1 = node.block(txs(3))  # 6 entries, chunked (600-byte chunks)
            _until("block 1 final", lambda: node.final(s1.checkpoint.size))
            _until("both cosignatures", lambda: node.cosigners(6) == {A_KID, B_KID})
            _until("two acks", lambda: len(node.acks) == 2)
            for topic, data in node.acks:
                a = acks.verify_ack(data, {P_KID: P_PUB, ACK_KID: ACK_PUB}, WITNESSES)
                assert topic == spec.TOPIC_ACK % (SEGMENT, a.device.hex())
                assert a.seq == 2  # cumulative: the highest in the block
                acks.verify_ack(
                    data,
                    {P_KID: P_PUB, ACK_KID: ACK_PUB},
                    WITNESSES,
                    record=records[(a.device, 2)],
                    device_id=a.device,
                )

            # witness A stopped: B alone makes it final
            wa.stop()
            s2 = node.block(txs(1))
            _until("block 2 final without A", lambda: node.final(s2.checkpoint.size))
            assert node.cosigners(s2.checkpoint.size) == {B_KID}
            _until("acks of block 2", lambda: len(node.acks) == 4)

            # A back, B stopped: A catches up on block 2, and block 3 is final by A alone
            wa.start()
            wb.stop()
            s3 = node.block(txs(2))
            _until("block 3 final without B", lambda: node.final(s3.checkpoint.size))
            assert node.cosigners(s3.checkpoint.size) == {A_KID}
            _until("A cosigned block 2 late", lambda: A_KID in node.cosigners(s2.checkpoint.size))
            _until("acks of block 3", lambda: len(node.acks) == 6)
            assert node.p.forks == 0
        finally:
            node.close()
            wa.stop()
            wb.stop()
        # the witnesses hold the same blocks as the producer, and no alarm
        with open_store(wa.store) as st:
            assert [b.header_hash for b in st.blocks(CHAIN)] == [
                b.header_hash for b in node.ledger.store.blocks(CHAIN)
            ]
            assert st.flags() == []
        with open_store(wb.store) as st:
            assert len(st.blocks(CHAIN)) == 2 and st.flags() == []


# -- one witness, fed directly ----------------------------------------------------------


class Fed:
    """A witness with its cosignatures caught in a list, and a producer's ledger to feed it from."""

    def __init__(self, tmp: Path, name: str = "w") -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.w = witness.Witness(
            open_store(str(tmp / ("%s.db" % name))),
            SEGMENT,
            A_SEED,
            A_KID,
            PRODUCERS,
            WITNESSES,
            publish=lambda topic, m: self.sent.append((topic, m)),
        )

    def feed(self, messages: list[bytes]) -> str:
        result = ""
        for m in messages:
            result = self.w.on_block_message(m)
        return result


class Out:
    """A transport that keeps what is published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, payload))

    def subscribe(self, topic, handler, qos: int = 1) -> None:
        pass

    def blocks(self) -> list[bytes]:
        return [m for t, m in self.published if t == spec.TOPIC_BLOCK % SEGMENT]


def _producer(tmp: Path, name: str = "p.db", chunk: int = quorum.CHUNK_BYTES):
    ledger = Ledger(open_store(str(tmp / name)), P_SEED, P_KID, witnesses=WITNESSES)
    out = Out()
    return ledger, out, quorum.Producer(ledger, out, SEGMENT, ACK_SEED, ACK_KID, chunk_bytes=chunk)


def _cut(ledger: Ledger, p: quorum.Producer, out: Out, txs: list[bytes]) -> list[bytes]:
    for data in txs:
        ledger.add_transaction(data)
    s = ledger.cut(CHAIN)
    assert s is not None
    out.published.clear()
    p.on_block(s)
    # only the new block's messages (a lagging witness is also sent the ones it missed)
    return [m for m in out.blocks() if quorum.decode_block_message(m).checkpoint == s.raw]


def _alarm_kinds(f: Fed) -> list[str]:
    return [a.kind for a in f.w.fork_alarms()]


def test_chunks_out_of_order_and_idempotent(tmp_path: Path) -> None:
    f = Fed(tmp_path)
    ledger, out, p = _producer(tmp_path, chunk=400)
    d = Device(3)
    b1 = _cut(ledger, p, out, [d.tx() for _ in range(4)])
    assert len(b1) > 1
    b2 = _cut(ledger, p, out, [d.tx() for _ in range(2)])
    # block 2 before block 1, chunks reversed: held, then both applied in order
    assert f.feed(list(reversed(b2))) == witness.WAITING
    assert f.feed(list(reversed(b1))) == witness.COSIGNED
    assert f.w.cosigned == 2 and len(f.sent) == 2
    for topic, cosig in f.sent:
        assert topic == spec.TOPIC_COSIG % SEGMENT
        assert p.on_cosig(cosig) is True  # final: acks out
    assert f.feed(b1) == witness.RECOSIGNED and f.sent[-1] == f.sent[0]
    assert _alarm_kinds(f) == []


def test_forged_block_is_an_alarm_and_not_cosigned(tmp_path: Path) -> None:
    f = Fed(tmp_path)
    ledger, out, p = _producer(tmp_path)
    d = Device(4)
    assert f.feed(_cut(ledger, p, out, [d.tx() for _ in range(3)])) == witness.COSIGNED
    real = _cut(ledger, p, out, [d.tx() for _ in range(2)])
    m = quorum.decode_block_message(real[0])
    other = Device(5).tx()  # an authentic transaction, not the one the checkpoint covers
    forged = quorum.block_messages(
        m.checkpoint, m.start, list(m.consistency), [m.entries[0], other]
    )
    assert f.feed(forged) == witness.ALARM
    assert _alarm_kinds(f) == [witness.FLAG_FORGED_BLOCK] and len(f.sent) == 1
    # the real block is still cosigned after
    assert f.feed(real) == witness.COSIGNED and len(f.sent) == 2


def test_inconsistent_checkpoint_is_an_alarm(tmp_path: Path) -> None:
    f = Fed(tmp_path)
    ledger, out, p = _producer(tmp_path)
    d = Device(6)
    first = [d.tx() for _ in range(3)]
    assert f.feed(_cut(ledger, p, out, first)) == witness.COSIGNED
    # the same producer key signs another history: 3 other entries, then a block on top
    ledger2, out2, p2 = _producer(tmp_path, "p2.db")
    e = Device(7)
    _cut(ledger2, p2, out2, [e.tx() for _ in range(3)])
    nxt = _cut(ledger2, p2, out2, [e.tx() for _ in range(2)])
    assert f.feed(nxt) == witness.ALARM
    assert _alarm_kinds(f) == [witness.FLAG_INCONSISTENT] and len(f.sent) == 1
    flag = f.w.fork_alarms()[0]
    assert cp.decode(flag.evidence).checkpoint.size == 3
    assert cp.decode(flag.evidence2).checkpoint.size == 5
    # the consistency proof is checked even when prev is right: a forged proof
    ok = _cut(ledger, p, out, [d.tx() for _ in range(2)])
    m = quorum.decode_block_message(ok[0])
    bad = quorum.block_messages(
        m.checkpoint, m.start, [bytes(32)] * len(m.consistency), list(m.entries)
    )
    assert f.feed(bad) == witness.ALARM and len(f.sent) == 1


def test_two_checkpoints_at_one_size(tmp_path: Path) -> None:
    f = Fed(tmp_path)
    ledger, out, p = _producer(tmp_path)
    ledger2, out2, p2 = _producer(tmp_path, "p2.db")
    d8, d9 = Device(8), Device(9)
    assert f.feed(_cut(ledger, p, out, [d8.tx() for _ in range(2)])) == witness.COSIGNED
    assert f.feed(_cut(ledger2, p2, out2, [d9.tx() for _ in range(2)])) == witness.ALARM
    [flag] = f.w.fork_alarms()
    assert flag.kind == FLAG_CHECKPOINT_FORK and flag.evidence != flag.evidence2
    assert len(f.sent) == 1
    # another witness's cosignature of that other checkpoint: an alarm too, its own evidence
    s2 = ledger2.store.block_at_size(CHAIN, 2)
    assert s2 is not None
    assert f.w.on_cosig(cp.cosign(s2.signed, B_SEED, B_KID)) == witness.ALARM
    assert _alarm_kinds(f) == [FLAG_CHECKPOINT_FORK] * 2
    assert f.w.on_cosig(cp.cosign(s2.signed, B_SEED, B_KID)) == witness.ALARM
    assert len(f.w.fork_alarms()) == 2  # the same evidence again: one flag
    # and the producer that gets a cosignature of a checkpoint not its own flags it
    assert p.on_cosig(cp.cosign(s2.signed, B_SEED, B_KID)) is False and p.forks == 1


def test_refused_without_alarm(tmp_path: Path) -> None:
    f = Fed(tmp_path)
    ledger, out, p = _producer(tmp_path)
    msgs = _cut(ledger, p, out, [Device(10).tx()])
    m = quorum.decode_block_message(msgs[0])
    stranger = cp.cosign(m.checkpoint, b"\x99" * 32, b"stranger")  # a checkpoint by no producer
    assert f.feed(quorum.block_messages(stranger, 0, [], list(m.entries))) == witness.REFUSED
    assert f.feed([b"\xa0"]) == witness.REFUSED
    assert _alarm_kinds(f) == [] and f.sent == []
    assert f.feed(msgs) == witness.COSIGNED


def test_a_backlog_block_larger_than_a_transaction_is_cosigned(tmp_path: Path) -> None:
    # After an outage a device's backlog arrives at once: the block message is far over the
    # 16 KB transaction limit, and must still be taken (the limit of a block message is its own).
    f = Fed(tmp_path)
    ledger, out, p = _producer(tmp_path)
    d = Device(4)
    msgs = _cut(ledger, p, out, [d.tx() for _ in range(120)])
    assert len(msgs) == 1 and len(msgs[0]) > spec.MAX_TX_BYTES
    assert f.feed(msgs) == witness.COSIGNED
    assert _alarm_kinds(f) == []
