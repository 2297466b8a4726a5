"""Broker authorisation against a real Mosquitto started here with the generated files.

The ACL, password file and configuration come from ``lightnode.broker``;
paho-mqtt clients then try what a device must not do, over plain MQTT and
over TLS. Mosquitto drops an unauthorised publish silently, so every
"never arrives" is proven with a fence: a permitted message sent after the
forbidden one on the same connection, received by the same subscriber.
The broker delivers in order, so once the fence is in, the forbidden
message would have been too. Skips where mosquitto is missing; fails there
under CI=true.
"""

import base64
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from _need import missing
from _node_support import running_mosquitto
from click.testing import CliRunner
from lightnode import broker
from lightnode.brokercli import broker as broker_cli
from lightnode.firmware.ln import wire

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
WAIT = 3.0  # seconds for anything that should happen

SEG, SEG2 = "feeder-1", "feeder-2"
A, B, C = "a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2", "c3c3c3c3c3c3c3c3"
D, E = "d4d4d4d4d4d4d4d4", "e5e5e5e5e5e5e5e5"  # D: hashed by mosquitto_passwd; E: no credential
NODE, NODE2 = "node-feeder", "node-witness"
FILTER = b"\x01filter-epoch-1"


def _tool(path):
    if os.path.exists(path):
        return path
    missing("%s is not installed (Debian: apt-get install mosquitto mosquitto-clients)" % path)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto_hash(tmp_path, user, password):
    f = tmp_path / ("mp-" + user)
    f.write_text("")
    subprocess.run([_tool(MOSQUITTO_PASSWD), "-b", str(f), user, password], check=True,
                   capture_output=True, timeout=10)
    return f.read_text().strip().split(":", 1)[1]


# -- $7$ hashing ------------------------------------------------------------

# From `mosquitto_passwd -b p alice secret` (Mosquitto 2.0.11).
MOSQUITTO_VECTOR = ("$7$101$hHxIJ4LCXW5z8rcD$v//Tmc7f7sYbdnhOJm8nl8zuerMhBSEJrFQ6m2UgNkl99"
                    "GtHs3h5/hrlCVfWJ+uugQ013svlYHzCzd4QeuC7iA==")


def test_hash_matches_a_mosquitto_passwd_vector():
    assert broker.check_password("secret", MOSQUITTO_VECTOR)
    assert not broker.check_password("Secret", MOSQUITTO_VECTOR)
    salt = base64.b64decode("hHxIJ4LCXW5z8rcD")
    assert broker.hash_password("secret", salt=salt) == MOSQUITTO_VECTOR


