# Point maps (docs/point-maps.md): every rule refused once, with the JSON
# path of the bad field; exact quantization; one digest on every interpreter.
import json

from lightnode.drivers import pointmap

PORTS = ("unix", "wasm")

# The example of docs/point-maps.md; its digest was computed once under
# CPython and must come out the same inside MicroPython.
DOC_EXAMPLE = """{
  "format": 1,
  "name": "meter-3ph-modbus",
  "device": {"kind": "meter", "model": "generic three-phase meter"},
  "source": {"protocol": "modbus", "mode": "poll", "unit": 1},
  "points": [
    {"id": 1, "name": "V_L1", "quantity": "voltage", "unit": "V",
     "resolution": 0.01, "order": 1, "period_ms": 1000,
     "deadband": 0.5, "alarm": {"low": 207.0, "high": 253.0},
     "read": {"table": "input", "address": 0, "type": "f32", "order": "ABCD"}}
  ]
}"""
DOC_EXAMPLE_DIGEST = "049b62437d36db7a50898c4ee935b6b04843afc5c3e9429a096ce70010e4405c"


def _modbus():
    return {
        "format": 1, "name": "meter-a", "window_s": 5,
        "device": {"kind": "meter", "model": "three-phase meter"},
        "source": {"protocol": "modbus", "mode": "poll", "unit": 1, "baud": 19200,
                   "parity": "N", "stop": 2},
        "points": [
            {"id": 1, "name": "V_L1", "quantity": "voltage", "unit": "V", "resolution": 0.01,
             "order": 1, "period_ms": 1000, "deadband": 0.5, "alarm": {"low": 207, "high": 253},
             "read": {"table": "input", "address": 0, "type": "f32", "order": "CDAB"}},
            {"id": 2, "name": "breaker", "quantity": "status", "unit": "1", "resolution": 1,
             "order": 0, "period_ms": 100, "event": True,
             "read": {"table": "coil", "address": 7, "type": "bool"}},
            {"id": 3, "name": "P", "quantity": "power", "unit": "W", "resolution": 1,
             "order": 1, "period_ms": 1000,
             "read": {"table": "holding", "address": 100, "type": "s16", "scale_register": 101}},
        ],
    }


def _mms():
    return {
        "format": 1, "name": "relay-a",
        "device": {"kind": "relay", "model": "feeder relay"},
        "source": {"protocol": "mms", "ied": "IED1"},
        "points": [
            {"id": 1, "name": "XCBR1 position", "quantity": "position", "unit": "1",
             "resolution": 1, "order": 0, "report": "LD0/LLN0.BR.brcbEV01", "event": True,
             "read": {"ref": "LD0/XCBR1.Pos.stVal", "fc": "ST"}},
            {"id": 10, "name": "V_L1", "quantity": "voltage", "unit": "V", "resolution": 0.1,
             "order": 1, "period_ms": 1000,
             "read": {"ref": "LD0/MMXU1.PhV.phsA.cVal.mag.f", "fc": "MX"}},
        ],
    }


def _c37118():
    return {
        "format": 1, "name": "pmu-a",
        "device": {"kind": "pmu", "model": "pmu"},
        "source": {"protocol": "c37118", "idcode": 7},
        "points": [
            {"id": 1, "name": "F", "quantity": "frequency", "unit": "Hz", "resolution": 0.001,
             "order": 1, "read": {"kind": "freq"}},
            {"id": 2, "name": "VA angle", "quantity": "angle", "unit": "deg", "resolution": 0.01,
             "order": 2, "read": {"kind": "phasor-angle", "index": 0}},
            {"id": 3, "name": "dig", "quantity": "status", "unit": "1", "resolution": 1,
             "order": 0, "event": True, "read": {"kind": "digital", "index": 0}},
        ],
    }


_DEL = object()


def _broken(make, where, value):
    d = make()
    node = d
    for k in where[:-1]:
        node = node[k]
    if value is _DEL:
        del node[where[-1]]
    else:
        node[where[-1]] = value
    return d


def _refused(src, path, words=""):
    try:
        pointmap.load(src)
    except pointmap.PointMapError as e:
        msg = str(e)
        assert e.path == path, "%r: path %r, expected %r" % (msg, e.path, path)
        assert msg.startswith((path or "map") + ": "), msg
        assert words in msg, "%r lacks %r" % (msg, words)
        return msg
    raise AssertionError("accepted, expected an error at %s" % path)


