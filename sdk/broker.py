"""Mosquitto authorisation for a lightnode grid: password file, ACL, configuration, certificates.

From the registry's devices and node accounts this writes what a Mosquitto 2
broker needs so that a device writes only its own transaction topic and reads
only its own ack topic and its segment's filter, and only node accounts write
acks, NACKs and filters (DESIGN.md, Authorisation; topics from ``wire``).
The core takes plain data, not a registry, so it can be fed from anywhere:

    >>> from lightnode import broker
    >>> files = broker.write_broker(
    ...     "out", devices=[("a1b2", "feeder-7")], nodes=["node-feeder-7"],
    ...     credentials={"a1b2": "device password", "node-feeder-7": "node password"},
    ...     certs_dir="certs")
    >>> broker.make_certs("certs", hosts=["broker.example"]).ca_fingerprint  # doctest: +SKIP

Passwords are hashed here in Mosquitto 2's own ``$7$`` format (PBKDF2-SHA512),
so the plain password never reaches the broker's disk.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightnode.errors import LightnodeError
from lightnode.firmware.ln import wire as spec


class BrokerError(LightnodeError):
    """The broker's files cannot be made from what was given (bad name, missing certificate)."""


# Mosquitto 2's password hash: "$7$" iterations "$" base64(salt) "$" base64(PBKDF2-SHA512).
# 101 iterations and a 12-byte salt are what mosquitto_passwd 2.0 writes. Device and
# node passwords are random (128 bits and more), so more iterations would cost the
# broker CPU on every connect without making a guess any likelier.
PW_PREFIX = "$7$"
PW_ITERATIONS = 101
PW_SALT_BYTES = 12
PW_HASH_BYTES = 64
_PW_RE = re.compile(r"^\$7\$([0-9]+)\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$")

_HEX = frozenset("0123456789abcdef")
_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
# Node account names: no MQTT wildcard, no separator, nothing the passwd or ACL file parses.
_NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

CA_CERT = "ca.crt"
CA_DER = "ca.der"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
CONF = "mosquitto.conf"
PASSWD = "passwd"
ACL = "acl"
TLS_PORT = 8883


# -- passwords --------------------------------------------------------------


def hash_password(password: str, iterations: int = PW_ITERATIONS, salt: bytes | None = None) -> str:
    """``password`` hashed as a Mosquitto 2 password-file entry (``$7$...``)."""
    if not isinstance(password, str) or not password:
        raise ValueError("password: a non-empty string expected")
    if iterations < 1:
        raise ValueError("iterations: at least 1")
    salt = os.urandom(PW_SALT_BYTES) if salt is None else salt
    dk = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, PW_HASH_BYTES)
    return "%s%d$%s$%s" % (PW_PREFIX, iterations, _b64(salt), _b64(dk))


