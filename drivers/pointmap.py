"""Point maps (docs/point-maps.md): what a light node reads, as checked data.

One module checks a map at build, at provisioning and at boot, under
CPython and MicroPython alike, and gives the same answer everywhere: the
same first error (named by its JSON path), the same quantized integers and
the same digest. Numbers are kept as exact decimals from the JSON text (a
board's single-precision float could not tell 0.1 from 0.1000000015), so
the map is read by this module's own small JSON reader, which also refuses
repeated keys.

    from lightnode.drivers import pointmap
    with open("meter_modbus.json", "rb") as f:
        pm = pointmap.load(f)           # or load(text), load(dict)
    p = pm.point("V_L1")                # by name, or pm.point(1) by id
    n = pm.quantize(p, 230.125)         # 23013: round half away from zero
    pm.value(p, n)                      # 230.13
    pm.alarm_state(p, 260.0)            # "high"
    pm.digest()                         # hex SHA-256 of the canonical map
"""

import hashlib
import math

FORMAT = 1
MAX_POINTS = 256
MAX_BYTES = 262144  # a map's JSON text; 256 verbose points fit in half of it
CHUNK = 512  # bytes read from a stream at a time
MAX_STRING = 1024  # bytes of one JSON string, escapes included
MAX_NUMBER = 64  # characters of one JSON number
MAX_DEPTH = 6  # map > points > point > read > (a value): deeper is not a map

# Exact decimals are (mantissa, exponent) tuples: m * 10**e, normalized so
# m has no trailing zero. The bounds keep the arithmetic small and make
# value() correctly rounded (10**22 is the largest power of ten a double holds).
MAX_DIGITS = 17
MAX_EXP10 = 22

PROTOCOLS = ("modbus", "mms", "c37118")
KINDS = ("pmu", "relay", "meter", "charger")
QUANTITIES = (
    "frequency", "rocof", "voltage", "current", "angle", "power", "reactive-power",
    "apparent-power", "energy", "power-factor", "status", "position", "trip",
    "temperature", "count", "other",
)
UNITS = ("Hz", "Hz/s", "V", "A", "deg", "W", "var", "VA", "Wh", "1", "degC")
MODBUS_MODES = ("poll", "tap")
MODBUS_TABLES = ("coil", "discrete", "holding", "input")
MODBUS_BIT_TABLES = ("coil", "discrete")
# registers each type takes
MODBUS_TYPES = {"bool": 1, "u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2,
                "u64": 4, "s64": 4, "f64": 4}
MODBUS_TYPE_NAMES = ("bool", "u16", "s16", "u32", "s32", "u64", "s64", "f32", "f64")
MODBUS_ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")
MODBUS_PARITIES = ("E", "N", "O")
MODBUS_DEFAULTS = {"baud": 9600, "parity": "E", "stop": 1}
# IEC 61850-7-2 functional constraints a value can be read under
MMS_FCS = ("ST", "MX", "SP", "SV", "CF", "DC", "SG", "SE", "SR", "OR", "BL", "EX")
C37118_KINDS = ("freq", "dfreq", "phasor-mag", "phasor-angle", "analog", "digital")
C37118_INDEXED = ("phasor-mag", "phasor-angle", "analog", "digital")

TOP_KEYS = ("format", "name", "device", "source", "window_s", "points")
DEVICE_KEYS = ("kind", "model")
SOURCE_KEYS = {
    "modbus": ("protocol", "mode", "unit", "baud", "parity", "stop"),
    "mms": ("protocol", "ied"),
    "c37118": ("protocol", "idcode"),
}
POINT_KEYS = ("id", "name", "quantity", "unit", "resolution", "order", "period_ms",
              "report", "deadband", "alarm", "event", "read")
POINT_REQUIRED = ("id", "name", "quantity", "unit", "resolution", "order", "read")
ALARM_KEYS = ("low", "high")
READ_KEYS = {
    "modbus": ("table", "address", "type", "order", "scale", "scale_register"),
    "mms": ("ref", "fc"),
    "c37118": ("kind", "index"),
}
READ_REQUIRED = {
    "modbus": ("table", "address", "type"),
    "mms": ("ref", "fc"),
    "c37118": ("kind",),
}
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
IDENT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
MIN_PERIOD_MS = 10
MAX_PERIOD_MS = 86400000  # a day
MAX_WINDOW_S = 3600


class PointMapError(ValueError):
    """A map that breaks docs/point-maps.md; ``path`` names the first bad field."""

    def __init__(self, path, reason):
        self.path = path
        self.reason = reason
        super().__init__("%s: %s" % (path or "map", reason))


