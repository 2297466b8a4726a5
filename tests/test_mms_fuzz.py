"""Fuzz the MMS client's parsers of remote bytes: any input parses or raises the
driver's own error (MmsError), nothing else, and never hangs.

Random bytes, and mutations (flips, cuts, insertions) of a session captured
from libiec61850, through BER, MMS Data, every PDU parser, the ISO layers
and the whole sans-IO connection.
"""

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode.drivers.iec61850 import ber, client, iso, mms
from lightnode.drivers.iec61850.errors import MmsError

sys.path.insert(0, str(Path(__file__).resolve().parent / "device"))
import test_mms_codec as golden  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MMS_BODY_START = {"READ": 7 + 4, "REPORT": 7 + 4}


def _only_driver_errors(fn, *args):
    try:
        fn(*args)
    except MmsError:
        pass


def _mutate(data, draw_ops):
    b = bytearray(data)
    for kind, pos, val in draw_ops:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] = val
        elif kind == 1:
            del b[i:]
        elif kind == 2:
            b.insert(i, val)
        else:
            b[i] ^= 1 << (val % 8)
    return bytes(b)


OPS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6)


def _all_parsers(b):
    n = len(b)
    _only_driver_errors(ber.read_tlv, b, 0, n)
    _only_driver_errors(mms.decode_data, b, 0, n)
    _only_driver_errors(mms.decode_list, b, 0, n)
    _only_driver_errors(mms.parse_pdu, b, 0, n)
    _only_driver_errors(mms.parse_read, b, 0, n)
    _only_driver_errors(mms.parse_write, b, 0, n)
    _only_driver_errors(mms.parse_name_list, b, 0, n)
    _only_driver_errors(mms.parse_initiate_response, b, 0, n)
    _only_driver_errors(iso.parse_accept, b, 0, n)
    _only_driver_errors(iso.parse_data, b, 0, n)

    def report():
        name, vals = mms.parse_information_report(b, 0, n)
        mms.decode_report(vals)

    _only_driver_errors(report)
    mms.service_error(b, 0, n)  # never raises


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_through_every_parser(b):
    _all_parsers(b)
    _all_parsers(memoryview(bytearray(b)))


def _connection_events(data, chunk):
    """An associated connection with a Read outstanding, fed ``data`` in ``chunk``s."""
    c = client.Connection(max_pdu=1024)
    c.start()
    c.receive(golden.ASSOC)
    c.next_event()
    c.read("SIMMEAS", "MMXU1$MX$TotW")
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        if len(piece) > c.space():
            raise MmsError("full")  # a caller never feeds past space()
        c.receive(piece)
        for _ in range(100):  # bounded: each event consumes a TPKT
            if c.next_event() is None:
                break
        else:
            raise AssertionError("next_event kept producing events")


@FUZZ
@given(st.sampled_from(["READ", "REPORT", "ASSOC"]), OPS, st.integers(1, 64))
def test_mutated_session_through_the_connection(which, ops, chunk):
    data = _mutate(getattr(golden, which), ops)
    _only_driver_errors(_connection_events, data, chunk)
    _only_driver_errors(_fresh, data, chunk)
    s = MMS_BODY_START.get(which)
    if s is not None:
        _all_parsers(data[s:])


def _fresh(data, chunk):
    c = client.Connection(max_pdu=1024)
    c.start()
    for i in range(0, len(data), chunk):
        c.receive(data[i:i + chunk])
        for _ in range(100):
            if c.next_event() is None:
                break


@FUZZ
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_stream_into_a_fresh_connection(data, chunk):
    _only_driver_errors(_fresh, data, chunk)


@FUZZ
@given(st.lists(st.sampled_from([0xA1, 0xA2]), min_size=1, max_size=60), st.binary(max_size=8))
def test_deep_nesting_is_refused_not_recursed(tags, leaf):
    body = leaf
    for t in tags:
        body = ber.tlv(t, body)
    _only_driver_errors(mms.decode_data, body, 0, len(body))
    if len(tags) > mms.MAX_DEPTH + 1:
        try:
            mms.decode_data(body, 0, len(body))
            raise AssertionError("nesting of %d accepted" % len(tags))
        except MmsError:
            pass
