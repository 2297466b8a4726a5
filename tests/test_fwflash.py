"""``lightnode firmware flash`` against a real MicroPython: the unix port answering the raw REPL on
a pseudo-terminal (lightnode.rawrepl), driven by mpremote as a board on USB would be. The
application lands, the board's identity, key, config and journal stay byte for byte, the flashed
code imports and reads the kept identity; wrong port, wrong board and non-boards are refused."""

import hashlib
import os
import subprocess
import threading
import time
import tty

import pytest
from _need import need
from click.testing import CliRunner
from lightnode import fwbuild, fwflash
from lightnode import micropython as mp
from lightnode.fwcli import firmware
from lightnode.provision import find_mpremote, init_unix_board
from lightnode.rawrepl import UnixBoardPort

SEED = bytes(range(32))


@pytest.fixture(scope="module")
def unix_files():
    need(mp.find_mpy_cross, mp.find_micropython)
    return fwflash.bundle_files("unix")


def _tree(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def board(tmp_path):
    need(mp.find_micropython)
    d = tmp_path / "n1"
    ident = init_unix_board(d, "pico_w")
    lf = d / "lightnode"
    (lf / "config.json").write_bytes(b'{"segment": "feeder-7"}')
    (lf / "journal").mkdir()
    (lf / "journal" / "j00000000").write_bytes(os.urandom(3000))
    (lf / "journal" / "state").write_bytes(os.urandom(64))
    # code a previous install left: a source file that would shadow its .mpy, and one gone since
    (d / "ln").mkdir()
    (d / "ln" / "app.py").write_text("raise ImportError('stale source')\n")
    (d / "ln" / "retired.mpy").write_bytes(b"M\x06\x00\x1f")
    return d, ident


def _mpremote(port, *args):
    return subprocess.run([find_mpremote(), "connect", port, *args], capture_output=True, text=True, timeout=60)


def test_flash_a_unix_board_over_its_raw_repl(board, unix_files):
    d, ident = board
    kept = {p: h for p, h in _tree(d).items() if p.startswith("lightnode/")}
    assert len(kept) == 5  # identity, key, config, two journal files
    with UnixBoardPort(d) as port:
        t0 = time.monotonic()
        res = CliRunner().invoke(firmware, ["flash", "--board", "unix", "--port", port.path])
        took = time.monotonic() - t0
        assert res.exit_code == 0, res.output
        assert "verified %d files" % len(unix_files) in res.output
        assert "removing ln/app.py" in res.output and "removing ln/retired.mpy" in res.output
        after = _tree(d)
        for p, b in unix_files.items():
            assert after[p] == hashlib.sha256(b).hexdigest(), p
        assert "ln/app.py" not in after and "ln/retired.mpy" not in after
        assert {p: h for p, h in after.items() if p.startswith("lightnode/") and p not in unix_files} == kept
        # The board runs the flashed code (compiled files), which finds the identity it kept.
        out = _mpremote(port.path, "exec",
                        "import ln.app, ln.keystore, lightnode.drivers.modbus.rs485 as r\n"
                        "print(ln.app.__file__, r.__file__, ln.keystore.read_identity()['device'])")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["ln/app.mpy", "lightnode/drivers/modbus/rs485.mpy", ident.device_hex], out.stdout
        # Flashing again copies nothing: every file already hashes the same on the board.
        again = fwflash.flash("unix", port.path, unix_files)
        assert again["copied"] == [] and again["removed"] == [] and again["files"] == len(unix_files)
        # A file damaged on the board is found by its hash and copied again.
        (d / "ln" / "wire.mpy").write_bytes(b"M\x06broken")
        assert fwflash.flash("unix", port.path, unix_files)["copied"] == ["ln/wire.mpy"]
        assert port.alive()
    print("flash of %d files (%d bytes) took %.1f s" % (len(unix_files), sum(map(len, unix_files.values())), took))


def test_flash_a_signed_bundle_and_refuse_one_for_another_board(board, tmp_path):
    need(mp.find_mpy_cross)
    d, _ = board
    files = fwbuild.compile_files("unix")
    good = tmp_path / "unix.bin"
    good.write_bytes(fwbuild.sign(files, "0.2.0", "unix", "x64", SEED))
    other = tmp_path / "esp32.bin"
    other.write_bytes(fwbuild.sign(files, "0.2.0", "esp32", "xtensawin", SEED))
    with pytest.raises(fwflash.FlashError, match="is for esp32, not unix"):
        fwflash.bundle_files("unix", other)
    res = CliRunner().invoke(firmware, ["flash", "--board", "unix", "--port", "/dev/null", "--bundle", str(other)])
    assert res.exit_code != 0 and "is for esp32, not unix" in res.output
    from_bundle = fwflash.bundle_files("unix", good)
    assert set(files) <= set(from_bundle) and "main.py" in from_bundle
    with UnixBoardPort(d) as port:
        report = fwflash.flash("unix", port.path, from_bundle)
    assert report["files"] == len(from_bundle)
    assert (d / "ln" / "boot.mpy").read_bytes() == files["ln/boot.mpy"]


def test_wrong_board_and_missing_port_are_refused(board, unix_files):
    d, _ = board
    with pytest.raises(fwflash.FlashError, match="no such port /dev/ttyACM97"):
        fwflash.flash("unix", "/dev/ttyACM97", unix_files)
    with UnixBoardPort(d) as port:
        with pytest.raises(fwflash.FlashError, match="linux board .* pico_w is rp2"):
            fwflash.flash("pico_w", port.path, fwflash.bundle_files("pico_w"))
    assert not (d / "ln" / "wire.mpy").exists()  # nothing was copied


def test_a_port_that_is_not_micropython_is_refused(unix_files):
    """A serial device that answers, but not as MicroPython (here a login prompt)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def shell():
        while not stop.is_set():
            try:
                if os.read(master, 256):
                    os.write(master, b"\r\nlogin: ")
            except OSError:
                return

    t = threading.Thread(target=shell, daemon=True)
    t.start()
    try:
        with pytest.raises(fwflash.FlashError, match="does not answer as a MicroPython board") as e:
            fwflash.flash("unix", os.ttyname(slave), unix_files, answer_s=2)
        assert "login" in str(e.value)
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