# One object per known string: the reader hands these out instead of a
# fresh copy per point, which matters in a board's heap.
_INTERN = {}  # type: dict
for _group in (TOP_KEYS, DEVICE_KEYS, POINT_KEYS, ALARM_KEYS, PROTOCOLS, KINDS,
               QUANTITIES, UNITS, MODBUS_MODES, MODBUS_TABLES, MODBUS_TYPE_NAMES,
               MODBUS_ORDERS, MODBUS_PARITIES, MMS_FCS, C37118_KINDS,
               SOURCE_KEYS["modbus"], SOURCE_KEYS["mms"], SOURCE_KEYS["c37118"],
               READ_KEYS["modbus"], READ_KEYS["mms"], READ_KEYS["c37118"]):
    for _s in _group:
        _INTERN[_s] = _s
del _group, _s


# ---------------------------------------------------------------- the reader

_ESCAPES = {0x22: '"', 0x5C: "\\", 0x2F: "/", 0x62: "\b", 0x66: "\f", 0x6E: "\n",
            0x72: "\r", 0x74: "\t"}


class _Reader:
    """JSON text to dicts, lists, str, int, bool, None and exact decimals."""

    def __init__(self, data, stream=None):
        self.b = data
        self.i = 0
        self.path = []
        self.top = None  # a _Builder: sees each top-level field and each point as it ends
        # Read from a stream a chunk at a time: a board has no room for the
        # whole text beside what is built from it. What was consumed is
        # dropped; these remember where it ended, for error positions.
        self.f = stream
        self.read = len(data)
        self.base = 0  # offset of b[0] in the text
        self.lines = 0  # newlines before b[0]
        self.lastnl = -1  # offset of the last of them

    def more(self):
        """Read another chunk after the unconsumed bytes; False at the end of the text."""
        if self.f is None:
            return False
        chunk = self.f.read(CHUNK)
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if not chunk:
            self.f = None
            return False
        if not isinstance(chunk, bytes):
            raise PointMapError("", "the stream gave %s, not text" % type(chunk).__name__)
        self.read += len(chunk)
        if self.read > MAX_BYTES:
            raise PointMapError("", "more than %d bytes" % MAX_BYTES)
        b = self.b
        i = self.i
        if i:
            self.lines += b.count(b"\n", 0, i)
            nl = b.rfind(b"\n", 0, i)
            if nl >= 0:
                self.lastnl = self.base + nl
            self.base += i
            b = b[i:]
        self.b = b + chunk
        self.i = 0
        return True

    def ensure(self, k):
        while len(self.b) - self.i < k and self.more():
            pass

    def fail(self, reason):
        b = self.b
        i = min(self.i, len(b))
        line = self.lines + b.count(b"\n", 0, i) + 1
        nl = b.rfind(b"\n", 0, i)
        col = i - nl if nl >= 0 else self.base + i - self.lastnl
        raise PointMapError(_path(self.path), "%s (line %d, column %d)" % (reason, line, col))

    def skip(self):
        while True:
            b = self.b
            i = self.i
            n = len(b)
            while i < n and b[i] in b" \t\r\n":
                i += 1
            self.i = i
            if i < n:
                return b[i]
            if not self.more():
                return -1

    def document(self):
        c = self.skip()
        if c == 0xEF and self.b[:3] == b"\xef\xbb\xbf":
            self.fail("a byte-order mark is not JSON")
        v = self.value(0)
        if self.skip() != -1:
            self.fail("unexpected text after the map")
        return v

    def value(self, depth):
        c = self.skip()
        if c == 0x7B:
            return self.obj(depth + 1)
        if c == 0x5B:
            return self.arr(depth + 1)
        if c == 0x22:
            return self.string()
        if c == 0x2D or 0x30 <= c <= 0x39:
            self.ensure(MAX_NUMBER + 2)
            return self.number()
        self.ensure(5)
        b = self.b
        i = self.i
        for word, v in ((b"true", True), (b"false", False), (b"null", None)):
            if b[i:i + len(word)] == word:
                self.i = i + len(word)
                return v
        self.fail("end of text where a value was expected" if c < 0 else "expected a value")

    def obj(self, depth):
        if depth > MAX_DEPTH:
            self.fail("nested too deeply")
        self.i += 1
        d = {}
        c = self.skip()
        if c == 0x7D:
            self.i += 1
            return d
        path = self.path
        while True:
            if c != 0x22:
                self.fail("expected a key in double quotes")
            k = self.string()
            if self.skip() != 0x3A:
                self.fail("expected ':' after a key")
            self.i += 1
            path.append(k)
            if k in d:
                self.fail("repeated key")
            v = self.value(depth)
            if depth == 1 and self.top is not None:
                self.top.field(k, v)
            d[k] = v
            path.pop()
            c = self.skip()
            if c == 0x2C:
                self.i += 1
                c = self.skip()
            elif c == 0x7D:
                self.i += 1
                return d
            else:
                self.fail("expected ',' or '}'")

    def arr(self, depth):
        if depth > MAX_DEPTH:
            self.fail("nested too deeply")
        self.i += 1
        a = []
        c = self.skip()
        if c == 0x5D:
            self.i += 1
            return a
        path = self.path
        # a board could not hold every point as parsed: each becomes a compact
        # record as soon as it ends
        hook = self.top if depth == 2 and len(path) == 1 and path[0] == "points" else None
        n = 0
        while True:
            path.append(n)
            v = self.value(depth)
            if hook is None:
                a.append(v)
            else:
                hook.point(n, v)
            n += 1
            path.pop()
            c = self.skip()
            if c == 0x2C:
                self.i += 1
            elif c == 0x5D:
                self.i += 1
                return a if hook is None else hook.end_points(n)
            else:
                self.fail("expected ',' or ']'")

    def string(self):
        # the whole string into the buffer first: find its closing quote
        pos = self.i + 1
        while True:
            b = self.b
            j = b.find(b'"', pos)
            if j >= 0:
                k = j
                while b[k - 1] == 0x5C:
                    k -= 1
                if (j - k) % 2 == 0:
                    break
                pos = j + 1
                continue
            if len(b) - self.i > MAX_STRING:
                self.fail("string longer than %d bytes" % MAX_STRING)
            pos = len(b) - self.i
            if not self.more():
                self.fail("unterminated string")
            pos += self.i
        if j - self.i > MAX_STRING:
            self.fail("string longer than %d bytes" % MAX_STRING)
        start = self.i + 1
        if b.find(b"\\", start, j) < 0:
            raw = b[start:j]
            for c in raw:
                if c < 0x20:
                    self.fail("control character in a string")
            try:
                s = raw.decode()
            except UnicodeError:
                self.fail("not UTF-8")
            self.i = j + 1
            return _INTERN.get(s, s)
        parts = []
        i = start
        n = len(b)
        while True:
            j = i
            while j < n and b[j] != 0x22 and b[j] != 0x5C:
                if b[j] < 0x20:
                    self.i = j
                    self.fail("control character in a string")
                j += 1
            if j >= n:
                self.fail("unterminated string")
            try:
                parts.append(b[i:j].decode())
            except UnicodeError:
                self.i = j
                self.fail("not UTF-8")
            if b[j] == 0x22:
                self.i = j + 1
                s = "".join(parts)
                return _INTERN.get(s, s)
            e = b[j + 1] if j + 1 < n else -1
            if e == 0x75:
                cp = self.hex4(j + 2)
                i = j + 6
                if 0xD800 <= cp < 0xDC00 and b[i:i + 2] == b"\\u":
                    lo = self.hex4(i + 2)
                    if 0xDC00 <= lo < 0xE000:
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                        i += 6
                if 0xD800 <= cp < 0xE000:
                    self.i = j
                    self.fail("lone surrogate in a string")
                parts.append(chr(cp))
            elif e in _ESCAPES:
                parts.append(_ESCAPES[e])
                i = j + 2
            else:
                self.i = j
                self.fail("bad escape in a string")

    def hex4(self, i):
        h = self.b[i:i + 4]
        if len(h) == 4:
            for c in h:
                if not (0x30 <= c <= 0x39 or 0x41 <= c <= 0x46 or 0x61 <= c <= 0x66):
                    break
            else:
                return int(h, 16)
        self.i = i
        self.fail("bad \\u escape")

    def number(self):
        b = self.b
        n = len(b)
        i = self.i
        j = i + 1 if b[i] == 0x2D else i
        k = j
        while k < n and 0x30 <= b[k] <= 0x39:
            k += 1
        if k == j or (b[j] == 0x30 and k > j + 1):
            self.fail("bad number")
        digits = b[j:k]
        frac = b""
        exp = 0
        literal_int = True
        if k < n and b[k] == 0x2E:
            f = k + 1
            k = f
            while k < n and 0x30 <= b[k] <= 0x39:
                k += 1
            if k == f:
                self.fail("bad number")
            frac = b[f:k]
            literal_int = False
        if k < n and b[k] in b"eE":
            k += 1
            s = k
            if k < n and b[k] in b"+-":
                k += 1
            d = k
            while k < n and 0x30 <= b[k] <= 0x39:
                k += 1
            if k == d:
                self.fail("bad number")
            if k - d > 6:
                self.fail("exponent too large")
            exp = int(b[s:k])
            literal_int = False
        if k - i > MAX_NUMBER:
            self.fail("number too long")
        self.i = k
        m = int(digits + frac)
        if b[i] == 0x2D:
            m = -m
        if literal_int:
            return m
        return _dec(m, exp - len(frac))