P0 = ("points", 0)
R0 = ("points", 0, "read")

# (map maker, where, new value or _DEL, expected path, words in the message)
CASES = (
    (_modbus, ("format",), 2, "format", "is not 1"),
    (_modbus, ("format",), _DEL, "format", "missing"),
    (_modbus, ("name",), "Meter_A", "name", "a-z"),
    (_modbus, ("name",), "", "name", ""),
    (_modbus, ("name",), "a" * 49, "name", ""),
    (_modbus, ("colour",), "red", "colour", "unknown key"),
    (_modbus, ("device",), _DEL, "device", "missing"),
    (_modbus, ("device", "kind"), "toaster", "device.kind", "is not one of"),
    (_modbus, ("device", "model"), 5, "device.model", "not a string"),
    (_modbus, ("device", "model"), _DEL, "device.model", "missing"),
    (_modbus, ("device", "serial"), "x", "device.serial", "unknown key"),
    (_modbus, ("source",), [], "source", "not an object"),
    (_modbus, ("source", "protocol"), "bacnet", "source.protocol", "is not one of"),
    (_modbus, ("source", "protocol"), _DEL, "source.protocol", "missing"),
    (_modbus, ("source", "mode"), "listen", "source.mode", "is not one of"),
    (_modbus, ("source", "mode"), _DEL, "source.mode", "missing"),
    (_modbus, ("source", "unit"), 0, "source.unit", "1-247"),
    (_modbus, ("source", "unit"), 248, "source.unit", "1-247"),
    (_modbus, ("source", "baud"), 9600.5, "source.baud", "not an integer"),
    (_modbus, ("source", "parity"), "X", "source.parity", "E, N, O"),
    (_modbus, ("source", "stop"), 3, "source.stop", "1-2"),
    (_modbus, ("source", "idcode"), 3, "source.idcode", "unknown key"),
    (_modbus, ("window_s",), 0, "window_s", ""),
    (_modbus, ("window_s",), "5", "window_s", "not an integer"),
    (_modbus, ("points",), [], "points", "no points"),
    (_modbus, ("points",), {}, "points", "not an array"),
    (_modbus, ("points", 0), 5, "points[0]", "not an object"),
    (_modbus, P0 + ("id",), 65536, "points[0].id", "0-65535"),
    (_modbus, P0 + ("id",), -1, "points[0].id", "0-65535"),
    (_modbus, P0 + ("id",), True, "points[0].id", "true is not an integer"),
    (_modbus, P0 + ("id",), 1.5, "points[0].id", "not an integer"),
    (_modbus, ("points", 1, "id"), 1, "points[1].id", "repeats points[0].id"),
    (_modbus, ("points", 2, "name"), "V_L1", "points[2].name", "repeats points[0].name"),
    (_modbus, P0 + ("name",), "", "points[0].name", "1-48"),
    (_modbus, P0 + ("name",), "x" * 49, "points[0].name", "1-48"),
    (_modbus, P0 + ("name",), "V\tL1", "points[0].name", "control character"),
    (_modbus, P0 + ("quantity",), "volts", "points[0].quantity", "is not one of"),
    (_modbus, P0 + ("unit",), "kV", "points[0].unit", "is not one of"),
    (_modbus, P0 + ("resolution",), 0, "points[0].resolution", "greater than 0"),
    (_modbus, P0 + ("resolution",), -0.01, "points[0].resolution", "greater than 0"),
    (_modbus, P0 + ("resolution",), "0.01", "points[0].resolution", "not a number"),
    (_modbus, P0 + ("resolution",), _DEL, "points[0].resolution", "missing"),
    (_modbus, P0 + ("order",), 3, "points[0].order", "0-2"),
    (_modbus, P0 + ("period_ms",), 9, "points[0].period_ms", "10-"),
    (_modbus, P0 + ("period_ms",), _DEL, "points[0].period_ms", "missing"),
    (_modbus, P0 + ("report",), "LD0/LLN0.BR.brcb01", "points[0].report", "only MMS"),
    (_modbus, P0 + ("deadband",), -0.5, "points[0].deadband", "negative"),
    (_modbus, P0 + ("alarm",), {}, "points[0].alarm", "low, high"),
    (_modbus, P0 + ("alarm",), {"low": 253, "high": 253}, "points[0].alarm.high", "not above"),
    (_modbus, P0 + ("alarm",), {"low": 300, "high": 253}, "points[0].alarm.high", "not above"),
    (_modbus, P0 + ("alarm",), {"low": "x"}, "points[0].alarm.low", "not a number"),
    (_modbus, P0 + ("alarm",), {"mid": 1}, "points[0].alarm.mid", "unknown key"),
    (_modbus, P0 + ("event",), 1, "points[0].event", "true or false"),
    (_modbus, P0 + ("colour",), "red", "points[0].colour", "unknown key"),
    (_modbus, P0 + ("read",), _DEL, "points[0].read", "missing"),
    (_modbus, R0 + ("table",), "register", "points[0].read.table", "is not one of"),
    (_modbus, R0 + ("table",), _DEL, "points[0].read.table", "missing"),
    (_modbus, R0 + ("address",), 65535, "points[0].read.address", "runs past"),
    (_modbus, R0 + ("address",), -1, "points[0].read.address", "0-65535"),
    (_modbus, R0 + ("type",), "f16", "points[0].read.type", "is not one of"),
    (_modbus, R0 + ("type",), "bool", "points[0].read.type", "cannot be read"),
    (_modbus, ("points", 1, "read", "type"), "u16", "points[1].read.type", "holds bits"),
    (_modbus, R0 + ("order",), "ABDC", "points[0].read.order",
     "'ABDC' is not one of ABCD, DCBA, BADC, CDAB"),
    (_modbus, ("points", 2, "read", "order"), "BADC", "points[2].read.order", "multi-register"),
    (_modbus, R0 + ("scale",), 0, "points[0].read.scale", "not a scale"),
    (_modbus, ("points", 2, "read", "scale"), 0.1, "points[2].read.scale_register", "not both"),
    (_modbus, ("points", 1, "read", "scale"), 2, "points[1].read.scale", "bool"),
    (_modbus, R0 + ("scale_register",), 70000, "points[0].read.scale_register", "0-65535"),
    (_modbus, R0 + ("ref",), "LD0/X.Y.Z", "points[0].read.ref", "unknown key"),
    (_mms, ("source", "ied"), "bad name", "source.ied", "letters"),
    (_mms, ("source", "mode"), "poll", "source.mode", "unknown key"),
    (_mms, P0 + ("period_ms",), 1000, "points[0].report", "one of them"),
    (_mms, P0 + ("report",), _DEL, "points[0].period_ms", "one of them"),
    (_mms, P0 + ("report",), "LD0/LLN0.XX.brcb", "points[0].report", "report control block"),
    (_mms, R0 + ("ref",), "XCBR1.Pos.stVal", "points[0].read.ref", "object reference"),
    (_mms, R0 + ("ref",), "LD0/XCBR1.Pos", "points[0].read.ref", "object reference"),
    (_mms, R0 + ("fc",), "XX", "points[0].read.fc", "is not one of"),
    (_mms, R0 + ("fc",), _DEL, "points[0].read.fc", "missing"),
    (_mms, R0 + ("table",), "coil", "points[0].read.table", "unknown key"),
    (_c37118, ("source", "idcode"), 0, "source.idcode", "1-65534"),
    (_c37118, ("source", "idcode"), 65535, "source.idcode", "1-65534"),
    (_c37118, ("source", "idcode"), _DEL, "source.idcode", "missing"),
    (_c37118, P0 + ("period_ms",), 20, "points[0].period_ms", "frame rate"),
    (_c37118, P0 + ("report",), "LD0/LLN0.BR.b", "points[0].report", "frame rate"),
    (_c37118, R0 + ("kind",), "phasor", "points[0].read.kind", "is not one of"),
    (_c37118, R0 + ("index",), 0, "points[0].read.index", "not for kind freq"),
    (_c37118, ("points", 1, "read", "index"), _DEL, "points[1].read.index", "missing"),
    (_c37118, ("points", 1, "read", "index"), -1, "points[1].read.index", "0-65535"),
)


