# lightnode.drivers.iec61850: BER, MMS Data of each type, requests, and a
# session captured from libiec61850 1.6 (association, a Read, a buffered
# report) fed whole, byte by byte and split at every point.
import binascii

from lightnode.drivers.iec61850 import ber, client, iso, mms
from lightnode.drivers.iec61850.errors import MmsError, RemoteProtocolError

PORTS = ("unix", "wasm")


def h(s):
    return binascii.unhexlify(s.replace(" ", ""))


# Captured from a libiec61850 1.6 server (lightnode.simulator.mms_server):
# COTP CC, then session ACCEPT / presentation CPA / AARE / initiate response.
ASSOC = h(
    "0300001611d00001000100c0010bc2020001c1020001"
    "0300008e02f0800e8505061301001601021402000234020001c1733171a003800101a26a83040000"
    "0001a512300780010081025101300780010081025101614e304c020101a0476145a107060528ca22"
    "0203a203020100a305a103020100be2e282c020103a027a9258002100081010582010583010aa416"
    "800101810305e100820c03ee1c00000002000040ed18")
# Read response (invoke id 1) to SIMMEAS/MMXU1$MX$TotW
READ = h(
    "0300003702f08001000100612a3028020103a023a121020101a41ca11aa218a20787050849b71b00"
    "840303000091086b06aa635f3b648a")
# InformationReport of SIMPROT/LLN0.BR.brcbEV01: PTRC1.Tr after a trip
REPORT = h(
    "0300008902f08001000100617c307a020103a075a373a071a1058003525054a0688a1853494d5052"
    "4f542f4c4c4e302e42522e627263624556303184030679808601008c0602090c613d358a1353494d"
    "50524f542f4c4c4e30244576656e74738908000001a21209946186010184020640a2128301018403"
    "03000091086b06aa636000008a84020240")


def _raises(fn, *args):
    try:
        fn(*args)
    except RemoteProtocolError:
        return True
    return False


def _associated():
    c = client.Connection(max_pdu=4096)
    c.start()
    c.receive(ASSOC)
    ev = c.next_event()
    assert isinstance(ev, client.Associated)
    return c


def _mms_tpkt(pdu):
    return iso.mms_data(pdu)


# ------------------------------------------------------------------ BER

def test_ber_short_long_and_multibyte_tags():
    assert ber.read_tlv(h("0201ff"), 0, 3) == (0x02, 2, 3)
    buf = h("048200 03 aabbcc".replace(" ", ""))
    assert ber.read_tlv(buf, 0, len(buf)) == (0x04, 4, 7)
    buf = h("bf8148 00")  # [APPLICATION? no: context, constructed] tag number 200
    assert ber.read_tlv(buf, 0, len(buf)) == ((0xA0 << 16) | 200, 4, 4)


def test_ber_refuses_what_runs_past_the_end():
    for bad in ("02", "0202ff", "0481", "048201", "0480", "04840000000100", "bf", "bf81", "bfffffff7f00"):
        b = h(bad)
        assert _raises(ber.read_tlv, b, 0, len(b)), bad
    # the window, not the buffer, is the limit
    assert _raises(ber.read_tlv, h("0202ffff"), 0, 3)


def test_ber_writers():
    assert ber.enc_uint(0x86, 0) == h("860100")
    assert ber.enc_uint(0x86, 200) == h("860200c8")
    assert ber.enc_uint(0x86, 65536) == h("8603010000")
    assert ber.enc_int(0x85, -1) == h("8501ff")
    assert ber.enc_int(0x85, -129) == h("8502ff7f")
    assert ber.enc_int(0x85, 128) == h("85020080")
    assert ber.length(127) == h("7f") and ber.length(128) == h("8180") and ber.length(300) == h("82012c")
    assert ber.tlv(0x30, b"\x01" * 200)[:3] == h("3081c8")


# ------------------------------------------------------------------ MMS Data