def _dec(m, e):
    if m == 0:
        return (0, 0)
    while m % 10 == 0:
        m //= 10
        e += 1
    return (m, e)


def _path(parts):
    out = []
    for p in parts:
        if isinstance(p, int):
            out.append("[%d]" % p)
        else:
            out.append(_key(p, not out))
    return "".join(out)


def _key(k, first):
    if k and all(c in IDENT_CHARS or c == "-" for c in k):
        return k if first else "." + k
    return "[%s]" % _show(k)


def _join(path, k):
    return path + _key(k, not path)


# ---------------------------------------------------------------- numbers

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_dec(v):
    return isinstance(v, tuple)


def _dec_text(d):
    m, e = d
    return "%d" % m if e == 0 else "%de%d" % (m, e)


def _to_float(d):
    m, e = d
    if e >= 0:
        return float(m * 10 ** e)
    return m / 10 ** -e


def _ratio(x):
    """x exactly, as (numerator, denominator > 0): an int, a float or a decimal."""
    if isinstance(x, bool):
        raise TypeError("a bool is not a number")
    if isinstance(x, int):
        return x, 1
    if isinstance(x, float):
        if x - x != 0:
            raise ValueError("%r is not a finite number" % x)
        f, ex = math.frexp(x)
        m = int(math.ldexp(f, 53))
        ex -= 53
        if ex >= 0:
            return m << ex, 1
        # strip common factors of two: keeps the integers short on a board
        while m and not (m & 1) and ex < 0:
            m >>= 1
            ex += 1
        return m, 1 << -ex
    if isinstance(x, tuple):
        m, e = x
        return (m * 10 ** e, 1) if e >= 0 else (m, 10 ** -e)
    raise TypeError("%s is not a number" % type(x).__name__)