def test_each_rule_broken_once():
    for make, where, value, path, words in CASES:
        pointmap.load(make())  # the map is good before the change
        _refused(_broken(make, where, value), path, words)


def test_valid_map_of_each_protocol():
    m = pointmap.load(_modbus())
    assert (m.name, m.protocol, len(m), m.window_s) == ("meter-a", "modbus", 3, 5)
    assert m.source == {"protocol": "modbus", "mode": "poll", "unit": 1, "baud": 19200,
                        "parity": "N", "stop": 2}
    v = m.point("V_L1")
    assert v is not None and v.id == 1 and m.point(1).name == "V_L1"
    assert (v.quantity, v.unit, v.order, v.period_ms, v.report) == ("voltage", "V", 1, 1000, None)
    assert v.resolution == 0.01 and v.deadband == 0.5
    assert (v.alarm_low, v.alarm_high, v.event) == (207.0, 253.0, False)
    assert v.read == {"table": "input", "address": 0, "type": "f32", "order": "CDAB"}
    assert m.point("P").read == {"table": "holding", "address": 100, "type": "s16",
                                 "scale_register": 101}
    assert m.point(2).event is True and m.point(2).deadband is None
    assert [p.id for p in m.points] == [1, 2, 3] and m.points[2].name == "P"
    for bad in (4, "nope"):
        try:
            m.point(bad)
            raise AssertionError("found %r" % bad)
        except KeyError:
            pass
    r = pointmap.load(_mms())
    assert r.protocol == "mms" and r.source == {"protocol": "mms", "ied": "IED1"}
    assert r.point(1).report == "LD0/LLN0.BR.brcbEV01" and r.point(1).period_ms is None
    assert r.point(10).read == {"ref": "LD0/MMXU1.PhV.phsA.cVal.mag.f", "fc": "MX"}
    c = pointmap.load(_c37118())
    assert c.protocol == "c37118" and c.source["idcode"] == 7
    assert c.point("F").period_ms is None and c.point(2).read == {"kind": "phasor-angle", "index": 0}
    d = pointmap.load(DOC_EXAMPLE)
    assert d.point("V_L1").read["order"] == "ABCD"
    # the default byte order is filled in for multi-register types only
    m2 = _modbus()
    del m2["points"][0]["read"]["order"]
    assert pointmap.load(m2).point(1).read["order"] == "ABCD"
    assert "order" not in pointmap.load(m2).point(3).read


