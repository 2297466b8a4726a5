# ln.mqtt's codec: golden packet bytes, the parser fed whole and byte by
# byte, and what the broker may send wrong refused with MqttError (never
# another exception). Runs under CPython, the unix port and the 32-bit
# WebAssembly port.
from ln import mqtt
from ln.mqtt import MqttError

PORTS = ("unix", "wasm")


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    except Exception as e:
        raise AssertionError("%s raised %s: %s, not %s" % (fn, type(e).__name__, e, exc.__name__))
    raise AssertionError("%s%r did not raise %s" % (fn, args, exc.__name__))


def test_connect_golden():
    got = mqtt.encode_connect("dev1", 60, "u", "p")
    want = bytes.fromhex("1016" "00044d515454" "04" "c0" "003c" "000464657631" "000175" "000170")
    assert got == want, got
    # clean session, no credentials, keepalive 0
    got = mqtt.encode_connect("c", 0, clean_session=True)
    assert got == bytes.fromhex("100d" "00044d515454" "04" "02" "0000" "000163"), got


def test_publish_golden():
    assert mqtt.encode_publish("a/b", b"hi", 1, 10, dup=True) == bytes.fromhex("3a090003612f62000a6869")
    assert mqtt.encode_publish("a/b", b"hi", 0) == bytes.fromhex("30070003612f626869")
    assert mqtt.encode_publish("a/b", b"hi", 0, dup=True, retain=True) == bytes.fromhex("31070003612f626869")
    big = mqtt.encode_publish("a/b", b"x" * 200, 1, 1)
    assert big[:3] == b"\x32\xcf\x01" and len(big) == 3 + 207  # 207 = two length bytes
    head = mqtt.encode_publish_head("a/b", 200, 1, 1)
    assert head + b"x" * 200 == big


def test_small_packets_golden():
    assert mqtt.encode_puback(258) == b"\x40\x02\x01\x02"
    assert mqtt.encode_subscribe(1, [("ln/x/ack", 1)]) == bytes.fromhex("820d0001" "0008") + b"ln/x/ack\x01"
    two = mqtt.encode_subscribe(7, [("a", 1), ("b/+", 0)])
    assert two == bytes.fromhex("820c0007" "00016101" "0003622f2b00"), two
    assert mqtt.PINGREQ_BYTES == b"\xc0\x00" and mqtt.DISCONNECT_BYTES == b"\xe0\x00"


def test_caller_mistakes_are_value_errors():
    _raises(ValueError, mqtt.encode_publish, "a/b", b"", 2, 1)
    _raises(ValueError, mqtt.encode_publish, "a/b", b"", 1, 0)
    _raises(ValueError, mqtt.encode_publish, "a/+", b"", 0)
    _raises(ValueError, mqtt.encode_publish, "", b"", 0)
    _raises(ValueError, mqtt.encode_connect, "", 60)
    _raises(ValueError, mqtt.encode_connect, "c", 70000)
    _raises(ValueError, mqtt.encode_connect, "c", 60, None, "pw")
    _raises(ValueError, mqtt.encode_puback, 0)
    _raises(ValueError, mqtt.encode_subscribe, 1, [])
    _raises(ValueError, mqtt.Parser, 8)


# What a broker sends: CONNACK, SUBACK, PUBACK, PINGRESP, a QoS1 PUBLISH of 300 bytes.
_PAYLOAD = bytes(range(256)) + b"z" * 44
_STREAM = (
    b"\x20\x02\x01\x00"
    + b"\x90\x04\x00\x01\x01\x80"
    + b"\x40\x02\x00\x0a"
    + b"\xd0\x00"
    + mqtt.encode_publish("ln/f/d/ack", _PAYLOAD, 1, 513, dup=True)
)


def _check_packets(pk):
    assert [(k, f) for k, f, _ in pk] == [(2, 0), (9, 0), (4, 0), (13, 0), (3, 0x0A)], pk
    assert mqtt.decode_connack(pk[0][2]) == (True, 0)
    assert mqtt.decode_suback(pk[1][2]) == (1, b"\x01\x80")
    assert mqtt.decode_puback(pk[2][2]) == 10
    topic, payload, qos, pid, dup, retain = mqtt.decode_publish(pk[4][1], pk[4][2])
    assert (topic, bytes(payload), qos, pid, dup, retain) == ("ln/f/d/ack", _PAYLOAD, 1, 513, True, False)


