# ln.keystore: the first boot makes the key, later boots keep it, writes are
# atomic, the identity never carries the seed; the provisioned config is
# checked field by field and switched in by one rename.
import binascii
import hashlib
import json
import os

from ln import ed25519, keystore

# This module's own code and vectors sit beside the keystore and the plan parser in the
# heap; the firmware's whole-run heap is measured by tests/test_firmware_run.py.
HEAP_KB = 192

MAP = """{"format": 1, "name": "meter-a",
 "device": {"kind": "meter", "model": "three-phase meter"},
 "source": {"protocol": "modbus", "mode": "poll", "unit": 1},
 "points": [{"id": 1, "name": "V_L1", "quantity": "voltage", "unit": "V",
   "resolution": 0.01, "order": 1, "period_ms": 1000,
   "read": {"table": "input", "address": 0, "type": "f32"}}]}"""
NODE_KEY = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
PASSWORD = "Zq3-vN8_kP2xW7yR5tLm"


def _hex(b):
    return binascii.hexlify(b).decode()


def _rmtree(path):
    for entry in os.ilistdir(path) if hasattr(os, "ilistdir") else _ilist(path):
        p = path + "/" + entry[0]
        if entry[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def _ilist(path):
    for name in os.listdir(path):
        yield (name, 0x4000 if os.stat(path + "/" + name)[0] & 0x4000 else 0x8000)


class _Board:
    """A fresh board root under /tmp, removed afterwards."""

    def __enter__(self):
        self.root = "/tmp/ln-keystore-" + _hex(os.urandom(6))
        os.mkdir(self.root)
        self.dir = self.root + keystore.DIR
        return self

    def __exit__(self, *exc):
        _rmtree(self.root)

    def read(self, name):
        with open(self.dir + "/" + name, "rb") as f:
            return f.read()

    def write(self, name, data):
        with open(self.dir + "/" + name, "wb") as f:
            f.write(data)

    def names(self):
        return sorted(os.listdir(self.dir))


def test_first_boot_makes_a_key_and_identity():
    with _Board() as b:
        ident = keystore.boot("pico_w", "0.1.0", root=b.root)
        seed = b.read(keystore.KEY_FILE)
        assert len(seed) == 32
        public = ed25519.public_key(seed)
        assert ident["public_key"] == _hex(public)
        assert ident["device"] == _hex(hashlib.sha256(public).digest()[:8])
        assert ident["board"] == "pico_w" and ident["firmware"] == "0.1.0"
        assert json.loads(b.read(keystore.IDENTITY_FILE)) == ident
        assert b.names() == ["identity.json", "key.bin"]
        # Neither the identity nor anything it holds carries the seed.
        text = json.dumps(ident)
        assert _hex(seed) not in text and _hex(seed).upper() not in text


def test_second_boot_keeps_the_key():
    with _Board() as b:
        first = keystore.boot("pico_w", "0.1.0", root=b.root)
        seed = b.read(keystore.KEY_FILE)
        again = keystore.boot("pico_w", "0.1.0", root=b.root)
        assert again == first and b.read(keystore.KEY_FILE) == seed


def test_new_firmware_keeps_key_and_id():
    with _Board() as b:
        first = keystore.boot("pico_w", "0.1.0", root=b.root)
        later = keystore.boot("pico_w", "0.2.0", root=b.root)
        assert later["firmware"] == "0.2.0"
        assert later["device"] == first["device"] and later["public_key"] == first["public_key"]


def test_replaced_key_shows_in_identity_under_the_same_id():
    with _Board() as b:
        first = keystore.boot("pico_w", "0.1.0", root=b.root)
        b.write(keystore.KEY_FILE, bytes(range(32)))
        later = keystore.boot("pico_w", "0.1.0", root=b.root)
        assert later["device"] == first["device"]
        assert later["public_key"] == _hex(ed25519.public_key(bytes(range(32))))
        assert later["public_key"] != first["public_key"]


def test_damaged_key_is_refused_not_replaced():
    with _Board() as b:
        keystore.boot("pico_w", "0.1.0", root=b.root)
        b.write(keystore.KEY_FILE, b"short")
        try:
            keystore.boot("pico_w", "0.1.0", root=b.root)
            raise AssertionError("a damaged key was accepted")
        except keystore.KeyStoreError as e:
            assert "damaged" in str(e)
        assert b.read(keystore.KEY_FILE) == b"short"


def test_power_cut_during_first_key_write_leaves_no_half_file():
    with _Board() as b:
        os.mkdir(b.dir)
        b.write(keystore.KEY_FILE + ".tmp", b"\x01" * 13)  # cut off mid-write
        b.write(keystore.IDENTITY_FILE + ".tmp", b'{"form')
        ident = keystore.boot("pico_w", "0.1.0", root=b.root)
        assert b.names() == ["identity.json", "key.bin"]
        assert len(b.read(keystore.KEY_FILE)) == 32
        assert ident["public_key"] == _hex(ed25519.public_key(b.read(keystore.KEY_FILE)))


def test_failed_atomic_write_keeps_the_old_file():
    with _Board() as b:
        os.mkdir(b.dir)
        path = b.dir + "/f.bin"
        keystore.write_atomic(path, (b"old contents",))
        try:
            keystore.write_atomic(path, (b"new contents, first half", None))
            raise AssertionError("writing None succeeded")
        except TypeError:
            pass
        assert b.read("f.bin") == b"old contents"
        assert b.names() == ["f.bin"]
        keystore.write_atomic(path, (b"new", b" contents"))
        assert b.read("f.bin") == b"new contents" and b.names() == ["f.bin"]


def test_signing_key_matches_identity():
    with _Board() as b:
        ident = keystore.boot("pico_w", "0.1.0", root=b.root)
        key = keystore.signing_key(b.root)
        assert _hex(key.public) == ident["public_key"]
        assert ed25519.verify(key.public, b"reading", key.sign(b"reading"))


def test_no_key_before_first_boot():
    with _Board() as b:
        assert keystore.read_identity(b.root) is None
        try:
            keystore.signing_key(b.root)
            raise AssertionError()
        except keystore.KeyStoreError:
            pass


# ---------------------------------------------------------------- config


def _digest():
    from lightnode.drivers import pointmap

    return pointmap.load(MAP).digest()


def _config(device, change=None):
    cfg = {
        "format": 1,
        "device": device,
        "segment": "feeder-7",
        "broker": "mqtts://broker.grid.example:8883",
        "mqtt": {"username": device, "password": PASSWORD},
        "pointmap": {"digest": _digest()},
        "nodes": [{"role": "ack", "key": NODE_KEY}, {"role": "checkpoint", "key": NODE_KEY}],
    }
    cfg.update(change or {})
    return cfg


def _provision(b, cfg, map_text=MAP):
    b.write(keystore.map_file(_digest()), map_text.encode())
    b.write(keystore.CONFIG_FILE + ".tmp", json.dumps(cfg).encode())
    return keystore.install_config(b.root)


def test_install_and_load_config():
    with _Board() as b:
        dev = keystore.boot("pico_w", "0.1.0", root=b.root)["device"]
        b.write("map-0000000000000000.json", MAP.encode())  # an earlier map, no longer named
        summary = _provision(b, _config(dev))
        assert summary == {"device": dev, "segment": "feeder-7", "pointmap": _digest(), "nodes": 2}
        assert b.names() == ["config.json", "identity.json", "key.bin", keystore.map_file(_digest()),
                            "plan.json"]
        cfg = keystore.load_config(b.root)
        assert _hex(cfg.device) == dev and cfg.segment == "feeder-7"
        assert (cfg.broker_scheme, cfg.broker_host, cfg.broker_port) == ("mqtts", "broker.grid.example", 8883)
        assert cfg.broker_tls and cfg.username == dev and cfg.password == PASSWORD
        assert cfg.pointmap.digest() == _digest() and len(cfg.pointmap) == 1
        assert cfg.nodes["ack"] == [binascii.unhexlify(NODE_KEY)]
        # by kid, as signed filters and acks name their signer: one key, both roles
        import hashlib

        key = binascii.unhexlify(NODE_KEY)
        kid = hashlib.sha256(key).digest()[:8]
        assert cfg.node_keys() == {kid: (key, ("ack", "checkpoint"))}
        assert PASSWORD not in repr(cfg)
        # the plan the application boots from: the same values, tied to these files
        from ln import points

        d = b.root + keystore.DIR
        plan = points.load_plan(d)
        assert plan is not None and plan["device"] == cfg.device and plan["segment"] == "feeder-7"
        assert plan["node_keys"] == cfg.node_keys() and len(plan["points"]) == 1
        assert plan["broker"] == ("broker.grid.example", 8883, True, dev, PASSWORD)
        b.write("config.json", b.read("config.json") + b" ")
        assert points.load_plan(d) is None  # the config changed: check it in full again


def test_refused_config_is_not_installed():
    with _Board() as b:
        dev = keystore.boot("pico_w", "0.1.0", root=b.root)["device"]
        _provision(b, _config(dev))
        good = b.read(keystore.CONFIG_FILE)
        bad = (
            ({"device": "00" * 8}, "device"),
            ({"segment": "Feeder 7"}, "segment"),
            ({"segment": ""}, "segment"),
            ({"broker": "http://broker:80"}, "broker"),
            ({"broker": "mqtt://:1883"}, "broker"),
            ({"broker": "mqtt://host:99999"}, "broker"),
            ({"mqtt": {"username": "someone", "password": PASSWORD}}, "mqtt.username"),
            ({"mqtt": {"username": dev, "password": "short"}}, "mqtt.password"),
            ({"pointmap": {"digest": "ab" * 32}}, "pointmap"),
            ({"nodes": [{"role": "king", "key": NODE_KEY}]}, "nodes[0].role"),
            ({"nodes": [{"role": "ack", "key": "zz"}]}, "nodes[0].key"),
            ({"nodes": [{"role": "ack", "key": NODE_KEY}, {"role": "ack", "key": NODE_KEY}]}, "nodes[1]"),
            ({"format": 2}, "format"),
            ({"extra": 1}, "config"),
        )
        for change, field in bad:
            try:
                _provision(b, _config(dev, change))
                raise AssertionError("accepted %r" % (change,))
            except keystore.ConfigError as e:
                assert e.field == field, (change, e.field)
            assert b.read(keystore.CONFIG_FILE) == good
            assert keystore.CONFIG_FILE + ".tmp" not in b.names()


def test_load_config_before_provisioning():
    with _Board() as b:
        keystore.boot("pico_w", "0.1.0", root=b.root)
        try:
            keystore.load_config(b.root)
            raise AssertionError()
        except keystore.ConfigError as e:
            assert "not provisioned" in str(e)


def test_broker_urls():
    assert keystore.parse_broker("mqtt://127.0.0.1:1883") == ("mqtt", "127.0.0.1", 1883)
    assert keystore.parse_broker("mqtt://broker") == ("mqtt", "broker", 1883)
    assert keystore.parse_broker("mqtts://broker/") == ("mqtts", "broker", 8883)
    assert keystore.parse_broker("mqtt://[::1]:1884") == ("mqtt", "::1", 1884)
    for url in ("broker:1883", "mqtt://", "mqtt://a b", "mqtt://h:", "mqtt://h:0", "mqtt://h:x1",
                "mqtt://[::1", "tcp://h:1", 7):
        try:
            keystore.parse_broker(url)
            raise AssertionError(url)
        except keystore.ConfigError:
            pass