def _cmp(a, b):
    """-1, 0 or 1 as a < b, a == b, a > b, exactly."""
    an, ad = _ratio(a)
    bn, bd = _ratio(b)
    d = an * bd - bn * ad
    return (d > 0) - (d < 0)


# ---------------------------------------------------------------- the checker

def _show(v):
    if isinstance(v, str):
        r = repr(v)
        return r if len(r) <= 50 else r[:46] + "...'"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if _is_int(v):
        r = "%d" % v
        return r if len(r) <= 30 else r[:26] + "..."
    if _is_dec(v):
        return _dec_text(v)
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return "a %s" % type(v).__name__


def _need_obj(v, path, allowed, required):
    if not isinstance(v, dict):
        raise PointMapError(path, "%s is not an object" % _show(v))
    for k in sorted(v):
        if k not in allowed:
            raise PointMapError(_join(path, k), "unknown key (allowed: %s)" % ", ".join(allowed))
    for k in required:
        if k not in v:
            raise PointMapError(_join(path, k), "missing")
    return v


def _need_int(v, path, lo, hi):
    if not _is_int(v):
        raise PointMapError(path, "%s is not an integer" % _show(v))
    if v < lo or (hi is not None and v > hi):
        if hi is None:
            raise PointMapError(path, "%s is less than %d" % (_show(v), lo))
        raise PointMapError(path, "%s is not in %d-%d" % (_show(v), lo, hi))
    return v


def _need_num(d, key, path):
    """A JSON number as an exact decimal, written back into ``d``."""
    v = d[key]
    if _is_int(v):
        if len("%d" % abs(v)) > 40:
            raise PointMapError(path, "%s is out of range" % _show(v))
        v = _dec(v, 0)
    elif not _is_dec(v):
        raise PointMapError(path, "%s is not a number" % _show(v))
    m, e = v
    if len("%d" % abs(m)) > MAX_DIGITS:
        raise PointMapError(path, "%s has more than %d significant digits" % (_show(v), MAX_DIGITS))
    if not -MAX_EXP10 <= e <= MAX_EXP10:
        raise PointMapError(path, "%s is out of range (exponent beyond %d)" % (_show(v), MAX_EXP10))
    d[key] = v
    return v


def _need_one_of(v, path, choices):
    if not isinstance(v, str) or v not in choices:
        raise PointMapError(path, "%s is not one of %s" % (_show(v), ", ".join(choices)))
    return v


def _printable(s):
    for c in s:
        o = ord(c)
        if o < 0x20 or 0x7F <= o < 0xA0:
            return False
    return True


def _need_text(v, path, lo, hi):
    if not isinstance(v, str):
        raise PointMapError(path, "%s is not a string" % _show(v))
    if not lo <= len(v) <= hi:
        raise PointMapError(path, "%s is not %d-%d characters" % (_show(v), lo, hi))
    if not _printable(v):
        raise PointMapError(path, "%s has a control character" % _show(v))
    return v


def _need_ident(v, path):
    if not isinstance(v, str) or not 1 <= len(v) <= 64 or not all(c in IDENT_CHARS for c in v):
        raise PointMapError(path, "%s is not a name of 1-64 letters, digits and _" % _show(v))


def _need_ref(v, path, what, report):
    """An object reference LD/LN.DO.DA[.sub] (or LD/LN.BR|RP.name for a report)."""
    if not isinstance(v, str):
        raise PointMapError(path, "%s is not a string" % _show(v))
    ok = 0 < len(v) <= 129 and v.count("/") == 1
    if ok:
        ld, rest = v.split("/")
        parts = rest.split(".")
        ok = bool(ld) and all(c in IDENT_CHARS for c in ld) and len(ld) <= 64
        for p in parts:
            ok = ok and bool(p) and len(p) <= 64 and all(c in IDENT_CHARS for c in p)
        if report:
            ok = ok and len(parts) == 3 and parts[1] in ("BR", "RP")
        else:
            ok = ok and len(parts) >= 3
    if not ok:
        raise PointMapError(path, "%s is not %s" % (_show(v), what))