def test_hash_format():
    h = broker.hash_password("pw")
    # $7$ iterations $ base64(12-byte salt) $ base64(64-byte PBKDF2-SHA512)
    m = re.fullmatch(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", h)
    assert m and int(m.group(1)) == 101
    assert len(base64.b64decode(m.group(2))) == 12 and len(base64.b64decode(m.group(3))) == 64
    assert h != broker.hash_password("pw")  # a fresh salt each time
    assert broker.check_password("pw", h) and broker.is_hashed(h) and not broker.is_hashed("pw")
    with pytest.raises(ValueError):
        broker.check_password("pw", "$6$abc$def")


def test_hash_agrees_with_mosquitto_passwd_now(tmp_path):
    h = _mosquitto_hash(tmp_path, "u", "pass word:with colon")
    assert broker.check_password("pass word:with colon", h)
    assert not broker.check_password("pass word", h)


# -- files ------------------------------------------------------------------


def test_acl_grants_each_device_its_own_topics_only():
    text = broker.acl_text([(A, SEG), (C, SEG2)], [NODE])
    blocks = {}
    for block in text.split("\n\n"):
        lines = [x for x in block.splitlines() if x and not x.startswith("#")]
        if lines:
            assert lines[0].startswith("user ")  # nothing outside a user block
            blocks[lines[0][5:]] = lines[1:]
    assert blocks[A] == ["topic write " + wire.TOPIC_TX % (SEG, A),
                         "topic read " + wire.TOPIC_ACK % (SEG, A),
                         "topic read " + wire.TOPIC_FILTER % SEG]
    assert blocks[NODE] == ["topic read ln/+/+/tx", "topic write ln/+/+/ack",
                            "topic readwrite ln/+/filter", "topic readwrite ln/+/block",
                            "topic readwrite ln/+/cosig"]
    assert "pattern" not in text


@pytest.mark.parametrize("dev,seg", [("A1", SEG), ("a1+", SEG), ("a", SEG), (A, "#"),
                                     (A, "x/y"), (A, "Feeder"), (A, "a" * 33), ("ab" * 33, SEG)])
def test_names_that_could_widen_a_grant_are_refused(dev, seg):
    with pytest.raises(broker.BrokerError):
        broker.device_acl(dev, seg)


def test_write_broker_refuses_clashes_and_reports_missing(tmp_path):
    with pytest.raises(broker.BrokerError, match="more than one segment"):
        broker.write_broker(tmp_path, [(A, SEG), (A, SEG2)], [], {}, plain_port=1)
    with pytest.raises(broker.BrokerError, match="named like a device"):
        broker.write_broker(tmp_path, [(A, SEG)], [A], {A: "x"}, plain_port=1)
    with pytest.raises(broker.BrokerError, match="no listener"):
        broker.write_broker(tmp_path, [], [], {})
    with pytest.raises(broker.BrokerError, match="node account node-x has no password"):
        broker.write_broker(tmp_path, [], ["node-x"], {}, plain_port=1)
    files = broker.write_broker(tmp_path, [(A, SEG), (B, SEG)], [], {A: "pw"}, plain_port=1)
    assert files.no_credentials == [B] and files.devices == 1
    assert B not in files.acl.read_text() and B not in files.passwd.read_text()
    assert oct(files.passwd.stat().st_mode & 0o777) == "0o600"


def test_certs_are_p256_small_and_reuse_the_ca(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    d = tmp_path / "certs"
    first = broker.make_certs(d, hosts=["broker.grid.example", "10.0.0.5"])
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    srv = x509.load_pem_x509_certificate((d / "server.crt").read_bytes())
    for cert in (ca, srv):
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    srv.verify_directly_issued_by(ca)
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"broker.grid.example", "localhost"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"10.0.0.5", "127.0.0.1"}
    for name in ("ca.key", "server.key"):
        assert (d / name).stat().st_mode & 0o777 == 0o600
    assert first.server_der_bytes < 600 and first.ca_der_bytes < 600
    again = broker.make_certs(d, hosts=["broker.grid.example"])
    assert again.ca_reused and again.ca_fingerprint == first.ca_fingerprint
    assert broker.make_certs(d, new_ca=True).ca_fingerprint != first.ca_fingerprint


# -- a Mosquitto of our own -------------------------------------------------


class Peer:
    """One paho client; messages land in a queue, every wait bounded."""

    def __init__(self, net, user, password, client_id=None):
        self.messages = queue.Queue()
        self.connected = queue.Queue()
        self.subacks = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or user,
                             protocol=mqtt.MQTTv311, clean_session=True)
        if user is not None:
            self.c.username_pw_set(user, password)
        if net["tls"]:
            self.c.tls_set(ca_certs=str(net["ca"]))
        self.c.on_connect = lambda c, u, f, rc, p: self.connected.put(rc)
        self.c.on_disconnect = lambda c, u, f, rc, p: self.connected.put(rc)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.c.connect(net["host"], net["port"], keepalive=10)
        self.c.loop_start()
        self.rc = self.connected.get(timeout=WAIT)

    @property
    def ok(self):
        return not self.rc.is_failure

    def subscribe(self, topic):
        self.c.subscribe(topic, qos=1)
        return [not rc.is_failure for rc in self.subacks.get(timeout=WAIT)][0]

    def publish(self, topic, payload, retain=False):
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published()

    def until(self, topic, payload):
        """Everything received up to and including (topic, payload)."""
        got = []
        deadline = time.monotonic() + WAIT
        while True:
            m = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            got.append(m)
            if m[:2] == (topic, payload):
                return got

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def mosq(tmp_path_factory):
    exe = _tool(MOSQUITTO)
    tmp = tmp_path_factory.mktemp("broker")
    certs = broker.make_certs(tmp / "certs")
    pw = {u: broker.new_password() for u in (A, B, C, D, NODE, NODE2)}
    creds = dict(pw)
    creds[D] = _mosquitto_hash(tmp, D, pw[D])  # mosquitto_passwd's hash, used as given
    creds[C] = broker.hash_password(pw[C], iterations=1000)  # ours, not the default count
    tls_port, plain_port = _free_port(), _free_port()
    files = broker.write_broker(
        tmp / "out", [(A, SEG), (B, SEG), (C, SEG2), (D, SEG), (E, SEG)], [NODE, NODE2], creds,
        certs_dir=tmp / "certs", port=tls_port, bind="127.0.0.1", plain_port=plain_port,
        user="root" if os.geteuid() == 0 else None)
    with running_mosquitto(exe, files.conf, (tls_port, plain_port), tmp / "mosquitto.log"):
        yield {"pw": pw, "tls_port": tls_port, "plain_port": plain_port,
               "ca": certs.paths["ca.crt"], "files": files}