def _d(hexs):
    b = h(hexs)
    v, end = mms.decode_data(b, 0, len(b))
    assert end == len(b)
    return v


def test_mms_data_each_type():
    assert _d("830100") is False and _d("8301ff") is True
    assert _d("8501ff") == -1 and _d("85020100") == 256 and _d("8502ff7f") == -129
    assert _d("860200c8") == 200 and _d("8605 00ffffffff".replace(" ", "")) == 0xFFFFFFFF
    assert _d("8705 08 42480000".replace(" ", "")) == 50.0
    assert _d("8709 0b 4049000000000000".replace(" ", "")) == 50.0
    assert _d("840306 8000".replace(" ", "")) == mms.Bits(1, 10)  # bit 0 of 10
    assert _d("8402 06 40".replace(" ", "")) == mms.Bits(2, 2)    # Dbpos off: 01
    assert _d("8403 03 c000".replace(" ", "")) == mms.Bits(3, 13)  # quality: questionable
    assert _d("8a03 414243".replace(" ", "")) == "ABC"
    assert _d("9003 c3a96b".replace(" ", "")) == "\u00e9k"
    assert _d("8903 000102".replace(" ", "")) == b"\x00\x01\x02"
    assert _d("9108 6b06aa63 600000 8a".replace(" ", "")) == mms.UtcTime(0x6B06AA63, 0x600000, 0x8A)
    assert mms.UtcTime(10, 1 << 23, 0).ms == 10500
    # binary time: ms of day, days since 1984-01-01
    assert _d("8c06 00000001 0001".replace(" ", "")) == (441763200 + 86400) * 1000 + 1
    assert _d("a208 830101 a103 850101".replace(" ", "")) == (True, [1])
    assert _d("a100") == [] and _d("a200") == ()
    assert _d("800101") == mms.AccessError(1)


def test_mms_data_refusals():
    for bad in ("8302ffff", "8704 08424800", "8705 09 42480000", "8400", "840108", "8401 07",
                "840b 00 01020304050607080910", "9107 00000000000000", "8c05 0000000000", "8500",
                "8a02 ff41", "9f2200", "8b00"):
        b = h(bad.replace(" ", ""))
        assert _raises(mms.decode_data, b, 0, len(b)), bad


def test_mms_data_nesting_is_capped():
    inner = h("830100")
    for _ in range(mms.MAX_DEPTH):
        inner = ber.tlv(0xA2, inner)
    v, _ = mms.decode_data(inner, 0, len(inner))
    deeper = ber.tlv(0xA1, inner)
    assert _raises(mms.decode_data, deeper, 0, len(deeper))


def test_mms_data_writers_round_trip():
    for enc, v in ((mms.enc_bool(True), True), (mms.enc_unsigned(300), 300), (mms.enc_integer(-5), -5),
                   (mms.enc_vstring("RPT"), "RPT"), (mms.enc_octets(b"\x01\x02"), b"\x01\x02")):
        assert mms.decode_data(enc, 0, len(enc))[0] == v
    trg = mms.enc_bits(client.TRG_DEFAULT, 6)
    assert trg == h("8402026c")  # dchg qchg integrity gi: 011011, 2 unused
    assert mms.decode_data(trg, 0, len(trg))[0] == mms.Bits(client.TRG_DEFAULT, 6)


# ------------------------------------------------------------------ requests

