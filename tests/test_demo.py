"""``lightnode demo``: the main job until the simulator lands, and what docs/quickstart.md promises of it."""

import hashlib

import pytest
from _need import need
from click.testing import CliRunner
from lightnode import micropython as mp
from lightnode.cli import main
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import CoseMessage


@pytest.fixture(autouse=True)
def _micropython():
    need(mp.find_micropython, mp.find_mpy_cross)


def test_demo_signs_on_device_and_output_checks_with_pycose(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["demo", "--windows", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "All 3 transactions verified." in result.output
    assert "bytes per frame" in result.output

    # docs/quickstart.md, as written there
    key = OKPKey(crv=Ed25519, x=bytes.fromhex((out / "device.pub").read_text().strip()))
    coses = sorted(out.glob("*.cose"))
    assert [c.name for c in coses] == ["000001.cose", "000002.cose", "000003.cose"]
    for cose in coses:
        msg = CoseMessage.decode(cose.read_bytes())
        msg.key = key
        assert msg.verify_signature(), cose
        assert hashlib.sha256(cose.with_suffix(".cbor").read_bytes()).digest() == msg.payload

    ok = CliRunner().invoke(main, ["tx", "verify", *map(str, coses), "--key-file", str(out / "device.pub")])
    assert ok.exit_code == 0, ok.output

    # a changed payload byte is caught, with its reason
    payload = out / "000002.cbor"
    data = bytearray(payload.read_bytes())
    data[-1] ^= 1
    payload.write_bytes(bytes(data))
    bad = CliRunner().invoke(main, ["tx", "verify", *map(str, coses), "--key-file", str(out / "device.pub")])
    assert bad.exit_code == 1
    assert "payload-hash" in bad.output


def test_demo_with_a_fixed_seed_uses_that_key(tmp_path):
    seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
    result = CliRunner().invoke(main, ["demo", "--windows", "1", "--seed", seed, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # RFC 8032 test 1's public key
    assert (tmp_path / "device.pub").read_text().strip() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )


def test_demo_on_each_board_budget():
    for board in ("pico_w", "esp32", "pico2_w"):
        result = CliRunner().invoke(main, ["demo", "--windows", "2", "--board", board])
        assert result.exit_code == 0, (board, result.output)


def test_demo_refuses_bad_arguments():
    result = CliRunner().invoke(main, ["demo", "--seed", "abcd"])
    assert result.exit_code != 0
    assert "64 hex digits" in result.output