def _check_source(src):
    if not isinstance(src, dict):
        raise PointMapError("source", "%s is not an object" % _show(src))
    if "protocol" not in src:
        raise PointMapError("source.protocol", "missing")
    proto = _need_one_of(src["protocol"], "source.protocol", PROTOCOLS)
    if proto == "modbus":
        _need_obj(src, "source", SOURCE_KEYS[proto], ("mode", "unit"))
        _need_one_of(src["mode"], "source.mode", MODBUS_MODES)
        _need_int(src["unit"], "source.unit", 1, 247)
        if "baud" in src:
            _need_int(src["baud"], "source.baud", 300, 1000000)
        if "parity" in src:
            _need_one_of(src["parity"], "source.parity", MODBUS_PARITIES)
        if "stop" in src:
            _need_int(src["stop"], "source.stop", 1, 2)
    elif proto == "mms":
        _need_obj(src, "source", SOURCE_KEYS[proto], ())
        if "ied" in src:
            _need_ident(src["ied"], "source.ied")
    else:
        _need_obj(src, "source", SOURCE_KEYS[proto], ("idcode",))
        _need_int(src["idcode"], "source.idcode", 1, 65534)
    return proto


def _check_read(r, path, proto):
    _need_obj(r, path, READ_KEYS[proto], READ_REQUIRED[proto])
    if proto == "modbus":
        table = _need_one_of(r["table"], path + ".table", MODBUS_TABLES)
        addr = _need_int(r["address"], path + ".address", 0, 65535)
        typ = _need_one_of(r["type"], path + ".type", MODBUS_TYPE_NAMES)
        bits = table in MODBUS_BIT_TABLES
        if bits != (typ == "bool"):
            raise PointMapError(path + ".type", "%s cannot be read from the %s table%s" % (
                _show(typ), table, " (it holds bits: bool)" if bits else ""))
        n = MODBUS_TYPES[typ]
        if addr + n > 65536:
            raise PointMapError(path + ".address", "%d runs past register 65535 (%s takes %d)"
                                % (addr, typ, n))
        if "order" in r:
            if n == 1:
                raise PointMapError(path + ".order", "only for multi-register types, not %s" % typ)
            _need_one_of(r["order"], path + ".order", MODBUS_ORDERS)
        if "scale" in r and "scale_register" in r:
            raise PointMapError(path + ".scale_register", "give scale or scale_register, not both")
        if "scale" in r:
            if bits:
                raise PointMapError(path + ".scale", "not for type bool")
            if _need_num(r, "scale", path + ".scale")[0] == 0:
                raise PointMapError(path + ".scale", "0 is not a scale")
        if "scale_register" in r:
            if bits:
                raise PointMapError(path + ".scale_register", "not for type bool")
            _need_int(r["scale_register"], path + ".scale_register", 0, 65535)
    elif proto == "mms":
        _need_ref(r["ref"], path + ".ref", "an object reference LD/LN.DO.DA[.sub]", False)
        _need_one_of(r["fc"], path + ".fc", MMS_FCS)
    else:
        kind = _need_one_of(r["kind"], path + ".kind", C37118_KINDS)
        if kind in C37118_INDEXED:
            if "index" not in r:
                raise PointMapError(path + ".index", "missing (%s needs it)" % kind)
            _need_int(r["index"], path + ".index", 0, 65535)
        elif "index" in r:
            raise PointMapError(path + ".index", "not for kind %s" % kind)