def test_requests():
    name = h("a1 18 1a 07") + b"SIMMEAS" + h("1a 0d") + b"MMXU1$MX$TotW"
    spec = h("a1 20 a0 1e 30 1c a0 1a") + name
    assert mms.read_request(1, "SIMMEAS", "MMXU1$MX$TotW") == h("a0 27 020101 a4 22") + spec
    assert mms.get_name_list_request(2, mms.DOMAIN) == h("a0 0e 020102 a1 09 a0 03 800109 a1 02 8000")
    assert mms.get_name_list_request(3, mms.NAMED_VARIABLE, "LD", "X") == h(
        "a0 13 020103 a1 0e a0 03 800100 a1 04 81 02") + b"LD" + h("82 01") + b"X"
    w = mms.write_request(4, "LD", "LLN0$BR$b$RptEna", mms.enc_bool(True))
    assert w == (h("a0 28 020104 a5 23 a0 1c 30 1a a0 18 a1 16 1a 02") + b"LD" + h("1a 10")
                 + b"LLN0$BR$b$RptEna" + h("a0 03 8301ff"))
    assert mms.CONCLUDE_REQUEST == h("8b00")
    assert iso.connect_request()[:4] == h("03000016")
    ini = mms.initiate_request(4096)
    assert ini[:9] == h("a8 25 80 02 1000 81 01 05".replace(" ", ""))


def test_split_references():
    assert client.split_ref("LD0/MMXU1.TotW.mag.f", "mx") == ("LD0", "MMXU1$MX$TotW$mag$f")
    assert client.split_rcb("LD0/LLN0.BR.brcbEV01") == ("LD0", "LLN0$BR$brcbEV01", True)
    assert client.split_rcb("LD0/LLN0.RP.urcb") == ("LD0", "LLN0$RP$urcb", False)
    for bad in ("LD0", "/MMXU1.A", "LD0/"):
        try:
            client.split_ref(bad, "MX")
            raise AssertionError(bad)
        except ValueError:
            pass
    try:
        client.split_rcb("LD0/LLN0.XX.b")
        raise AssertionError("XX")
    except ValueError:
        pass


# ------------------------------------------------------------------ captured session

def test_association_captured_whole_and_byte_by_byte():
    c = _associated()
    assert c.params == {"max_pdu": 4096, "outstanding": 5, "nesting": 10}
    c2 = client.Connection(max_pdu=4096)
    c2.start()
    events = []
    for i in range(len(ASSOC)):
        c2.receive(ASSOC[i:i + 1])
        ev = c2.next_event()
        if ev is not None:
            events.append(ev)
        if i == 21:  # the CC is in: the association request is queued
            aarq = c2.data_to_send()
            assert aarq[:2] == h("0300") and aarq[7] == 0x0D
    assert len(events) == 1 and events[0].params["max_pdu"] == 4096


def _read_value(ev):
    assert isinstance(ev, client.Response) and ev.invoke_id == 1
    return ev.result[0]


def test_read_response_captured():
    c = _associated()
    iid, data = c.read("SIMMEAS", "MMXU1$MX$TotW")
    assert iid == 1 and data.endswith(b"MMXU1$MX$TotW")
    c.receive(READ)
    v = _read_value(c.next_event())
    assert v == ((1500000.0,), mms.Bits(0, 13), mms.UtcTime(0x6B06AA63, 0x5F3B64, 0x8A))
    assert c.pending == {}


def _check_report(r):
    assert isinstance(r, mms.Report)
    assert r.rpt_id == "SIMPROT/LLN0.BR.brcbEV01" and r.seq_num == 0
    assert r.data_set == "SIMPROT/LLN0$Events" and r.conf_rev == 1
    assert r.entry_id == h("000001a212099461") and r.time_of_entry == 1795598947425
    assert r.inclusion == mms.Bits(2, 2)
    assert r.members == [(1, None, (True, mms.Bits(0, 13), mms.UtcTime(0x6B06AA63, 0x600000, 0x8A)),
                          mms.Bits(2, 6))]  # reason: data change


def test_report_captured_whole_byte_by_byte_and_split():
    c = _associated()
    c.receive(REPORT)
    _check_report(c.next_event())
    assert c.next_event() is None
    c = _associated()
    got = []
    for i in range(len(REPORT)):
        c.receive(REPORT[i:i + 1])
        ev = c.next_event()
        if ev is not None:
            got.append(ev)
    assert len(got) == 1
    _check_report(got[0])
    for cut in range(1, len(REPORT), 7):
        c = _associated()
        c.receive(REPORT[:cut])
        assert c.next_event() is None  # truncated: waits, never guesses
        c.receive(REPORT[cut:])
        _check_report(c.next_event())