@pytest.fixture(params=["plain", "tls"])
def net(request, mosq):
    tls = request.param == "tls"
    peers = []

    def connect(user, password=None, client_id=None):
        p = Peer(n, user, mosq["pw"].get(user) if password is None else password, client_id)
        peers.append(p)
        return p

    n = {"tls": tls, "host": "127.0.0.1", "ca": mosq["ca"],
         "port": mosq["tls_port"] if tls else mosq["plain_port"], "pw": mosq["pw"],
         "connect": connect}
    yield n
    for p in peers:
        p.close()


@pytest.fixture
def retained_filter(net):
    node = net["connect"](NODE2)
    node.publish(wire.TOPIC_FILTER % SEG2, FILTER + b" seg 2", retain=True)
    node.publish(wire.TOPIC_FILTER % SEG, FILTER, retain=True)
    node.close()
    return FILTER


def test_device_cannot_publish_on_another_devices_topic(net):
    node = net["connect"](NODE)
    assert node.ok and node.subscribe("ln/+/+/tx")
    a = net["connect"](A)
    assert a.ok
    a.publish(wire.TOPIC_TX % (SEG, B), b"forged for B")
    a.publish(wire.TOPIC_TX % (SEG2, A), b"A in the wrong segment")
    a.publish(wire.TOPIC_TX % (SEG, A), b"fence")
    assert node.until(wire.TOPIC_TX % (SEG, A), b"fence") == [
        (wire.TOPIC_TX % (SEG, A), b"fence", False)]


def test_device_cannot_write_acks(net):
    b = net["connect"](B)
    assert b.subscribe(wire.TOPIC_ACK % (SEG, B))
    a = net["connect"](A)
    a.publish(wire.TOPIC_ACK % (SEG, B), b"forged ack")
    a.publish(wire.TOPIC_ACK % (SEG, A), b"self-made ack")
    node = net["connect"](NODE)
    node.publish(wire.TOPIC_ACK % (SEG, B), b"real ack")
    assert b.until(wire.TOPIC_ACK % (SEG, B), b"real ack") == [
        (wire.TOPIC_ACK % (SEG, B), b"real ack", False)]


def test_device_cannot_read_another_devices_acks(net):
    a = net["connect"](A)
    assert a.subscribe(wire.TOPIC_ACK % (SEG, A))
    # Mosquitto 2.0 may grant these subscriptions; it checks read access on
    # every delivery, which is what matters.
    a.subscribe(wire.TOPIC_ACK % (SEG, B))
    a.subscribe("ln/#")
    a.subscribe("#")
    node = net["connect"](NODE)
    node.publish(wire.TOPIC_ACK % (SEG, B), b"ack for B")
    node.publish(wire.TOPIC_TX % (SEG, B), b"not for anyone")  # refused: nodes read tx only
    node.publish(wire.TOPIC_ACK % (SEG, A), b"ack for A")
    got = a.until(wire.TOPIC_ACK % (SEG, A), b"ack for A")
    assert all(t == wire.TOPIC_ACK % (SEG, A) or t == wire.TOPIC_FILTER % SEG for t, _, _ in got)
    assert (wire.TOPIC_ACK % (SEG, B), b"ack for B", False) not in got


def _current_filter(net, user, seg=SEG):
    reader = net["connect"](user)
    assert reader.subscribe(wire.TOPIC_FILTER % seg)
    topic, payload, retain = reader.messages.get(timeout=WAIT)
    assert topic == wire.TOPIC_FILTER % seg and retain
    reader.close()
    return payload


def test_device_cannot_clear_or_overwrite_the_filter(net, retained_filter):
    node = net["connect"](NODE)
    assert node.subscribe("ln/+/+/tx")
    a = net["connect"](A)
    assert a.subscribe(wire.TOPIC_FILTER % SEG)
    assert a.messages.get(timeout=WAIT) == (wire.TOPIC_FILTER % SEG, retained_filter, True)
    a.subscribe(wire.TOPIC_FILTER % SEG2)  # another segment's filter: never delivered
    assert a.subscribe(wire.TOPIC_FILTER % SEG)  # the retained filter again: a fence
    assert a.messages.get(timeout=WAIT) == (wire.TOPIC_FILTER % SEG, retained_filter, True)
    a.publish(wire.TOPIC_FILTER % SEG, b"", retain=True)  # would clear the retained filter
    a.publish(wire.TOPIC_FILTER % SEG, b"everyone welcome", retain=True)
    a.publish(wire.TOPIC_FILTER % SEG, b"live, not retained")
    a.publish(wire.TOPIC_TX % (SEG, A), b"fence")
    node.until(wire.TOPIC_TX % (SEG, A), b"fence")
    assert a.messages.empty()  # A's own subscription saw none of its writes
    assert _current_filter(net, B) == retained_filter