def _check_point(p, path, proto):
    _need_obj(p, path, POINT_KEYS, POINT_REQUIRED)
    _need_int(p["id"], path + ".id", 0, 65535)
    _need_text(p["name"], path + ".name", 1, 48)
    _need_one_of(p["quantity"], path + ".quantity", QUANTITIES)
    _need_one_of(p["unit"], path + ".unit", UNITS)
    if _need_num(p, "resolution", path + ".resolution")[0] <= 0:
        raise PointMapError(path + ".resolution", "%s is not greater than 0"
                            % _dec_text(p["resolution"]))
    _need_int(p["order"], path + ".order", 0, 2)
    if proto == "modbus":
        if "report" in p:
            raise PointMapError(path + ".report", "only MMS points are reported")
        if "period_ms" not in p:
            raise PointMapError(path + ".period_ms", "missing (a Modbus point is polled)")
    elif proto == "mms":
        if ("period_ms" in p) == ("report" in p):
            raise PointMapError(path + (".report" if "report" in p else ".period_ms"),
                                "an MMS point has period_ms or report, one of them")
    else:
        for k in ("period_ms", "report"):
            if k in p:
                raise PointMapError(path + "." + k, "C37.118 points stream at the frame rate")
    if "period_ms" in p:
        _need_int(p["period_ms"], path + ".period_ms", MIN_PERIOD_MS, MAX_PERIOD_MS)
    if "report" in p:
        _need_ref(p["report"], path + ".report",
                  "a report control block reference LD/LN.BR|RP.name", True)
    if "deadband" in p and _need_num(p, "deadband", path + ".deadband")[0] < 0:
        raise PointMapError(path + ".deadband", "%s is negative" % _dec_text(p["deadband"]))
    if "alarm" in p:
        a = _need_obj(p["alarm"], path + ".alarm", ALARM_KEYS, ())
        if not a:
            raise PointMapError(path + ".alarm", "give low, high or both")
        for k in ALARM_KEYS:
            if k in a:
                _need_num(a, k, path + ".alarm." + k)
        if "low" in a and "high" in a and _cmp(a["low"], a["high"]) >= 0:
            raise PointMapError(path + ".alarm.high", "%s is not above low %s"
                                % (_dec_text(a["high"]), _dec_text(a["low"])))
    if "event" in p and not isinstance(p["event"], bool):
        raise PointMapError(path + ".event", "%s is not true or false" % _show(p["event"]))
    _check_read(p["read"], path + ".read", proto)


# A point's compact record: its fields in this order (None where absent),
# then its read fields in READ_KEYS[protocol] order.
_FIELDS = ("id", "name", "quantity", "unit", "resolution", "order", "period_ms", "report",
           "deadband", "low", "high", "event")
_LOW = 9
_HIGH = 10
_READ = 12


class _Records:
    """The points' records in lists of 32: no block larger than 32 slots,
    which a fragmented heap can still give."""

    def __init__(self):
        self.chunks = []
        self.n = 0

    def append(self, r):
        if self.n % 32 == 0:
            self.chunks.append([])
        self.chunks[-1].append(r)
        self.n += 1

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not -self.n <= i < self.n:
            raise IndexError(i)
        i %= self.n
        return self.chunks[i // 32][i % 32]

    def __setitem__(self, i, r):
        self.chunks[i // 32][i % 32] = r

    def __iter__(self):
        for c in self.chunks:
            for r in c:
                yield r


class _Builder:
    """Checks a map field by field as the reader ends each, in the text's order."""

    def __init__(self):
        self.doc = {}
        self.protocol = None
        self.points = None  # the records, filled in place
        self.seen = False  # the points array has ended
        self.decs = {}  # one tuple per distinct decimal

    def field(self, k, v):
        if k not in TOP_KEYS:
            raise PointMapError(_join("", k), "unknown key (allowed: %s)" % ", ".join(TOP_KEYS))
        if k == "format":
            if not _is_int(v) or v != FORMAT:
                raise PointMapError("format", "%s is not %d" % (_show(v), FORMAT))
        elif k == "name":
            if (not isinstance(v, str) or not 1 <= len(v) <= 48
                    or not all(c in NAME_CHARS for c in v)):
                raise PointMapError("name", "%s is not 1-48 of a-z, 0-9 and -" % _show(v))
        elif k == "device":
            _need_obj(v, "device", DEVICE_KEYS, DEVICE_KEYS)
            _need_one_of(v["kind"], "device.kind", KINDS)
            _need_text(v["model"], "device.model", 1, 96)
        elif k == "source":
            self.protocol = _check_source(v)
            if self.seen:  # the points came first: check them now
                recs = self.points
                for i in range(len(recs)):
                    recs[i] = self.record(i, recs[i])
        elif k == "window_s":
            _need_int(v, "window_s", 1, MAX_WINDOW_S)
        elif k == "points":
            if not isinstance(v, (list, _Records)):
                raise PointMapError("points", "%s is not an array" % _show(v))
            if not v:
                raise PointMapError("points", "no points (a map has 1-%d)" % MAX_POINTS)
            self.seen = True
            return
        self.doc[k] = v

    def point(self, i, p):
        """Take points[i] as the reader ends it: checked and compact once the protocol is known."""
        if i >= MAX_POINTS:
            raise PointMapError("points", "more than %d points" % MAX_POINTS)
        if self.points is None:
            self.points = _Records()
        self.points.append(p if self.protocol is None else self.record(i, p))

    def end_points(self, n):
        return self.points

    def record(self, i, p):
        proto = self.protocol
        path = "points[%d]" % i
        _check_point(p, path, proto)
        # a scan, not a dict: a growing table is a large block a fragmented
        # heap may not have, and 256 points scan quickly
        pid = p["id"]
        name = p["name"]
        for j in range(i):
            r = self.points[j]
            if r[0] == pid:
                raise PointMapError(path + ".id", "%d repeats points[%d].id" % (pid, j))
            if r[1] == name:
                raise PointMapError(path + ".name", "%s repeats points[%d].name" % (_show(name), j))
        alarm = p.get("alarm", {})
        read = p["read"]
        rec = []
        for k in _FIELDS:
            rec.append(alarm.get(k) if k == "low" or k == "high" else p.get(k))
        for k in READ_KEYS[proto]:
            rec.append(read.get(k))
        decs = self.decs
        for j, v in enumerate(rec):
            if _is_dec(v):
                if v in decs:
                    rec[j] = decs[v]
                elif len(decs) < 256:
                    decs[v] = v
        return tuple(rec)

    def finish(self, root):
        if not isinstance(root, dict):
            raise PointMapError("", "%s is not an object" % _show(root))
        for k in ("format", "name", "device", "source", "points"):
            if k not in root:
                raise PointMapError(k, "missing")
        return PointMap(self.doc, self.protocol, self.points)


# ---------------------------------------------------------------- canonical form

def _canon_str(s, out):
    if all(" " <= c <= "~" and c != '"' and c != "\\" for c in s):
        out('"%s"' % s)
        return
    parts = ['"']
    for c in s:
        o = ord(c)
        if 0x20 <= o <= 0x7E and c != '"' and c != "\\":
            parts.append(c)
        elif o > 0xFFFF:
            o -= 0x10000
            parts.append("\\u%04x\\u%04x" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF)))
        else:
            parts.append("\\u%04x" % o)
    parts.append('"')
    out("".join(parts))