def test_parser_whole_and_byte_by_byte():
    p = mqtt.Parser(512)
    _check_packets(p.feed(_STREAM))
    p = mqtt.Parser(512)
    out = []
    for i in range(len(_STREAM)):
        out += p.feed(_STREAM[i : i + 1])
    _check_packets(out)
    p = mqtt.Parser(320)  # the buffer just holds the largest packet; chunks of 7 make it wrap
    out = []
    for i in range(0, len(_STREAM) * 3, 7):
        out += p.feed((_STREAM * 3)[i : i + 7])
    assert len(out) == 15
    _check_packets(out[10:])


def test_parser_reads_into_its_own_buffer():
    p = mqtt.Parser(64)
    room = p.space()
    assert isinstance(room, memoryview) and len(room) == 69
    room[:4] = b"\x40\x02\x00\x05"
    p.advance(4)
    kind, flags, body = p.next()
    assert (kind, flags, mqtt.decode_puback(body)) == (4, 0, 5)
    assert p.next() is None
    _raises(ValueError, p.advance, 1000)


def test_malformed_lengths_refused():
    _raises(MqttError, mqtt.Parser(512).feed, b"\x30\xff\xff\xff\xff\x7f")  # five length bytes
    _raises(MqttError, mqtt.Parser(64).feed, b"\x30\xc1\x02")  # 321 bytes for a 64-byte buffer
    _raises(MqttError, mqtt.decode_connack, b"\x00")
    _raises(MqttError, mqtt.decode_connack, b"\x00\x00\x00")
    _raises(MqttError, mqtt.decode_puback, b"\x00")
    _raises(MqttError, mqtt.decode_puback, b"\x00\x00")
    _raises(MqttError, mqtt.decode_suback, b"\x00\x01")
    _raises(MqttError, mqtt.decode_publish, 0, b"\x00")
    _raises(MqttError, mqtt.decode_publish, 0, b"\x00\x05abc")  # topic runs past the body
    _raises(MqttError, mqtt.decode_publish, 2, b"\x00\x01a\x00")  # no room for the packet id
    _raises(MqttError, mqtt.decode_publish, 0, b"\x00\x00")  # empty topic


def test_malformed_packets_refused():
    _raises(MqttError, mqtt.Parser(64).feed, b"\x42\x02\x00\x01")  # PUBACK with flags
    _raises(MqttError, mqtt.Parser(64).feed, b"\x10\x00")  # CONNECT from a broker
    _raises(MqttError, mqtt.Parser(64).feed, b"\x00\x00")  # type 0
    _raises(MqttError, mqtt.Parser(64).feed, b"\xf0\x00")  # type 15
    _raises(MqttError, mqtt.decode_publish, 6, b"\x00\x01a\x00\x01")  # qos 3
    _raises(MqttError, mqtt.decode_publish, 2, b"\x00\x01a\x00\x00")  # qos 1, packet id 0
    _raises(MqttError, mqtt.decode_publish, 0, b"\x00\x01#")  # wildcard
    _raises(MqttError, mqtt.decode_publish, 0, b"\x00\x02\xc3\x28")  # not UTF-8
    _raises(MqttError, mqtt.decode_connack, b"\x02\x00")
    _raises(MqttError, mqtt.decode_connack, b"\x00\x06")
    _raises(MqttError, mqtt.decode_connack, b"\x01\x05")
    _raises(MqttError, mqtt.decode_suback, b"\x00\x01\x03")


def test_noise_parses_or_raises_mqtt_error():
    # any bytes: packets, or MqttError; nothing else (a small LCG: the same on every port)
    x = 12345
    for _ in range(300):
        p = mqtt.Parser(64)
        data = bytearray()
        for _ in range(24):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            data.append((x >> 16) & 0xFF)
        if x & 1:
            data[0] = (data[0] & 0x0F) | (0x30, 0x40, 0x90, 0x20)[(x >> 8) & 3]
        try:
            for kind, flags, body in p.feed(bytes(data)):
                if kind == 3:
                    mqtt.decode_publish(flags, body)
                elif kind == 4:
                    mqtt.decode_puback(body)
                elif kind == 9:
                    mqtt.decode_suback(body)
                elif kind == 2:
                    mqtt.decode_connack(body)
        except MqttError:
            pass


def test_topic_matches():
    assert mqtt.topic_matches("ln/+/filter", "ln/f-1/filter")
    assert mqtt.topic_matches("ln/#", "ln/a/b/c")
    assert not mqtt.topic_matches("ln/+/filter", "ln/a/b/filter")
    assert not mqtt.topic_matches("ln/a", "ln/a/b")


def test_busy_errno_table():
    assert 115 in mqtt.busy_errno("rp2") and 119 in mqtt.busy_errno("esp32")
    assert 115 in mqtt.busy_errno("linux") and mqtt.busy_errno("nowhere") == mqtt.busy_errno("linux")