def test_points_before_source():
    text = ('{"points": [{"id": 1, "name": "F", "quantity": "frequency", "unit": "Hz",'
            ' "resolution": 0.001, "order": 1, "read": {"kind": "freq"}}],'
            ' "source": {"protocol": "c37118", "idcode": 7}, "format": 1, "name": "p",'
            ' "device": {"kind": "pmu", "model": "x"}}')
    m = pointmap.load(text)
    assert m.point(1).resolution == 0.001
    _refused(text.replace('"freq"}', '"freq", "index": 0}'), "points[0].read.index")


def test_json_text_refused():
    good = DOC_EXAMPLE
    assert "line 1, column 24" in _refused('{"format": 1, "format": 2}', "format", "repeated key")
    _refused(good + " x", "", "after the map")
    _refused(good.replace("0.01", "NaN"), "points[0].resolution", "expected a value")
    _refused(good.replace("0.01", "Infinity"), "points[0].resolution", "expected a value")
    _refused(good.replace("0.01", "01"), "points[0].resolution", "bad number")
    _refused(good.replace("0.01", "1e999999999"), "points[0].resolution", "exponent")
    _refused(good.replace("0.01", "1e99"), "points[0].resolution", "out of range")
    _refused(good.replace("0.01", "0.123456789012345678"), "points[0].resolution", "digits")
    _refused(good.replace('"V_L1"', '"V_L1'), "points[0]", "expected ',' or '}'")
    _refused(good.replace('"V_L1"', '"V\\u0001"'), "points[0].name", "control character")
    _refused(good.replace('"V_L1"', '"\\ud800"'), "points[0].name", "lone surrogate")
    _refused(good.replace('"V_L1"', '"V\\x"'), "points[0].name", "bad escape")
    _refused(good.replace("}\n  ]", "},\n  ]"), "points[1]", "expected a value")
    _refused("\ufeff" + good, "", "byte-order mark")
    _refused(b'{"name": "\xff"}', "name", "UTF-8")
    _refused("[" * 50, "[0][0][0][0][0][0]", "nested too deeply")
    _refused("", "", "end of text")
    _refused("[]", "", "an array is not an object")
    _refused("null", "", "null is not an object")
    _refused('{"name": "a"}', "format", "missing")
    msg = _refused(good.replace('"ABCD"', '"ABDC"'), "points[0].read.order")
    assert msg == "points[0].read.order: 'ABDC' is not one of ABCD, DCBA, BADC, CDAB", msg
    # a point name with escapes reads back exactly
    m = pointmap.load(good.replace('"V_L1"', '"V\\u00e9 \\"1\\" \\ud83d\\ude00"'))
    assert m.points[0].name == 'V\u00e9 "1" \U0001f600'