def _canon(v, out):
    """Sorted keys, no spaces, ASCII, decimals as <m>e<e>: one text per map."""
    if isinstance(v, dict):
        out("{")
        first = True
        for k in sorted(v):
            if not first:
                out(",")
            first = False
            _canon_str(k, out)
            out(":")
            _canon(v[k], out)
        out("}")
    elif isinstance(v, list):
        out("[")
        for i, x in enumerate(v):
            if i:
                out(",")
            _canon(x, out)
        out("]")
    elif isinstance(v, str):
        _canon_str(v, out)
    elif v is True:
        out("true")
    elif v is False:
        out("false")
    elif v is None:
        out("null")
    elif _is_dec(v):
        out(_dec_text(v))
    else:
        out("%d" % v)


def _plain(v):
    # checked data back as JSON values: decimals become floats
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if _is_dec(v):
        return _to_float(v)
    return v


# ---------------------------------------------------------------- the map

class Point:
    """One point of a checked map; its fields as attributes, numbers as floats."""

    def __init__(self, record, protocol):
        self.r = record  # see _FIELDS; decimals as (m, e)
        self.protocol = protocol

    def _num(self, j):
        v = self.r[j]
        return None if v is None else _to_float(v)

    @property
    def id(self):
        return self.r[0]

    @property
    def name(self):
        return self.r[1]

    @property
    def quantity(self):
        return self.r[2]

    @property
    def unit(self):
        return self.r[3]

    @property
    def resolution(self):
        return _to_float(self.r[4])

    @property
    def order(self):
        return self.r[5]

    @property
    def period_ms(self):
        return self.r[6]

    @property
    def report(self):
        return self.r[7]

    @property
    def deadband(self):
        return self._num(8)

    @property
    def alarm_low(self):
        return self._num(_LOW)

    @property
    def alarm_high(self):
        return self._num(_HIGH)

    @property
    def event(self):
        return bool(self.r[11])

    @property
    def read(self):
        """Where the value comes from, defaults filled in (Modbus byte order)."""
        r = _plain(self.data()["read"])
        if "type" in r and MODBUS_TYPES[r["type"]] > 1 and "order" not in r:
            r["order"] = "ABCD"
        return r

    def data(self):
        """The point's JSON object as checked, decimals as (m, e) tuples."""
        r = self.r
        d = {}
        alarm = {}
        for j, k in enumerate(_FIELDS):
            if r[j] is not None:
                (alarm if j == _LOW or j == _HIGH else d)[k] = r[j]
        if alarm:
            d["alarm"] = alarm
        read = {}
        for j, k in enumerate(READ_KEYS[self.protocol]):
            if r[_READ + j] is not None:
                read[k] = r[_READ + j]
        d["read"] = read
        return d

    def to_data(self):
        return _plain(self.data())

    def __repr__(self):
        return "<Point %d %s>" % (self.id, self.name)


class _Points:
    # the points as a sequence; each Point is made when asked for
    def __init__(self, records, protocol):
        self.records = records
        self.protocol = protocol

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return Point(self.records[i], self.protocol)

    def __iter__(self):
        for r in self.records:
            yield Point(r, self.protocol)


