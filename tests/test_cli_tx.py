"""``lightnode tx inspect|verify`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lightnode import keys, readings
from lightnode import wire as codec
from lightnode.cli import main
from lightnode.firmware.ln import wire

SEED = bytes(range(32))
DEVICE = bytes.fromhex("4c4e0001a5c3e701")
BODY = [
    {0: 1_700_000_000_000_000, 1: 20_000, 2: [0, 1000], 3: [[1, 1, [50_012, 1, -2]]], 4: [[3, 0]]}
]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """What ``lightnode demo --out`` leaves: NNNNNN.cose + NNNNNN.cbor pairs and device.pub; plus wire files."""
    s = codec.Signer(SEED, DEVICE, "feeder-7")
    prev = bytes(32)
    for seq in range(3):
        data, prev = s.make(
            seq, prev, (1_700_000_000_000_000 + seq, wire.TQ_NTP, 1500), wire.KIND_READINGS, BODY
        )
        tx = codec.decode(data)
        (tmp_path / f"{seq:06d}.cose").write_bytes(tx.envelope)
        (tmp_path / f"{seq:06d}.cbor").write_bytes(tx.payload)
    (tmp_path / "tx.bin").write_bytes(data)
    event = {0: 3, 1: 2, 2: 1, 3: 50_512, 4: 50_500, 5: 1_700_000_000_000_000}
    (tmp_path / "event.bin").write_bytes(
        s.make(3, prev, (1, wire.TQ_GPS, 1), wire.KIND_EVENT, event)[0]
    )
    keys.write_public_key(tmp_path / "device.pub", s.public)
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def test_inspect_text(out: Path):
    code, text = run("tx", "inspect", str(out / "000001.cose"), str(out / "event.bin"))
    assert code == 0, text
    assert "COSE envelope 000001.cose" in text and "payload 000001.cbor" in text
    assert "wire transaction" in text
    assert "4c4e0001a5c3e701" in text and "feeder-7" in text
    assert "readings" in text and "event" in text
    assert "ntp" in text and "gps" in text and "2023-11-14T22:13:20" in text
    assert "series 0: 3 samples" in text and "50012" in text
    assert (
        codec.from_parts(
            (out / "000001.cose").read_bytes(), (out / "000001.cbor").read_bytes()
        ).id.hex()
        in text
    )


def test_inspect_json(out: Path):
    code, text = run("tx", "inspect", "--json", str(out / "tx.bin"), str(out / "000000.cbor"))
    assert code == 0, text
    a, b = json.loads(text)
    tx = codec.decode((out / "tx.bin").read_bytes())
    assert a["id"] == tx.id.hex() and a["seq"] == 2 and a["kind_name"] == "readings"
    assert a["time"] == {
        "us": 1_700_000_000_000_002,
        "utc": "2023-11-14T22:13:20.000002Z",
        "quality": 1,
        "quality_name": "ntp",
        "uncertainty_us": 1500,
    }
    assert a["envelope"]["alg"] == -8 and a["envelope"]["kid"] == DEVICE.hex()
    assert a["envelope"]["signed_bytes"] == 70
    (series,) = a["series"]
    expect = readings.decode_body(BODY)[0]
    assert series["samples"] == 3 and series["t0"] == expect.t0
    assert series["points"][0] == {
        "id": 1,
        "order": 1,
        "n": 3,
        "first": 50_012,
        "last": 50_011,
        "min": 50_011,
        "max": 50_013,
        "own_quality": False,
    }
    assert b["seq"] == 0 and b["first"] is True
    assert "payload 000000.cbor" in b["found"]


def test_inspect_with_key_and_a_refused_file(out: Path):
    junk = out / "junk.bin"
    junk.write_bytes(b"\x82\x01")
    code, text = run(
        "tx",
        "inspect",
        "--json",
        "--key-file",
        str(out / "device.pub"),
        str(out / "tx.bin"),
        str(junk),
    )
    assert code == 1
    a, b = json.loads(text)
    assert a["verified"] is True
    assert b["reason"] == wire.R_MALFORMED and "error" in b


def test_verify_ok(out: Path):
    files = sorted(
        str(p) for p in out.glob("0*")
    )  # the .cose and .cbor of each pair: one check per pair
    code, text = run(
        "tx", "verify", "--key-file", str(out / "device.pub"), *files, str(out / "tx.bin")
    )
    assert code == 0, text
    assert text.count("ok ") == 4 and "FAIL" not in text
    pub = (out / "device.pub").read_text().strip()
    code, text = run("tx", "verify", "--key", pub, str(out / "event.bin"))
    assert code == 0 and "seq 3 event" in text


def test_verify_failing_says_why(out: Path):
    forged = bytearray((out / "tx.bin").read_bytes())
    forged[-1] ^= 1  # the payload's last byte: the envelope's hash no longer matches
    (out / "forged.bin").write_bytes(bytes(forged))
    (out / "000002.cbor").write_bytes((out / "000001.cbor").read_bytes())  # a swapped payload file
    (out / "000009.cose").write_bytes((out / "000000.cose").read_bytes())  # no payload beside it
    other = keys.public_key(bytes(32)).hex()
    code, text = run(
        "tx",
        "verify",
        "--key-file",
        str(out / "device.pub"),
        str(out / "000000.cose"),
        str(out / "forged.bin"),
        str(out / "000002.cose"),
        str(out / "000009.cose"),
        str(out / "missing.bin"),
        str(out / "device.pub"),
    )
    assert code == 1
    lines = [ln for ln in text.splitlines() if ln.startswith(("ok", "FAIL"))]
    assert lines[0].startswith("ok")
    assert "forged.bin: payload-hash" in lines[1]
    assert "000002.cose: payload-hash" in lines[2]
    assert "000009.cose: payload file missing" in lines[3]
    assert "missing.bin: cannot read" in lines[4] and "no such file" in lines[4]
    assert "device.pub: hex text" in lines[5]
    assert "5 of 6 did not verify" in text
    code, text = run("tx", "verify", "--key", other, str(out / "tx.bin"))
    assert code == 1 and "tx.bin: bad-signature" in text


@pytest.mark.parametrize("key", ["abc", "zz" * 32, "00" * 33, ""])
def test_bad_key_hex(out: Path, key: str):
    code, text = run("tx", "verify", "--key", key, str(out / "tx.bin"))
    assert code == 2
    assert "--key" in text


def test_key_options(out: Path, tmp_path: Path):
    code, text = run("tx", "verify", str(out / "tx.bin"))
    assert code == 2 and "public key is needed" in text
    code, text = run("tx", "verify", "--key-file", str(tmp_path / "nope.pub"), str(out / "tx.bin"))
    assert code == 2 and "not found" in text
    pub = (out / "device.pub").read_text().strip()
    code, text = run(
        "tx", "verify", "--key", pub, "--key-file", str(out / "device.pub"), str(out / "tx.bin")
    )
    assert code == 2 and "not both" in text
