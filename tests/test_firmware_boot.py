"""Boot, watchdog, updates and time in the whole firmware, in the unix port.

Each test runs the firmware as a child process (``_firmware_support.Rig``
with ``machine=True``: the stand-ins for ``machine`` and ``network``,
board.json at the board's root) against a real Mosquitto, a producing
``lightnode node`` with two witnesses and the simulated PMU. A crash loop
ends in safe mode, whose heartbeat and event reach the ledger; an update
that cannot start is rolled back after its tries and the old application
becomes healthy; a bundle signed by an unknown key is refused; the
watchdog resets a loop hung in a blocking file operation; a clock step
against a real chronyd is an EV_CLOCK_STEP event on the ledger.
"""

import binascii
import hashlib
import json
import os
import signal
import time

import pytest
from _firmware_support import Rig, check_chain, decode, events
from lightnode.firmware.ln import cbor, cose, ed25519, update, wire
from test_sntp_chrony import chrony  # noqa: F401 - the chronyd fixture

pytestmark = pytest.mark.micropython

UPDATE_SEED = b"\x5a" * 32
STRANGER_SEED = b"\x5b" * 32
MAX_CRASHES = 3  # ln.boot.MAX_CRASHES
MAX_TRIES = 2  # ln.boot.MAX_TRIES
WDT_RESET = 3


def _crash_log(rig):
    out = []
    for name in ("crash.log.1", "crash.log"):
        p = rig.board / "lightnode" / name
        if p.exists():
            out.extend(x for x in p.read_text().split("\n") if x)
    return out


def _boot_state(rig):
    return json.loads((rig.board / "lightnode" / "boot.json").read_text())


def _ended(fw, timeout=60):
    """The exit status of a run expected to end by itself (a crash, a reset)."""
    try:
        return fw.proc.wait(timeout)
    except Exception:
        fw.kill()
        pytest.fail("firmware run %d did not end:\n%s" % (fw.n, fw.output()[-3000:]))


def _heartbeats(entries):
    return [decode(e).body for e in entries if decode(e).kind == wire.KIND_HEARTBEAT]


def _bundle(version, files, seed, board):
    """A signed update bundle as ``lightnode firmware build`` makes one (docs/updates.md)."""
    key = ed25519.SigningKey(seed)
    kid = hashlib.sha256(key.public).digest()[:wire.KID_BYTES]
    files = sorted(files)
    manifest = {
        update.M_FORMAT: update.BUNDLE_FORMAT,
        update.M_VERSION: version,
        update.M_BOARD: board,
        update.M_ARCH: "x64",
        update.M_FILES: [[p, len(d), hashlib.sha256(d).digest()] for p, d in files],
    }
    protected = {wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: wire.CTY_UPDATE, wire.H_KID: kid}
    signed = cose.sign1(protected, {}, cbor.dumps(manifest), key)
    return update.MAGIC + len(signed).to_bytes(4, "big") + signed + b"".join(d for _, d in files)


def _board_name(rig):
    return json.loads((rig.board / "lightnode" / "identity.json").read_text())["board"]


# An application that cannot start: its ln is in the slot, its run raises on import.
_BROKEN = [
    ("ln/__init__.py", b'VERSION = "0.2.0"\n'),
    ("ln/run.py", b'raise RuntimeError("release 0.2.0 cannot start")\n'),
]