class PointMap:
    """A checked point map. Build it with ``load``."""

    def __init__(self, doc, protocol, records):
        self.doc = doc  # the top-level fields but points
        self.protocol = protocol
        self.records = records
        self.points = _Points(records, protocol)
        self._digest = None

    @property
    def name(self):
        return self.doc["name"]

    @property
    def format(self):
        return self.doc["format"]

    @property
    def device(self):
        return dict(self.doc["device"])

    @property
    def window_s(self):
        return self.doc.get("window_s")

    @property
    def source(self):
        """The source settings, with the protocol's defaults filled in."""
        s = dict(self.doc["source"])
        if self.protocol == "modbus":
            for k in MODBUS_DEFAULTS:
                if k not in s:
                    s[k] = MODBUS_DEFAULTS[k]
        return s

    def __len__(self):
        return len(self.records)

    def by_id(self, pid):
        for r in self.records:
            if r[0] == pid:
                return Point(r, self.protocol)
        raise KeyError(pid)

    def by_name(self, name):
        for r in self.records:
            if r[1] == name:
                return Point(r, self.protocol)
        raise KeyError(name)

    def point(self, key):
        """A point by id (int) or name (str); KeyError if there is none."""
        return self.by_name(key) if isinstance(key, str) else self.by_id(key)

    def quantize(self, point, x):
        """The integer kept for value x: x / resolution rounded half away from zero, exactly.

        x is an int or a float, taken at its exact binary value; the
        resolution is the exact decimal of the map's text, so every
        interpreter gives the same integer.
        """
        num, den = _ratio(x)
        m, e = point.r[4]
        if e >= 0:
            d = den * m * 10 ** e
        else:
            num *= 10 ** -e
            d = den * m
        q, r = divmod(abs(num), d)
        if 2 * r >= d:
            q += 1
        return -q if num < 0 else q

    def value(self, point, n):
        """The value of kept integer n (n * resolution), as the float nearest it."""
        m, e = point.r[4]
        if e >= 0:
            return float(n * m * 10 ** e)
        return (n * m) / 10 ** -e

    def alarm_state(self, point, x):
        """"low" below alarm.low, "high" above alarm.high, else None (a limit itself is normal)."""
        low = point.r[_LOW]
        if low is not None and _cmp(x, low) < 0:
            return "low"
        high = point.r[_HIGH]
        if high is not None and _cmp(x, high) > 0:
            return "high"
        return None

    def over_deadband(self, point, old, new):
        """True when old -> new changes by at least the deadband (and changes at all).

        A point without a deadband has no deadband events: False.
        """
        db = point.r[8]
        if db is None:
            return False
        on, od = _ratio(old)
        nn, nd = _ratio(new)
        dn = nn * od - on * nd  # (new - old) = dn / (od * nd)
        if dn == 0:
            return False
        bn, bd = _ratio(db)
        return abs(dn) * bd >= bn * od * nd

    def canonical(self, out):
        """Write the canonical text in pieces to out(str): the whole map as
        JSON with sorted keys, no spaces, ASCII only, decimals as <m>e<exp>."""
        doc = self.doc
        out("{")
        first = True
        for k in sorted(list(doc) + ["points"]):
            if not first:
                out(",")
            first = False
            _canon_str(k, out)
            out(":")
            if k == "points":
                out("[")
                for i, p in enumerate(self.points):
                    if i:
                        out(",")
                    _canon(p.data(), out)
                out("]")
            else:
                _canon(doc[k], out)
        out("}")

    def canonical_text(self):
        """The canonical text (what digest() hashes), as bytes."""
        parts = []
        self.canonical(parts.append)
        return "".join(parts).encode()

    def digest(self):
        """Hex SHA-256 of the canonical text: the same for the same map on every interpreter."""
        if self._digest is None:
            h = hashlib.sha256()
            buf = []

            def out(s):
                buf.append(s)
                if len(buf) >= 64:
                    h.update("".join(buf).encode())
                    del buf[:]

            self.canonical(out)
            h.update("".join(buf).encode())
            self._digest = "".join("%02x" % b for b in h.digest())
        return self._digest

    def to_data(self):
        """The map as JSON values (decimals as floats)."""
        d = _plain(self.doc)
        d["points"] = [p.to_data() for p in self.points]
        return d

    def __repr__(self):
        return "<PointMap %s %s %d points>" % (self.name, self.protocol, len(self.records))


def _text(src):
    if isinstance(src, (bytes, bytearray)):
        return bytes(src)
    if isinstance(src, str):
        return src.encode()
    if isinstance(src, memoryview):
        return bytes(src)
    return None


def load(src):
    """Check a point map and return a PointMap, or raise PointMapError.

    ``src`` is JSON text (str or bytes), a stream to read it from, or the
    JSON data itself (a dict as ``json.load`` gives it).
    """
    stream = None
    data = _text(src)
    if data is None and hasattr(src, "read"):
        stream = src
        data = b""
    elif data is None:
        import json

        try:
            data = json.dumps(src).encode()
        except Exception as e:  # anything json cannot write is not map data
            raise PointMapError("", "not JSON data (%s)" % e)
    if len(data) > MAX_BYTES:
        raise PointMapError("", "more than %d bytes" % MAX_BYTES)
    reader = _Reader(data, stream)
    data = None
    builder = reader.top = _Builder()
    return builder.finish(reader.document())
