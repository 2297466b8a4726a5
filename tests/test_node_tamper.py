"""The tamper battery against a running ``lightnode node`` and a Mosquitto of the test's own.

Every altered transaction is refused with the reason the spec gives and
a signed NACK on the ack topic of the device whose topic it came on; a
replay is taken once; a second, different transaction under a committed
sequence number is a fork (NACKed, both copies kept); 10,000 valid
transactions are all committed and none refused; shuffled arrivals are
committed in sequence order. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter

import cbor2
import pytest
from _node_support import (
    ACK_SEED,
    SEGMENT,
    Device,
    NodeProcess,
    make_registry,
    mosquitto,
    node_kids,
    store_url,
)
from lightnode import keys, wire
from lightnode.errors import WireError
from lightnode.firmware.ln import ack as spec_ack
from lightnode.firmware.ln import wire as spec
from lightnode.ledger.store import open_store
from lightnode.node import acks, mqtt
from nacl.signing import SigningKey

WAIT = 30.0


def _until(cond, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tamper-" + request.param)
    with store_url(request.param, tmp) as url, mosquitto(tmp) as port:
        devs = {i: Device(i) for i in range(1, 81)}
        revoked = Device(500)
        reg = make_registry(tmp / "reg.db", [*devs.values(), revoked])
        admin = reg.as_operator("admin", b"\xad" * 32)
        reg.revoke_device(revoked.device_id, "stolen", admin)
        reg.close()
        node = NodeProcess(
            tmp,
            port,
            url,
            tmp / "reg.db",
            SEGMENT,
            "--nack-burst",
            "1000000",
            "--nack-per-s",
            "1000000",
        )
        node.start()
        node.wait_ready()
        nacks: list[tuple[str, bytes]] = []
        sub = mqtt.Transport("127.0.0.1", port, "collector", clean_session=True)
        sub.subscribe("ln/%s/+/ack" % SEGMENT, lambda t, p: nacks.append((t, p)))
        sub.start()
        pub = mqtt.Transport("127.0.0.1", port, "publisher", clean_session=True)
        pub.start()
        assert sub.wait_connected(5) and pub.wait_connected(5)
        _until(lambda: sub.subacks > 0, 5, "collector subscription")
        store = open_store(url)
        try:
            yield {
                "node": node,
                "pub": pub,
                "nacks": nacks,
                "devs": devs,
                "revoked": revoked,
                "store": store,
                "url": url,
            }
        finally:
            store.close()
            pub.close()
            sub.close()
            assert node.stop() == 0, node.log()


def _topic(dev_hex: str) -> str:
    return spec.TOPIC_TX % (SEGMENT, dev_hex)


def _expected(topic_hex: str, data: bytes, known: dict[bytes, bytes]) -> str | None:
    """The reason the spec gives, found the simple way: decode, topic, registry, signature."""
    try:
        tx = wire.decode(data)
    except WireError as e:
        return e.reason
    if tx.device_id.hex() != topic_hex or tx.segment != SEGMENT:
        return spec_ack.NR_TOPIC
    key = known.get(tx.device_id)
    if key is None:
        return spec_ack.NR_UNKNOWN_DEVICE
    try:
        tx.verify(key)
    except WireError as e:
        return e.reason
    return None


def _envelope(protected: bytes, unprotected: dict, h: bytes, sig: bytes, tag: int = 18) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag, [protected, unprotected, h, sig]))


def _rejoin(
    tx: wire.Transaction,
    protected: bytes | None = None,
    unprotected: dict | None = None,
    tag: int = 18,
) -> bytes:
    env = _envelope(
        tx.protected if protected is None else protected,
        unprotected or {},
        tx.payload_hash,
        tx.signature,
        tag,
    )
    return wire.join(env, tx.payload)


def _stored(store, device: bytes) -> list[int]:
    return [e.seq for e in store.entries(chain="seg:" + SEGMENT, device=device)]


def _wait_received(env, n_before: int, n: int) -> None:
    _until(
        lambda: env["node"].stats().get("received", 0) >= n_before + n,
        WAIT,
        "%d messages at the node: %s" % (n, env["node"].stats()),
    )


def test_tamper_battery(env):
    node, pub, nacks, devs, store = env["node"], env["pub"], env["nacks"], env["devs"], env["store"]
    known = {d.device_id: d.public_key for d in devs.values()}
    base = devs[1]
    # committed first: what replays and forks refer to
    first = base.tx()
    forked = devs[2]
    fork_first = forked.tx()
    before = node.stats().get("received", 0)
    pub.publish(_topic(base.hex), first)
    pub.publish(_topic(forked.hex), fork_first)
    _until(lambda: node.stats().get("stored", 0) >= 2, WAIT, "first commits")

    cases: list[tuple[str, str, bytes, str]] = []  # (what, topic device, bytes, expected reason)
    sample = base.tx(seq=1)  # never sent whole: its altered copies are
    for i in range(len(sample)):
        for bit in range(8):
            b = bytearray(sample)
            b[i] ^= 1 << bit
            cases.append(("bit flip %d.%d" % (i, bit), base.hex, bytes(b), ""))
    for n in range(len(sample)):
        cases.append(("truncated to %d" % n, base.hex, sample[:n], ""))
    tx = wire.decode(sample)
    for alg in (spec.ALG_ED448, spec.ALG_ED25519, -7, "EdDSA"):
        p = cbor2.dumps({1: alg, 4: base.device_id, 258: -16, 259: 60}, canonical=True)
        cases.append(("alg %r" % (alg,), base.hex, _rejoin(tx, protected=p), ""))
    for tag in (17, 98, 19):
        cases.append(("tag %d" % tag, base.hex, _rejoin(tx, tag=tag), ""))
    moved = cbor2.dumps({1: -8, 258: -16, 259: 60}, canonical=True)
    cases.append(
        (
            "kid moved to unprotected",
            base.hex,
            _rejoin(tx, protected=moved, unprotected={4: base.device_id}),
            spec.R_PROTECTED,
        )
    )
    cases.append(
        (
            "extra unprotected header",
            base.hex,
            _rejoin(tx, unprotected={4: base.device_id}),
            spec.R_UNPROTECTED,
        )
    )
    stranger_key = Device(900, seed=b"\x77" * 32)
    wrong = wire.Signer(stranger_key.seed, devs[3].device_id, SEGMENT)
    cases.append(
        (
            "wrong key",
            devs[3].hex,
            wrong.make(
                0,
                bytes(32),
                (time.time_ns() // 1000, 1, 500),
                4,
                {0: "1", 1: 1, 2: 1, 3: 1, 4: 1, 5: 0},
            )[0],
            spec.R_SIGNATURE,
        )
    )
    unknown = Device(901)
    cases.append(("unknown device", unknown.hex, unknown.tx(), spec_ack.NR_UNKNOWN_DEVICE))
    revoked = env["revoked"]
    cases.append(("revoked device", revoked.hex, revoked.tx(), spec_ack.NR_REVOKED_DEVICE))
    cases.append(("topic of another device", devs[5].hex, devs[4].tx(), spec_ack.NR_TOPIC))
    # non-canonical: the framing, and an authentic signature over a non-canonical payload
    cases.append(
        ("non-canonical array head", base.hex, b"\x98\x02" + sample[1:], spec.R_NON_CANONICAL)
    )
    d6 = devs[6]
    p = cbor2.loads(wire.decode(d6.tx(seq=0)).payload)
    payload = cbor2.dumps(dict(sorted(p.items(), reverse=True)))  # keys out of order
    h = hashlib.sha256(payload).digest()
    prot = wire.protected_header(d6.device_id)
    sig = SigningKey(d6.seed).sign(wire.sig_structure(prot, h)).signature
    cases.append(
        (
            "non-canonical payload, signed",
            d6.hex,
            wire.join(wire.envelope(prot, h, sig), payload),
            spec.R_NON_CANONICAL,
        )
    )
    cases.append(
        ("oversized", base.hex, b"\x82" + bytes(spec.MAX_TX_BYTES + 100), spec.R_OVERSIZED)
    )
    cases.append(
        (
            "fork",
            forked.hex,
            forked.tx(seq=0, body={0: "2.0", 1: 1, 2: 1, 3: 1, 4: 1, 5: 0}),
            spec_ack.NR_FORK,
        )
    )

    expected: Counter[tuple[str, str]] = Counter()
    for what, dev_hex, data, reason in cases:
        computed = _expected(dev_hex, data, known) if what != "fork" else spec_ack.NR_FORK
        if what == "revoked device":
            computed = spec_ack.NR_REVOKED_DEVICE  # the simple path does not know revocations
        assert computed is not None, "%s would pass: a forgery" % what
        if reason:
            assert computed == reason, (what, computed)
        expected[(dev_hex, computed)] += 1
    nacks.clear()
    before = node.stats().get("received", 0)
    for _, dev_hex, data, _ in cases:
        pub.publish(_topic(dev_hex), data)
    pub.publish(_topic(base.hex), first)  # the replay: taken once, not refused
    _wait_received(env, before, len(cases) + 1)
    total = sum(expected.values())
    _until(lambda: len(nacks) >= total, WAIT, "%d NACKs (have %d)" % (total, len(nacks)))
    time.sleep(0.3)  # nothing more may come
    ack_kid = node_kids()["ack"]
    got: Counter[tuple[str, str]] = Counter()
    for topic, data in nacks:
        n = acks.verify_nack(data, {ack_kid: keys.public_key(ACK_SEED)})
        got[(topic.split("/")[2], n.reason)] += 1
    assert got == expected
    s = node.stats()
    assert sum(s["refused"].values()) == total
    assert s["duplicate"] >= 1
    # the replay left one entry; the fork kept both copies
    assert _stored(store, base.device_id) == [0]
    forks = [f for f in store.flags(kind="fork") if f.device == forked.device_id]
    assert len(forks) == 1 and {forks[0].evidence, forks[0].evidence2} >= {fork_first}
    assert _stored(store, forked.device_id) == [0]
    # counted per source and reason, strangers under one source
    _until(lambda: sum(r["count"] for r in store.rejections()) == total, WAIT, "rejection counts")
    sources = {r["source"] for r in store.rejections()}
    assert "stranger" in sources and unknown.hex not in sources


def test_ten_thousand_valid_none_refused(env):
    node, pub, store, devs = env["node"], env["pub"], env["store"], env["devs"]
    fleet = [devs[i] for i in range(10, 60)]  # 50 devices x 200
    msgs = [(d, d.tx()) for _ in range(200) for d in fleet]
    rng = random.Random(7)
    for i in range(0, len(msgs), 500):  # arrivals reordered within windows of 500
        window = msgs[i : i + 500]
        rng.shuffle(window)
        msgs[i : i + 500] = window
    refused0 = sum(node.stats().get("refused", {}).values())
    stored0 = node.stats().get("stored", 0)
    for d, data in msgs:
        pub.publish(_topic(d.hex), data)
    _until(
        lambda: node.stats().get("stored", 0) >= stored0 + 10_000,
        60,
        "10,000 commits: %s" % node.stats(),
    )
    assert sum(node.stats()["refused"].values()) == refused0
    for d in fleet:
        assert _stored(store, d.device_id) == list(range(200))
    assert not [f for f in store.flags() if f.device in {d.device_id for d in fleet}]


def test_fully_shuffled_committed_in_sequence_order(env):
    node, pub, store, devs = env["node"], env["pub"], env["store"], env["devs"]
    fleet = [devs[i] for i in range(60, 70)]
    msgs = [(d, d.tx()) for _ in range(100) for d in fleet]
    random.Random(11).shuffle(msgs)
    stored0 = node.stats().get("stored", 0)
    for d, data in msgs:
        pub.publish(_topic(d.hex), data)
    _until(lambda: node.stats().get("stored", 0) >= stored0 + 1000, WAIT, "1,000 commits")
    for d in fleet:
        assert _stored(store, d.device_id) == list(range(100))
    assert not [f for f in store.flags() if f.device in {d.device_id for d in fleet}]