def test_crash_loop_ends_in_safe_mode_and_its_heartbeat_reaches_the_ledger(tmp_path):
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 1}, machine=True) as rig:
        app_json = rig.board / "lightnode" / "app.json"
        app_json.write_text('{"source": ')  # a broken app.json: start-up raises at every boot
        for _ in range(MAX_CRASHES):
            fw = rig.start_firmware(seconds=10)
            assert _ended(fw) == 1, fw.output()[-2000:]
            assert "boot normal" in fw.output()
        assert _boot_state(rig)["crashed"] is True
        log = _crash_log(rig)
        crashes = [x for x in log if " crash " in x]
        assert len(crashes) == MAX_CRASHES, log
        assert all("ValueError" in x for x in crashes), crashes
        # the next boot is safe mode: no sampling, a heartbeat and the crash said on the ledger
        stats = rig.run_firmware(8)
        assert stats["mode"] == "safe" and stats["frames"] == 0 and stats["readings"] == 0, stats
        assert stats["heartbeats"] >= 1 and stats["acks"] >= 1, stats
        entries = rig.wait_committed(stats["last_seq"])
        log = _crash_log(rig)
    check_chain(entries)
    hbs = _heartbeats(entries)
    assert hbs and all(h[wire.HB_FIRMWARE] == "0.1.0+safe" for h in hbs), hbs
    safe = events(entries, wire.EV_SAFE_MODE)
    assert len(safe) == 1, safe
    body = safe[0][1]
    assert body[wire.E_SEVERITY] == wire.SEV_CRITICAL
    assert body[wire.E_VALUE] == MAX_CRASHES
    last_crash = [x for x in log if " crash " in x][-1]
    assert body[wire.E_LIMIT] == binascii.crc32(last_crash.encode()), (body, last_crash)
    assert any(": safe, %d crashes in a row" % MAX_CRASHES in x for x in log), log


def test_safe_mode_pin_held_at_boot(tmp_path):
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 1}, machine=True) as rig:
        pin = rig.facts["safe_mode_pin"]
        (rig.board / "sim.json").write_text(json.dumps({"pins": {str(pin): 0}}))
        stats = rig.run_firmware(5)
        assert stats["mode"] == "safe" and stats["frames"] == 0, stats
        entries = rig.wait_committed(stats["last_seq"])
        state = _boot_state(rig)
    assert state["mode"] == "safe" and state["unhealthy"] == 0, state  # not counted as a crash
    (seq, body), = events(entries, wire.EV_SAFE_MODE)
    assert body[wire.E_VALUE] == 0
    assert all(h[wire.HB_FIRMWARE] == "0.1.0+safe" for h in _heartbeats(entries))


def test_update_signed_by_an_unknown_key_is_refused(tmp_path):
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 1}, machine=True,
             update_seed=UPDATE_SEED) as rig:
        upload = rig.board / "lightnode" / "update.bin"
        upload.write_bytes(_bundle("0.2.0", _BROKEN, STRANGER_SEED, _board_name(rig)))
        stats = rig.run_firmware(8)
        entries = rig.wait_committed(stats["last_seq"])
        state = _boot_state(rig)
        log = _crash_log(rig)
        slots = sorted(p.name for p in rig.board.iterdir() if p.name.startswith("slot_"))
        out = rig.firmware.output()
    assert "update refused: unknown-key" in out, out[-2000:]
    assert any("update refused: unknown-key" in x for x in log), log
    assert not upload.exists()  # never tried again
    assert slots == [] and state["pending"] is None and state["active"] is None, (slots, state)
    assert stats["readings"] >= 2 and "healthy_ms" in stats, stats
    assert {h[wire.HB_FIRMWARE] for h in _heartbeats(entries)} == {"0.1.0"}