def test_sequence_gap_is_noticed():
    c = _associated()
    seq2 = bytearray(REPORT)
    i = REPORT.index(h("860100"))
    seq1 = bytearray(REPORT)
    seq1[i + 2] = 1
    seq2[i + 2] = 3
    c.receive(REPORT)
    assert c.next_event().gap == 0
    c.receive(bytes(seq1))
    assert c.next_event().gap == 0
    c.receive(bytes(seq2))
    r = c.next_event()
    assert r.seq_num == 3 and r.gap == 1 and c.gaps == 1


def test_two_tpkts_in_one_read_and_segmented_dt():
    c = _associated()
    c.read("SIMMEAS", "MMXU1$MX$TotW")
    c.receive(REPORT + READ)
    _check_report(c.next_event())
    assert _read_value(c.next_event())[0] == (1500000.0,)
    # the same report as two COTP DT segments (first without end-of-TSDU)
    body = REPORT[7:]
    seg = iso.tpkt(h("02f000") + body[:40]) + iso.tpkt(h("02f080") + body[40:])
    c.receive(seg)
    _check_report(c.next_event())


def test_conclude():
    c = _associated()
    c.conclude()
    c.receive(_mms_tpkt(h("8c00")))
    assert isinstance(c.next_event(), client.Concluded)
    assert c.state == client.CLOSED


def test_service_error_and_reject_are_values():
    c = _associated()
    iid, _ = c.read("LD", "X")
    # confirmed-error: invoke id, serviceError {errorClass vmd-state(0) 2}
    c.receive(_mms_tpkt(h("a2088001") + bytes((iid,)) + h("a203a0018002"[:8]) + h("02")))
    ev = c.next_event()
    assert isinstance(ev, client.Failure) and ev.invoke_id == iid
    iid, _ = c.read("LD", "X")
    c.receive(_mms_tpkt(h("a4068001") + bytes((iid,)) + h("810101")))
    ev = c.next_event()
    assert isinstance(ev, client.Failure) and ev.invoke_id == iid


def test_faults_are_driver_errors():
    def fails(data, assoc=True):
        c = _associated() if assoc else client.Connection()
        if not assoc:
            c.start()
        try:
            c.receive(data)
            c.next_event()
        except MmsError:
            return True
        return False

    # an inner length that points past the end of its TPKT
    bad = bytearray(REPORT)
    bad[REPORT.index(h("8a1853494d"))+1] = 0x7F
    assert fails(bytes(bad))
    # a TPKT that says it is longer than the buffer, a wrong version
    assert fails(h("0300ffff02f080"))
    assert fails(h("0400000702f080"))
    # COTP disconnect
    assert fails(h("0300000b06800000000100"))
    # an answer to a request never made
    assert fails(READ)
    # session refuse instead of accept
    assert fails(h("0300001611d00001000100c0010bc2020001c1020001") + h("0300000902f0800c00"), assoc=False)
    # an AARE with result rejected-permanent
    rej = bytearray(ASSOC)
    i = ASSOC.index(h("a203020100"))
    rej[i + 4] = 1
    assert fails(bytes(rej), assoc=False)


def test_a_long_stream_through_a_small_buffer():
    # many reports in odd-sized pieces: the receive buffer compacts, reports stay whole
    c = _associated()
    stream = REPORT * 80  # 2.5 times the receive buffer
    n = 0
    i = 0
    while i < len(stream):
        k = min(97, c.space(), len(stream) - i)
        c.receive(stream[i:i + k])
        i += k
        while True:
            ev = c.next_event()
            if ev is None:
                break
            _check_report(ev)
            n += 1
    assert n == 80