def test_credentials_are_each_accounts_own(net):
    pw = net["pw"]
    assert net["connect"](A).ok
    assert net["connect"](D).ok  # hashed by mosquitto_passwd
    assert net["connect"](C).ok  # hashed here at 1000 iterations
    for user, password in [(B, "wrong"), (B, pw[A]), (A, pw[B]), (B, ""), (E, "anything"),
                           ("nobody", pw[A]), (NODE, pw[A]), (A, pw[NODE])]:
        p = net["connect"](user, password)
        assert not p.ok, (user, password)
        assert str(p.rc) in ("Not authorized", "Bad user name or password")
    anon = net["connect"](None, client_id="anon")
    assert not anon.ok


def test_client_id_cannot_take_over_another_session(net):
    b = net["connect"](B)
    assert b.subscribe(wire.TOPIC_ACK % (SEG, B))
    a = net["connect"](A, client_id=B)  # the broker makes the client id A's user name
    assert a.ok
    node = net["connect"](NODE)
    node.publish(wire.TOPIC_ACK % (SEG, B), b"still B's")
    assert b.until(wire.TOPIC_ACK % (SEG, B), b"still B's")
    assert b.connected.empty()  # B was not disconnected


def test_node_reads_every_tx_writes_acks_and_the_filter(net, retained_filter):
    node = net["connect"](NODE)
    assert node.subscribe("ln/+/+/tx") and node.subscribe("ln/+/filter")
    node.until(wire.TOPIC_FILTER % SEG, retained_filter)
    a, c = net["connect"](A), net["connect"](C)
    assert a.subscribe(wire.TOPIC_ACK % (SEG, A)) and c.subscribe(wire.TOPIC_FILTER % SEG2)
    a.publish(wire.TOPIC_TX % (SEG, A), b"tx a")
    c.publish(wire.TOPIC_TX % (SEG2, C), b"tx c")
    got = [node.messages.get(timeout=WAIT)[:2] for _ in range(2)]
    assert sorted(got) == [(wire.TOPIC_TX % (SEG, A), b"tx a"), (wire.TOPIC_TX % (SEG2, C), b"tx c")]
    node.publish(wire.TOPIC_ACK % (SEG, A), b"ack 1")
    assert a.until(wire.TOPIC_ACK % (SEG, A), b"ack 1")
    node.publish(wire.TOPIC_FILTER % SEG2, b"filter 2", retain=True)
    assert c.until(wire.TOPIC_FILTER % SEG2, b"filter 2")
    assert _current_filter(net, C, SEG2) == b"filter 2"  # retained for the next to connect