def test_update_that_never_becomes_healthy_is_rolled_back(tmp_path):
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 1}, machine=True,
             update_seed=UPDATE_SEED) as rig:
        upload = rig.board / "lightnode" / "update.bin"
        upload.write_bytes(_bundle("0.2.0", _BROKEN, UPDATE_SEED, _board_name(rig)))
        # boot 1: installs into slot a, and resets on purpose
        fw = rig.start_firmware(seconds=10)
        assert _ended(fw) == 0, fw.output()[-2000:]
        assert "update 0.2.0 installed in slot a" in fw.output()
        assert not upload.exists() and (rig.board / "slot_a" / ".manifest").exists()
        # boots 2..: the new slot runs on trial and never becomes healthy
        for _ in range(MAX_TRIES):
            fw = rig.start_firmware(seconds=10)
            assert _ended(fw) == 1, fw.output()[-2000:]
            assert "release 0.2.0 cannot start" in fw.output()
            assert _boot_state(rig)["trial"] is True
        # the next boot rolls back: the base image's application runs, and becomes healthy
        stats = rig.run_firmware(8)
        state = _boot_state(rig)
        log = _crash_log(rig)
        entries = rig.wait_committed(stats["last_seq"])
        out = rig.firmware.output()
    assert "boot rollback" in out, out[-2000:]
    assert "healthy_ms" in stats and stats["readings"] >= 2, stats
    assert state["active"] is None and state["trial"] is False and state["unhealthy"] == 0, state
    assert any("switched to slot a" in x for x in log), log
    assert sum("release 0.2.0 cannot start" in x for x in log) == MAX_TRIES, log
    assert any("rollback from slot a (version 0.2.0) to base" in x for x in log), log
    assert {h[wire.HB_FIRMWARE] for h in _heartbeats(entries)} == {"0.1.0"}
    check_chain(entries)


def test_watchdog_resets_a_hung_loop(tmp_path):
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 3}, machine=True) as rig:
        fw = rig.start_firmware()
        rig.wait_for("the application started", lambda: "segment" in fw.output(), 30, every=0.05)
        # the boot state becomes a FIFO: marking the boot healthy blocks in open(), in the loop
        state = rig.board / "lightnode" / "boot.json"
        saved = state.read_bytes()
        state.unlink()
        os.mkfifo(state)
        t0 = time.monotonic()
        rc = _ended(fw, timeout=60)
        took = time.monotonic() - t0
        state.unlink()
        state.write_bytes(saved)
        out = fw.output()
        assert rc == -signal.SIGUSR2, (rc, out[-2000:])
        assert "watchdog not fed for %d ms" % rig.facts["watchdog_max_ms"] in out, out[-2000:]
        assert took < 30, took
        # the next boot says why it started: a watchdog reset, counted as a crash
        stats = rig.run_firmware(8)
        entries = rig.wait_committed(stats["last_seq"])
        st = _boot_state(rig)
    assert st["cause"] == WDT_RESET, st
    assert any(h[wire.HB_RESET_CAUSE] == WDT_RESET for h in _heartbeats(entries))
    assert "healthy_ms" in stats, stats


def test_ntp_step_is_an_event_on_the_ledger(tmp_path, chrony):  # noqa: F811
    from ln import clock  # as test_sntp_chrony imports it (ln.clock imports ln.wire)

    offset_s = -30  # the board's RTC is half a minute behind
    with Rig(tmp_path, app={"window_s": 1, "heartbeat_every": 2,
                            "ntp": {"host": "127.0.0.1", "port": chrony}}, machine=True) as rig:
        (rig.board / "sim.json").write_text(json.dumps({"rtc_offset_s": offset_s}))
        stats = rig.run_firmware(8)
        entries = rig.wait_committed(stats["last_seq"])
    assert stats["ntp_syncs"] >= 1 and stats["ntp_steps"] == 1, stats
    steps = events(entries, wire.EV_CLOCK_STEP)
    assert len(steps) == 1, steps
    body = steps[0][1]
    # the RTC has whole seconds: the step is 30 s, give or take one
    assert abs(body[wire.E_VALUE] + offset_s * 1000000) <= 1100000, body
    assert body[wire.E_LIMIT] == clock.STEP_US
    assert abs(body[wire.E_TIME] - time.time() * 1e6) < 120e6, body  # stamped after the step
    # after the step, the device's own time is NTP quality (heartbeats carry no source time)
    after = [decode(e) for e in entries if e.seq > steps[0][0]]
    hb = [tx for tx in after if tx.kind == wire.KIND_HEARTBEAT]
    assert hb and all(tx.time[1] == wire.TQ_NTP for tx in hb), [tx.time for tx in hb]
    assert all(tx.body[wire.HB_TIME_QUALITY] == wire.TQ_NTP for tx in hb)