class _Chunks:
    # a stream that makes its text as it is read: a 257-point map never in memory at once
    def __init__(self, head, point, n, tail):
        self.head, self.point, self.n, self.tail = head, point, n, tail
        self.i = -1
        self.buf = b""

    def _part(self):
        self.i += 1
        if self.i == 0:
            return self.head
        k = self.i - 1
        if k < self.n:
            return (",\n" if k else "") + self.point % (k, k, k)
        return self.tail if k == self.n else ""

    def read(self, n):
        while len(self.buf) < n:
            part = self._part()
            if not part:
                break
            self.buf += part.encode()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def test_stream_in_small_chunks():
    text = json.dumps(_mms())
    whole = pointmap.load(text).digest()
    saved = pointmap.CHUNK
    try:
        for size in (1, 2, 3, 7, 64):
            pointmap.CHUNK = size
            assert pointmap.load(_Chunks(text, "", 0, "")).digest() == whole, size
            msg = _refused(_Chunks(DOC_EXAMPLE.replace('"ABCD"', '"ABDC', 1), "", 0, ""),
                           "points[0].read.order")
            assert "line 10" in msg, msg
    finally:
        pointmap.CHUNK = saved


def test_quantize_edges():
    m = pointmap.load(DOC_EXAMPLE)
    p = m.point(1)
    q = m.quantize
    # the exact binary value of x divided by the exact decimal resolution
    assert q(p, 0.125) == 13 and q(p, -0.125) == -13  # 12.5 exactly: away from zero
    assert q(p, 0.005) == 1  # 0.005000000000000000104...
    assert q(p, 2.675) == 267  # 2.67499999999999982...
    assert q(p, 1.005) == 100  # 1.00499999999999989...
    assert q(p, 230.01) == 23001 and q(p, -230.01) == -23001
    assert q(p, 0) == 0 and q(p, -0.0) == 0 and q(p, 5e-324) == 0
    assert q(p, 7) == 700 and q(p, -7) == -700
    assert q(p, 1e20) == 10 ** 22
    assert q(p, 1.7976931348623157e308) == (2 ** 1024 - 2 ** 971) * 100
    ones = _modbus()
    ones["points"][2]["resolution"] = 1
    ones["points"][1]["resolution"] = 0.25
    ones["points"][0]["resolution"] = 0.1
    u = pointmap.load(ones)
    r1, r25, r10 = u.point(3), u.point(2), u.point(1)
    assert [q(r1, x) for x in (0.5, 1.5, 2.5, -0.5, -2.5)] == [1, 2, 3, -1, -3]
    assert q(r1, 0.49999999999999994) == 0  # floor(x + 0.5) would say 1
    assert q(r1, 4503599627370497.0) == 4503599627370497
    assert [q(r25, x) for x in (0.125, -0.125, 0.375, 0.1249999)] == [1, -1, 2, 0]
    assert [q(r10, x) for x in (0.05, 0.15, 0.25, 0.35, -0.25)] == [1, 1, 3, 3, -3]
    for bad in (float("inf"), float("-inf"), float("nan")):
        try:
            q(p, bad)
            raise AssertionError("quantized %r" % bad)
        except ValueError:
            pass
    for bad in (True, "1", None):
        try:
            q(p, bad)
            raise AssertionError("quantized %r" % bad)
        except TypeError:
            pass


