# ln.boot and ln.update: a crash loop ends in safe mode, a pin forces it; a
# signed bundle goes to the inactive slot, is switched to at the next boot,
# rolled back if it never becomes healthy and kept if it does; bundles
# signed by the wrong key, role or content type, tampered or older are
# refused; a power cut during an install leaves the running slot intact.
import binascii
import hashlib
import os

from ln import boot, cbor, cose, ed25519, update, wire

PORTS = ("unix",)

UPDATE_SEED = bytes(range(32))
ACK_SEED = bytes(range(1, 33))
STRANGER_SEED = bytes(range(2, 34))
_keys = {}


def _key(seed):
    if seed not in _keys:
        _keys[seed] = ed25519.SigningKey(seed)
    return _keys[seed]


def _kid(seed):
    return hashlib.sha256(_key(seed).public).digest()[:wire.KID_BYTES]


def _node_keys():
    return {
        _kid(UPDATE_SEED): (_key(UPDATE_SEED).public, (wire.ROLE_UPDATE,)),
        _kid(ACK_SEED): (_key(ACK_SEED).public, (wire.ROLE_ACK,)),
    }


def _files(tag):
    return [
        ("ln/app.py", ("print('app %s')\n" % tag).encode()),
        ("lightnode/drivers/x.py", b"X = 1\n" * 300),
    ]


def _bundle(version, seed=UPDATE_SEED, cty=wire.CTY_UPDATE, files=None, board="unix", tamper=False):
    files = sorted(files or _files(version))
    manifest = {
        update.M_FORMAT: update.BUNDLE_FORMAT,
        update.M_VERSION: version,
        update.M_BOARD: board,
        update.M_ARCH: "x64",
        update.M_FILES: [[p, len(d), hashlib.sha256(d).digest()] for p, d in files],
    }
    protected = {wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: cty, wire.H_KID: _kid(seed)}
    signed = cose.sign1(protected, {}, cbor.dumps(manifest), _key(seed))
    n = len(signed)
    body = b"".join(d for _, d in files)
    if tamper:
        body = body[:-1] + bytes((body[-1] ^ 1,))
    return update.MAGIC + bytes((n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)) + signed + body


class _Board:
    def __enter__(self):
        self.root = "/tmp/ln-boot-" + binascii.hexlify(os.urandom(6)).decode()
        os.mkdir(self.root)
        return self

    def __exit__(self, *exc):
        update.remove_tree(self.root)

    def decide(self, **kw):
        return boot.decide(self.root, **kw)

    def install(self, data, **kw):
        return update.install(data, _node_keys(), 1700000000000000, root=self.root, **kw)

    def state(self):
        return boot.load(self.root)

    def read(self, path):
        with open(self.root + "/" + path, "rb") as f:
            return f.read()


def _refused(b, data, reason, **kw):
    try:
        b.install(data, **kw)
    except update.UpdateError as e:
        assert e.reason == reason, (e.reason, reason, str(e))
        return e
    raise AssertionError("not refused: expected %s" % reason)


def _crash(b, what="start-up failed"):
    try:
        raise RuntimeError(what)
    except RuntimeError as e:
        boot.record_crash(e, b.root)


def test_crash_loop_ends_in_safe_mode():
    with _Board() as b:
        assert b.decide(reset_cause=1) == "normal"
        modes = []
        for _ in range(boot.MAX_CRASHES + 1):
            _crash(b)
            modes.append(b.decide(reset_cause=1))
        assert modes == ["normal"] * (boot.MAX_CRASHES - 1) + ["safe", "safe"], modes
        assert b.state()["cause"] == 1
        log = boot.crash_log(b.root)
        assert any("safe" in line for line in log), log
        assert any("start-up failed" in line for line in log), log
        boot.clear_safe(b.root)
        assert b.decide() == "normal"


