"""The emulated light node's own rules, without a broker: windows, events, NACKs, the tamperer's bytes.

End to end (broker, full nodes, acks) the fleet is tested by tests/test_simulate.py.
"""

import pytest
from lightnode import keys, wire
from lightnode.errors import VerifyError
from lightnode.firmware.ln import ack as spec_ack
from lightnode.firmware.ln import wire as spec
from lightnode.node import acks
from lightnode.simulator import signals
from lightnode.simulator.attacks import _spoil
from lightnode.simulator.fleet import Frame, Keys, LightNode, PmuSignalSource

ACK_SEED = b"\x0a" * 32
ACK_KID = b"ack-kid1"


def _node(source=None, **kw):
    seed = bytes(range(32))
    n = LightNode("pmu-1", b"LN\x00\x00\x00\x00\x00\x01", seed, source or PmuSignalSource(seed=3),
                  window_s=5, **kw)
    n.bind("feeder-7", Keys({ACK_KID: acks.public_key(ACK_SEED)}, {}), None)
    return n


def test_a_window_is_one_readings_transaction_of_what_the_pmu_measured():
    src = PmuSignalSource(seed=3, t0_us=signals.T0_US)
    n = _node(src)
    n.close_window(5.0)
    n.close_window(10.0)  # the second window closes with a heartbeat (every 2 windows)
    kinds = [r.kind for r in n.records.values()]
    assert kinds == [spec.KIND_READINGS, spec.KIND_READINGS, spec.KIND_HEARTBEAT]
    first = wire.verify(n.records[0].data, keys.public_key(n.seed))
    (series,) = first.readings()
    frames = src.frames(0.0, 5.0)
    assert series.times == [f.t_us for f in frames] and len(frames) == 250
    assert [p.values for p in series.points] == [[f.values[p.id] for f in frames]
                                                 for p in series.points]
    second = wire.decode(n.records[1].data)
    assert second.prev == first.id and second.seq == 1  # the device's hash chain
    assert n.records[0].readings == 250 * len(signals.POINTS)


class _Breaker:
    """A device whose status point changes once: an event closes the window at once."""

    name, kind, rate_hz = "relay", "relay", 10.0
    points = [(1, 0), (10, 1)]
    status_points = frozenset({1})
    trace: dict = {}

    def frames(self, t0, t1):
        out = []
        for k in range(int(t0 * 10), int(t1 * 10)):
            out.append(Frame(signals.T0_US + k * 100_000, {1: 2 if k < 23 else 1, 10: 23_000 + k}))
        return out


def test_a_status_change_is_an_event_between_two_readings():
    n = _node(_Breaker())
    n.close_window(5.0)
    kinds = [r.kind for r in n.records.values()]
    assert kinds == [spec.KIND_READINGS, spec.KIND_EVENT, spec.KIND_READINGS]
    ev = wire.decode(n.records[1].data)
    assert ev.body[spec.E_TYPE] == spec.EV_STATUS and ev.body[spec.E_VALUE] == 1
    assert ev.body[spec.E_TIME] == signals.T0_US + 23 * 100_000
    before, after = (wire.decode(n.records[i].data).readings()[0] for i in (0, 2))
    assert len(before.times) == 23 and len(after.times) == 27


def test_nacks_resend_spoiled_bytes_set_aside_a_refused_device_and_ignore_strangers():
    n = _node()
    n.close_window(5.0)
    r = n.records[0]
    now = 1_700_000_000_000_000

    def nack(reason, tx_id=r.tx_id, seq=0):
        return acks.make_nack(ACK_SEED, ACK_KID, n.device_id, seq, tx_id, reason, now)

    n._on_ack("t", nack(spec.R_SIGNATURE))  # spoiled on the way: our copy goes again
    assert r.resends == 1 and n.stats["resent"] == 1 and 0 in n.pending
    n._on_ack("t", nack(spec.R_SIGNATURE, tx_id=bytes(32)))  # someone's bytes under our number
    assert r.resends == 2 and 0 in n.pending
    n._on_ack("t", nack(spec_ack.NR_FORK, tx_id=bytes(32)))  # a clone's copy refused: not ours
    assert 0 in n.pending and n.stats["foreign_nacks"] == 2
    n._on_ack("t", nack(spec_ack.NR_UNKNOWN_DEVICE, seq=7))  # a number we never signed
    assert n.stats["foreign_nacks"] == 3
    forged = acks.make_nack(b"\x0b" * 32, ACK_KID, n.device_id, 0, r.tx_id,
                            spec_ack.NR_REVOKED_DEVICE, now)
    n._on_ack("t", forged)  # not the node's key: changes nothing
    assert 0 in n.pending and n.stats["bad_acks"] == 1
    n._on_ack("t", nack(spec_ack.NR_REVOKED_DEVICE))  # the device itself refused: set aside
    assert 0 not in n.pending and r.refused == spec_ack.NR_REVOKED_DEVICE


def test_the_tamperer_changes_a_reading_so_that_only_the_signature_tells():
    seed = bytes(range(32))
    w = signals.pmu_window(5, 50, 1)
    from lightnode import readings

    data, tx_id = wire.make(seed, b"LN000001", "feeder-7", 4, bytes(32), (1, 1, 1),
                            spec.KIND_READINGS, readings.encode_body([w.series()]))
    spoiled = _spoil(data)
    assert spoiled is not None and spoiled != data
    tx = wire.decode(spoiled)  # well-formed, canonical, its payload hash holds
    assert tx.seq == 4 and tx.device_id == b"LN000001" and tx.id != tx_id
    with pytest.raises(VerifyError) as e:
        tx.verify(keys.public_key(seed))
    assert e.value.reason == spec.R_SIGNATURE
    assert _spoil(b"\x82\x00") is None