def test_tls_checks_the_host_name_and_the_ca(mosq, tmp_path):
    port = mosq["tls_port"]
    ctx = ssl.create_default_context(cafile=str(mosq["ca"]))
    for host in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            with ctx.wrap_socket(s, server_hostname=host) as t:
                assert t.version() in ("TLSv1.2", "TLSv1.3")
                assert t.cipher()[0].startswith(("ECDHE-ECDSA", "TLS_"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
            ctx.wrap_socket(s, server_hostname="elsewhere.example")
    other = broker.make_certs(tmp_path / "other")
    ctx2 = ssl.create_default_context(cafile=str(other.paths["ca.crt"]))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx2.wrap_socket(s, server_hostname="127.0.0.1")
    # TLS 1.2 only, as a Pico W's mbedTLS speaks it: still served.
    ctx12 = ssl.create_default_context(cafile=str(mosq["ca"]))
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        with ctx12.wrap_socket(s, server_hostname="127.0.0.1") as t:
            assert t.version() == "TLSv1.2"


# -- the commands -----------------------------------------------------------


def _registry(path):
    from lightnode import keys, registry

    reg = registry.open_registry(str(path))
    seed = keys.generate_seed()
    reg.init_admin("alice", keys.public_key(seed), seed)
    admin = reg.as_operator("alice", seed)
    for dev, seg in [(A, SEG), (B, SEG), (C, SEG2), (D, SEG), (E, SEG)]:
        reg.add_device(bytes.fromhex(dev), keys.public_key(keys.generate_seed()), seg,
                       "pico_w", "0.1.0", "ab" * 32, admin)
    reg.revoke_device(bytes.fromhex(C), "decommissioned", admin)
    reg.quarantine_device(bytes.fromhex(D), 1, [b"\x00" * 32], admin)
    reg.add_node_key(NODE, wire.ROLE_ACK, keys.public_key(keys.generate_seed()), admin)
    reg.add_node_key(NODE, wire.ROLE_FILTER, keys.public_key(keys.generate_seed()), admin)
    reg.close()


def test_cli_certs_then_config_from_the_registry(tmp_path):
    exe = _tool(MOSQUITTO)
    run = CliRunner().invoke
    certs = tmp_path / "certs"
    r = run(broker_cli, ["certs", str(certs), "--host", "broker.grid.example", "--days", "30"])
    assert r.exit_code == 0, r.output
    assert re.search(r"CA SHA-256 fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}", r.output)
    assert re.search(r"\d+ bytes DER; CA \d+ bytes DER", r.output)
    r = run(broker_cli, ["certs", str(certs)])
    assert r.exit_code == 0 and r.output.startswith("kept CA")

    _registry(tmp_path / "reg.db")
    (tmp_path / "device-passwords").write_text("# from provisioning\n%s:pw-a\n%s:%s\n%s:pw-d\n"
                                    % (A, B, broker.hash_password("pw-b"), D))
    out = tmp_path / "broker"
    tls_port, plain_port = _free_port(), _free_port()
    args = ["config", "--registry", str(tmp_path / "reg.db"), "--out", str(out),
            "--certs", str(certs),  # provisioning's device-passwords, found beside the registry
            "--port", str(tls_port), "--bind", "127.0.0.1", "--plain-port", str(plain_port)]
    if os.geteuid() == 0:
        args += ["--user", "root"]
    r = run(broker_cli, args)
    assert r.exit_code == 0, r.output
    assert "2 devices, 1 node accounts (credentials: %s)" % (tmp_path / "device-passwords") \
        in r.output  # C revoked, D quarantined
    assert "no credential and no account: %s" % E in r.output
    assert "start: mosquitto -c %s" % (out / "mosquitto.conf") in r.output
    acl = (out / "acl").read_text()
    assert "user %s\n" % A in acl and "user %s\n" % NODE in acl
    assert C not in acl and D not in acl and E not in acl
    node_pw = (out / ("node-%s.password" % NODE)).read_text().strip()
    r = run(broker_cli, args)  # again: the node keeps its password
    assert r.exit_code == 0 and "new password" not in r.output
    assert (out / ("node-%s.password" % NODE)).read_text().strip() == node_pw

    with running_mosquitto(exe, out / "mosquitto.conf", (tls_port, plain_port), tmp_path / "log") as proc:
        net = {"tls": True, "host": "localhost", "port": tls_port, "ca": certs / "ca.crt"}
        a, b, node, d = peers = [Peer(net, A, "pw-a"), Peer(net, B, "pw-b"),
                                 Peer(net, NODE, node_pw), Peer(net, D, "pw-d")]
        try:
            assert [p.ok for p in peers] == [True, True, True, False]
            # Revoke B (its credential gone): regenerate, reload. Mosquitto checks the
            # connected clients again and drops B; A stays.
            creds = (tmp_path / "device-passwords").read_text().splitlines()
            (tmp_path / "device-passwords").write_text(
                "\n".join(x for x in creds if not x.startswith(B + ":")) + "\n")
            assert run(broker_cli, args).exit_code == 0
            proc.send_signal(signal.SIGHUP)
            b.connected.get(timeout=WAIT)  # B's disconnect
            assert not b.c.is_connected()
            assert node.subscribe("ln/+/+/tx")
            a.publish(wire.TOPIC_TX % (SEG, A), b"still here")
            assert node.until(wire.TOPIC_TX % (SEG, A), b"still here")
            assert a.connected.empty() and node.connected.empty()  # never dropped
            assert not Peer(net, B, "pw-b").ok
        finally:
            for p in peers:
                p.close()


def test_cli_config_refuses_a_missing_registry(tmp_path):
    r = CliRunner().invoke(broker_cli, ["config", "--registry", str(tmp_path / "none.db"),
                                        "--out", str(tmp_path / "o"), "--plain-port", "1"])
    assert r.exit_code != 0 and "no registry there" in r.output
    assert not (tmp_path / "none.db").exists()