def test_watchdog_resets_count_power_cuts_and_planned_resets_do_not():
    with _Board() as b:
        for _ in range(2 * boot.MAX_CRASHES):
            assert b.decide(reset_cause=1) == "normal"  # power cuts before a healthy heartbeat
        for _ in range(2 * boot.MAX_CRASHES):
            boot.planned_reset(b.root)
            assert b.decide(reset_cause=boot.WDT_RESET) == "normal"  # rp2's machine.reset()
        assert b.state()["unhealthy"] == 0
        modes = [b.decide(reset_cause=boot.WDT_RESET) for _ in range(boot.MAX_CRASHES)]
        assert modes == ["normal"] * (boot.MAX_CRASHES - 1) + ["safe"], modes
        assert b.state()["cause"] == boot.WDT_RESET


def test_healthy_heartbeats_keep_the_counter_down():
    with _Board() as b:
        for _ in range(10):
            assert b.decide(reset_cause=1) == "normal"
            boot.mark_healthy(b.root)
        assert b.state()["unhealthy"] == 0


def test_pin_forces_safe_mode_without_counting():
    with _Board() as b:
        assert b.decide(safe_pin=True) == "safe"
        assert b.decide(safe_pin=lambda: 1) == "safe"
        assert b.state()["unhealthy"] == 0
        assert b.decide(safe_pin=False) == "normal"


def test_crash_log_is_bounded_and_keeps_the_newest():
    with _Board() as b:
        for i in range(200):
            boot.log("entry %d %s" % (i, "x" * 40), b.root)
        lines = boot.crash_log(b.root)
        assert lines[-1].startswith("entry 199"), lines[-1]
        size = sum(os.stat(b.root + boot.DIR + "/" + n)[6] for n in (boot.LOG_FILE, boot.LOG_OLD))
        assert size <= 2 * boot.LOG_BYTES, size
        try:
            raise RuntimeError("sampler died")
        except RuntimeError as e:
            boot.record_crash(e, b.root)
        assert "sampler died" in boot.crash_log(b.root)[-1]


def test_update_switches_on_reboot_and_stays_when_healthy():
    with _Board() as b:
        assert b.decide() == "normal"
        boot.mark_healthy(b.root)
        info = b.install(_bundle("0.2.0"), board="unix")
        assert info["slot"] == "a" and info["version"] == "0.2.0" and info["files"] == 2
        assert b.read("slot_a/ln/app.py") == dict(_files("0.2.0"))["ln/app.py"]
        assert boot.app_path(b.root) is None  # still the base image until the reboot
        assert b.decide() == "normal"
        assert boot.app_path(b.root) == b.root + "/slot_a"
        assert boot.running_version(b.root) == "0.2.0"
        assert b.state()["trial"]
        boot.mark_healthy(b.root)
        for _ in range(boot.MAX_TRIES + 1):
            assert b.decide() == "normal"
            boot.mark_healthy(b.root)
        assert boot.running_version(b.root) == "0.2.0"
        # The next one goes to the other slot.
        assert b.install(_bundle("0.3.0"))["slot"] == "b"
        assert b.decide() == "normal" and boot.app_path(b.root) == b.root + "/slot_b"


def test_update_never_healthy_is_rolled_back():
    with _Board() as b:
        b.decide()
        boot.mark_healthy(b.root)
        b.install(_bundle("0.2.0"))
        b.decide()
        boot.mark_healthy(b.root)
        b.install(_bundle("0.3.0"))
        modes = [b.decide() for _ in range(boot.MAX_TRIES)]
        assert modes == ["normal"] * boot.MAX_TRIES
        assert boot.running_version(b.root) == "0.3.0"
        assert b.decide() == "rollback"
        assert boot.app_path(b.root) == b.root + "/slot_a"
        assert boot.running_version(b.root) == "0.2.0"
        assert any("rollback" in line for line in boot.crash_log(b.root))
        assert b.decide() == "normal"  # the old application runs on


def test_refused_while_the_new_slot_is_on_trial():
    with _Board() as b:
        b.install(_bundle("0.2.0"))
        b.decide()
        _refused(b, _bundle("0.3.0"), update.R_ON_TRIAL)