def check_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` entry (ours or mosquitto_passwd's)."""
    m = _PW_RE.match(hashed)
    if m is None:
        raise ValueError("not a $7$ PBKDF2-SHA512 password hash")
    iterations = int(m.group(1))
    salt = base64.b64decode(m.group(2))
    want = base64.b64decode(m.group(3))
    got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, len(want))
    return hmac.compare_digest(got, want)


def is_hashed(secret: str) -> bool:
    """True when ``secret`` is already a ``$7$`` hash rather than a plain password."""
    return _PW_RE.match(secret) is not None


def new_password() -> str:
    """A random account password (32 bytes from the OS, URL-safe base64)."""
    return secrets.token_urlsafe(32)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


# -- names ------------------------------------------------------------------


def check_device(device_hex: str, segment: str) -> tuple[str, str]:
    """A (device id hex, segment) pair, refused unless both are safe in a topic and the ACL."""
    if (not isinstance(device_hex, str) or not 2 <= len(device_hex) <= 2 * spec.MAX_DEVICE_ID
            or len(device_hex) % 2 or not set(device_hex) <= _HEX):
        raise BrokerError("device id %r: lowercase hex of 1-%d bytes expected"
                          % (device_hex, spec.MAX_DEVICE_ID))
    check_segment(segment)
    return device_hex, segment


def check_segment(segment: str) -> str:
    if (not isinstance(segment, str) or not 1 <= len(segment) <= spec.MAX_SEGMENT
            or not set(segment) <= _SEGMENT_CHARS):
        raise BrokerError("segment %r: 1-%d characters of a-z0-9- expected"
                          % (segment, spec.MAX_SEGMENT))
    return segment


def check_node(name: str) -> str:
    if not isinstance(name, str) or not _NODE_RE.match(name):
        raise BrokerError("node account %r: 1-64 characters of A-Za-z0-9._- expected" % (name,))
    return name


# -- ACL and password file --------------------------------------------------


def device_acl(device_hex: str, segment: str) -> list[str]:
    """The ACL lines of one device: its tx topic (write), its ack topic and its filter (read)."""
    check_device(device_hex, segment)
    return [
        "topic write " + spec.TOPIC_TX % (segment, device_hex),
        "topic read " + spec.TOPIC_ACK % (segment, device_hex),
        "topic read " + spec.TOPIC_FILTER % segment,
    ]


def node_acl() -> list[str]:
    """The ACL lines of a node account: every device's tx (read), every ack and filter (write).

    A node also reads the filters, so it can check what the broker retains.
    """
    return [
        "topic read " + spec.TOPIC_TX % ("+", "+"),
        "topic write " + spec.TOPIC_ACK % ("+", "+"),
        "topic readwrite " + spec.TOPIC_FILTER % "+",
        "topic readwrite " + spec.TOPIC_BLOCK % "+",
        "topic readwrite " + spec.TOPIC_COSIG % "+",
    ]


def acl_text(devices: Iterable[tuple[str, str]], nodes: Iterable[str]) -> str:
    """Mosquitto ACL file: one ``user`` block per account and nothing for anyone else.

    No line stands before the first ``user`` and no ``pattern`` line is written:
    either would apply to every account, devices included.
    """
    out = ["# lightnode broker ACL, generated by `lightnode broker config`: regenerate, do not edit.",
           "# Nothing is granted outside these user blocks.", ""]
    for name in sorted(set(nodes)):
        out += ["# node account", "user " + check_node(name), *node_acl(), ""]
    for dev, seg in sorted(set(devices), key=lambda d: (d[1], d[0])):
        out += ["# device in segment " + seg, "user " + dev, *device_acl(dev, seg), ""]
    return "\n".join(out)


def passwd_text(credentials: Mapping[str, str]) -> str:
    """Mosquitto password file: ``user:$7$...`` per account; plain passwords are hashed here."""
    lines = []
    for user in sorted(credentials):
        secret = credentials[user]
        if ":" in user or not user.strip() or user != user.strip():
            raise BrokerError("user name %r cannot stand in a password file" % (user,))
        lines.append("%s:%s" % (user, secret if is_hashed(secret) else hash_password(secret)))
    return "".join(line + "\n" for line in lines)


# -- configuration ----------------------------------------------------------


@dataclass
class Tls:
    """The TLS files a listener serves (paths as the broker will see them)."""

    cafile: Path
    certfile: Path
    keyfile: Path

    @classmethod
    def from_dir(cls, certs_dir: str | os.PathLike[str]) -> Tls:
        d = Path(certs_dir).resolve()
        tls = cls(d / CA_CERT, d / SERVER_CERT, d / SERVER_KEY)
        missing = [p.name for p in (tls.cafile, tls.certfile, tls.keyfile) if not p.is_file()]
        if missing:
            raise BrokerError("%s: missing %s (make them with `lightnode broker certs %s`)"
                              % (d, ", ".join(missing), d))
        return tls


def config_text(passwd: Path, acl: Path, data_dir: Path, tls: Tls | None = None,
                port: int = TLS_PORT, bind: str | None = None, plain_port: int | None = None,
                user: str | None = None) -> str:
    """mosquitto.conf for the generated password file and ACL.

    ``tls`` gives a TLS listener on ``port`` (all interfaces unless ``bind``);
    ``plain_port`` adds a plain listener on 127.0.0.1 only.
    """
    if tls is None and plain_port is None:
        raise BrokerError("no listener: give the TLS certificates, or a plain (loopback) port")
    out = [
        "# lightnode broker, generated by `lightnode broker config`: regenerate, do not edit.",
        "# Accounts and what they may do: passwd and acl beside this file (docs/broker.md).",
        "per_listener_settings false",
        "allow_anonymous false",
        "allow_zero_length_clientid false",
        "password_file " + str(passwd),
        "acl_file " + str(acl),
        "",
        "# Retained filters and devices' queued acks must outlive a restart.",
        "persistence true",
        "persistence_location " + str(data_dir).rstrip("/") + "/",
        "autosave_interval 60",
        # A device's session (its queued acks) waits this long for it to come back.
        "persistent_client_expiration 30d",
        # A full node acknowledges (PUBACK) a transaction only once it is in a
        # stored block, so it needs more messages in flight than a block holds
        # (the default 20 would leave blocks to be cut by age alone), and its
        # session must hold the backlog of a node restart (the default 1,000
        # would drop it): 100,000 transactions of about 4 KB.
        "max_inflight_messages 4096",
        "max_queued_messages 100000",
        "max_queued_bytes 0",
        "",
    ]
    if user:
        out += ["user " + user, ""]
    # The client id is the user name, on every listener: one account cannot
    # take over, or knock off, another account's session by naming its id.
    if tls is not None:
        out += [
            "listener %d%s" % (port, " " + bind if bind else ""),
            "use_username_as_clientid true",
            "cafile " + str(tls.cafile),
            "certfile " + str(tls.certfile),
            "keyfile " + str(tls.keyfile),
            "tls_version tlsv1.2",
            "",
        ]
    if plain_port is not None:
        out += [
            "# Plain MQTT, loopback only (tests, a local full node).",
            "listener %d 127.0.0.1" % plain_port,
            "use_username_as_clientid true",
            "",
        ]
    return "\n".join(out)


@dataclass
class BrokerFiles:
    """What ``write_broker`` wrote, and the devices it left out for want of a credential."""

    conf: Path
    passwd: Path
    acl: Path
    data_dir: Path
    devices: int = 0
    nodes: int = 0
    no_credentials: list[str] = field(default_factory=list)
    new_node_passwords: dict[str, Path] = field(default_factory=dict)

    def start_command(self) -> str:
        return "mosquitto -c %s" % self.conf


def write_broker(out_dir: str | os.PathLike[str], devices: Sequence[tuple[str, str]],
                 nodes: Sequence[str], credentials: Mapping[str, str],
                 certs_dir: str | os.PathLike[str] | None = None, port: int = TLS_PORT,
                 bind: str | None = None, plain_port: int | None = None,
                 data_dir: str | os.PathLike[str] | None = None, user: str | None = None,
                 make_node_passwords: bool = False) -> BrokerFiles:
    """Write ``mosquitto.conf``, ``passwd`` and ``acl`` into ``out_dir``.

    ``devices`` are (device id hex, segment) pairs, ``nodes`` node account
    names, ``credentials`` user name -> plain password or ``$7$`` hash. A
    device without a credential gets no account (it is reported, not
    invented: its password lives on the board). With ``make_node_passwords``
    a node account without one gets a new password, kept in
    ``out_dir/node-NAME.password`` (0600) and reused on the next run.
    """
    out = Path(out_dir).resolve()
    devs = [check_device(d, s) for d, s in devices]
    ids = [d for d, _ in devs]
    if len(set(ids)) != len(ids):
        dup = sorted({d for d in ids if ids.count(d) > 1})
        raise BrokerError("device in more than one segment: %s" % ", ".join(dup))
    node_names = sorted({check_node(n) for n in nodes})
    clash = set(node_names) & set(ids)
    if clash:
        raise BrokerError("node account named like a device: %s" % ", ".join(sorted(clash)))
    tls = Tls.from_dir(certs_dir) if certs_dir is not None else None
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data_dir).resolve() if data_dir is not None else out / "data"
    data.mkdir(parents=True, exist_ok=True)

    creds = dict(credentials)
    files = BrokerFiles(out / CONF, out / PASSWD, out / ACL, data)
    for name in node_names:
        if name in creds:
            continue
        keep = out / ("node-%s.password" % name)
        if keep.is_file():
            creds[name] = keep.read_text().strip()
        elif make_node_passwords:
            creds[name] = new_password()
            write_secret(keep, (creds[name] + "\n").encode())
            files.new_node_passwords[name] = keep
        else:
            raise BrokerError("node account %s has no password" % name)
    with_cred = [(d, s) for d, s in devs if d in creds]
    files.no_credentials = sorted(d for d, _ in devs if d not in creds)
    accounts = {u: creds[u] for u in [*node_names, *(d for d, _ in with_cred)]}
    files.devices, files.nodes = len(with_cred), len(node_names)

    write_secret(files.passwd, passwd_text(accounts).encode())
    write_secret(files.acl, acl_text(with_cred, node_names).encode())
    files.conf.write_text(config_text(files.passwd, files.acl, data, tls, port, bind,
                                      plain_port, user))
    return files


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), whatever was there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


# -- certificates -----------------------------------------------------------


@dataclass
class CertInfo:
    ca_fingerprint: str  # SHA-256 of the CA certificate's DER, colon-separated hex
    ca_der_bytes: int
    server_der_bytes: int
    ca_reused: bool
    paths: dict[str, Path]


def make_certs(certs_dir: str | os.PathLike[str], hosts: Sequence[str] = (), days: int = 825,
               ca_days: int = 3650, new_ca: bool = False) -> CertInfo:
    """A broker CA and server certificate, both ECDSA P-256, in ``certs_dir``.

    An existing CA there is kept (devices hold it; a new one means
    reprovisioning every board) and signs a new server certificate, unless
    ``new_ca``. The server certificate names ``hosts`` and localhost,
    127.0.0.1.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1 or ca_days < 1:
        raise ValueError("days: at least 1")
    d = Path(certs_dir)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    start = now - datetime.timedelta(minutes=5)  # a little slack for clocks behind ours

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_reused = (d / CA_CERT).is_file() and (d / CA_KEY).is_file() and not new_ca
    if ca_reused:
        ca_cert = x509.load_pem_x509_certificate((d / CA_CERT).read_bytes())
        loaded = serialization.load_pem_private_key((d / CA_KEY).read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise BrokerError("%s: not an EC key" % (d / CA_KEY))
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lightnode"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "lightnode broker CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=ca_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_secret(d / CA_KEY, pem_key(ca_key))
        (d / CA_CERT).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        (d / CA_DER).write_bytes(ca_cert.public_bytes(serialization.Encoding.DER))

    names: list[x509.GeneralName] = []
    for h in [*hosts, "localhost", "127.0.0.1"]:
        try:
            gn: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(h))
        except ValueError:
            gn = x509.DNSName(h)
        if gn not in names:
            names.append(gn)
    cn = hosts[0] if hosts else "localhost"
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_secret(d / SERVER_KEY, pem_key(key))
    (d / SERVER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca_der = ca_cert.public_bytes(serialization.Encoding.DER)
    (d / CA_DER).write_bytes(ca_der)
    fp = hashlib.sha256(ca_der).hexdigest().upper()
    return CertInfo(
        ca_fingerprint=":".join(fp[i:i + 2] for i in range(0, len(fp), 2)),
        ca_der_bytes=len(ca_der),
        server_der_bytes=len(cert.public_bytes(serialization.Encoding.DER)),
        ca_reused=ca_reused,
        paths={n: d / n for n in (CA_CERT, CA_DER, CA_KEY, SERVER_CERT, SERVER_KEY)},
    )


# -- from the registry ------------------------------------------------------


def from_registry(reg: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """(devices, node accounts) of a ``lightnode.registry`` registry.

    Devices: every one neither revoked nor quarantined (a cloned device's
    broker password is as suspect as its key). Node accounts: every node
    name with an unrevoked key.
    """
    devices = [(d.device_id.hex(), d.segment) for d in reg.devices()
               if getattr(d, "quarantined", None) is None]
    nodes = sorted({k.node for k in reg.node_keys()})
    return devices, nodes


def read_credentials(path: str | os.PathLike[str]) -> dict[str, str]:
    """``user:secret`` lines (a plain password or a ``$7$`` hash; ``#`` comments) as a dict.

    A Mosquitto password file reads as one too.
    """
    creds: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, secret = line.partition(":")
        if not sep or not user or not secret:
            raise BrokerError("%s line %d: user:secret expected" % (path, n))
        if user in creds:
            raise BrokerError("%s line %d: %s given twice" % (path, n, user))
        creds[user] = secret
    return creds