def test_value():
    m = pointmap.load(DOC_EXAMPLE)
    p = m.point(1)
    assert m.value(p, 23001) == 230.01 and m.value(p, -1) == -0.01 and m.value(p, 0) == 0.0
    for n in (1, 7, 12345, -99999, 2 ** 40):
        assert m.quantize(p, m.value(p, n)) == n
    big = _modbus()
    big["points"][0]["resolution"] = 1000
    b = pointmap.load(big)
    assert b.value(b.point(1), 3) == 3000.0 and b.quantize(b.point(1), 2500) == 3


def test_alarm_and_deadband():
    m = pointmap.load(DOC_EXAMPLE)
    p = m.point(1)
    a = m.alarm_state
    assert a(p, 230.0) is None and a(p, 207) is None and a(p, 253.0) is None
    assert a(p, 206.99999999999997) == "low" and a(p, 253.00000000000003) == "high"
    assert a(p, -1e300) == "low" and a(p, 1e300) == "high"
    low_only = _modbus()
    low_only["points"][0]["alarm"] = {"low": 0.1}
    lo = pointmap.load(low_only)
    assert lo.alarm_state(lo.point(1), 0.1) is None  # 0.1 as a float is above 1/10
    assert lo.alarm_state(lo.point(1), 0.09999999999999999) == "low"
    assert lo.alarm_state(lo.point(1), 1e9) is None and lo.point(1).alarm_high is None
    assert pointmap.load(_mms()).alarm_state(pointmap.load(_mms()).point(1), 5) is None
    d = m.over_deadband
    assert d(p, 230.0, 230.5) and d(p, 230.5, 230.0) and d(p, 230, 231)
    assert not d(p, 230.0, 230.49999999999997) and not d(p, 230.0, 230.0)
    assert not pointmap.load(_mms()).over_deadband(pointmap.load(_mms()).point(1), 0, 1)
    zero = _modbus()
    zero["points"][0]["deadband"] = 0
    z = pointmap.load(zero)
    assert z.over_deadband(z.point(1), 1.0, 1.0000000000000002) and not z.over_deadband(z.point(1), 1, 1)


def test_digest_golden_and_canonical():
    m = pointmap.load(DOC_EXAMPLE)
    assert m.digest() == DOC_EXAMPLE_DIGEST, m.digest()
    # the same map written otherwise: key order, spacing, 0.010 for 0.01, 207 for 207.0
    other = ('{"points":[{"read":{"order":"ABCD","type":"f32","address":0,"table":"input"},'
             '"alarm":{"high":2.53e2,"low":207},"deadband":0.50,"period_ms":1000,"order":1,'
             '"resolution":0.010,"unit":"V","quantity":"voltage","name":"V_L1","id":1}],'
             '"source":{"unit":1,"mode":"poll","protocol":"modbus"},'
             '"device":{"model":"generic three-phase meter","kind":"meter"},'
             '"name":"meter-3ph-modbus","format":1}')
    assert pointmap.load(other).digest() == DOC_EXAMPLE_DIGEST
    assert pointmap.load(json.loads(DOC_EXAMPLE)).digest() == DOC_EXAMPLE_DIGEST
    text = m.canonical_text()
    assert text.startswith(b'{"device":{"kind":"meter","model":"generic three-phase meter"},'
                           b'"format":1,"name":"meter-3ph-modbus","points":[{"alarm":'
                           b'{"high":253,"low":207},"deadband":5e-1,'), text
    assert pointmap.load(text).digest() == DOC_EXAMPLE_DIGEST
    changed = pointmap.load(DOC_EXAMPLE.replace("253.0", "253.01"))
    assert changed.digest() != DOC_EXAMPLE_DIGEST
    # a non-ASCII name is hashed through its escapes, the same everywhere
    u = pointmap.load(DOC_EXAMPLE.replace('"V_L1"', '"Spannung L1 \\u00e9\\ud83d\\ude00"'))
    assert b'"name":"Spannung L1 \\u00e9\\ud83d\\ude00"' in u.canonical_text()
    assert pointmap.load(u.canonical_text()).digest() == u.digest()


def test_to_data_round_trip():
    for make in (_modbus, _mms, _c37118):
        m = pointmap.load(make())
        again = pointmap.load(m.to_data())
        assert again.digest() == m.digest()
        assert again.to_data() == m.to_data()