def test_trial_deadline():
    with _Board() as b:
        b.install(_bundle("0.2.0"))
        b.decide()
        assert not boot.trial_overdue(1000, b.root)
        assert boot.trial_overdue(boot.TRIAL_MS + 1, b.root)
        boot.mark_healthy(b.root)
        assert not boot.trial_overdue(boot.TRIAL_MS + 1, b.root)


def test_refusals():
    with _Board() as b:
        _refused(b, _bundle("0.2.0", seed=STRANGER_SEED), update.R_UNKNOWN_KEY)
        _refused(b, _bundle("0.2.0", seed=ACK_SEED), update.R_ROLE)
        _refused(b, _bundle("0.2.0", cty=wire.CTY_ACK), update.R_CTY)
        _refused(b, _bundle("0.2.0", tamper=True), update.R_FILE_HASH)
        _refused(b, _bundle("0.1.0"), update.R_VERSION)  # the base image's own release
        _refused(b, _bundle("0.0.9"), update.R_VERSION)
        _refused(b, _bundle("0.2.0", board="esp32"), update.R_BOARD, board="unix")
        _refused(b, _bundle("0.2.0"), update.R_TOO_BIG, slot_bytes=1000)
        _refused(b, _bundle("0.2.0", files=[("../boot.py", b"x")]), update.R_BUNDLE)
        _refused(b, b"LNUP\x00\x00\x00\x05abcde", update.R_BUNDLE)
        _refused(b, _bundle("0.2.0")[:-3], update.R_BUNDLE)
        _refused(b, _bundle("0.2.0") + b"!", update.R_BUNDLE)
        data = _bundle("0.2.0")
        i = data.find(b"0.2.0")
        _refused(b, data[:i] + b"0.9.0" + data[i + 5:], update.R_SIGNATURE)  # the signed manifest changed
        # Nothing was switched or left behind.
        st = b.state()
        assert st["pending"] is None and st["active"] is None
        assert "slot_a" not in os.listdir(b.root) and "slot_a.tmp" not in os.listdir(b.root)


class _Cut(Exception):
    pass


class _CutStream:
    """A bundle stream whose device loses power after ``limit`` bytes."""

    def __init__(self, data, limit):
        self.data = data
        self.pos = 0
        self.limit = limit

    def readinto(self, buf):
        if self.pos >= self.limit:
            raise _Cut()
        n = min(len(buf), len(self.data) - self.pos, self.limit - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

    def read(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def test_power_cut_during_install_keeps_the_running_slot():
    with _Board() as b:
        b.install(_bundle("0.2.0"))
        b.decide()
        boot.mark_healthy(b.root)
        old = b.read("slot_a/ln/app.py")
        data = _bundle("0.3.0")
        for limit in (10, 200, len(data) - 1000, len(data) - 1):
            try:
                b.install(_CutStream(data, limit))
                raise AssertionError("not cut")
            except _Cut:
                pass
            # A half-written slot as a power cut leaves it (no cleanup runs on a board).
            if "slot_b.tmp" not in os.listdir(b.root):
                os.mkdir(b.root + "/slot_b.tmp")
            with open(b.root + "/slot_b.tmp/half.py", "wb") as f:
                f.write(b"pri")
            assert b.decide() == "normal"
            assert boot.app_path(b.root) == b.root + "/slot_a"
            assert b.read("slot_a/ln/app.py") == old
            boot.mark_healthy(b.root)
        # A complete slot that was never named pending is not switched to either.
        os.mkdir(b.root + "/slot_b")
        assert b.decide() == "normal" and boot.app_path(b.root) == b.root + "/slot_a"
        # The next install cleans up and succeeds from a stream.
        assert b.install(_CutStream(data, len(data)))["slot"] == "b"
        assert "slot_b.tmp" not in os.listdir(b.root)
        assert b.decide() == "normal" and boot.running_version(b.root) == "0.3.0"


def test_damaged_state_file_is_a_fresh_start():
    with _Board() as b:
        b.decide()
        with open(b.root + boot.DIR + "/" + boot.STATE_FILE, "wb") as f:
            f.write(b"{\"form")
        assert b.decide() == "normal"
        assert b.state()["boots"] == 1
