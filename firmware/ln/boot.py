"""What to run at boot: the application, safe mode, or a rollback; the boot counter and crash log.

A small state file (``/lightnode/boot.json``, replaced by temp+rename)
keeps the boot counter, the active application slot (None: the base
image), a slot waiting to be switched to, and whether the active slot is
on trial after an update. ``decide`` runs first at every boot; the
application calls ``mark_healthy`` after its first acknowledged heartbeat.
docs/updates.md explains the rules.

    from ln import boot
    mode = boot.decide(safe_pin=pin.value() == 0, reset_cause=machine.reset_cause())
    if mode != "safe":
        path = boot.app_path()           # None: run the base image's application
    ...
    boot.mark_healthy()                  # after the first acknowledged heartbeat

Nothing here blocks for long: each step is one small file write, well
inside the shortest watchdog timeout (about 8.3 s on rp2).
"""

import json
import os
import sys

from . import VERSION
from .fs import TMP, default_root
from .fs import exists as _exists
from .fs import rename_over as _rename

FORMAT = 1
DIR = "/lightnode"
STATE_FILE = "boot.json"
LOG_FILE = "crash.log"
LOG_OLD = "crash.log.1"
SLOTS = ("a", "b")
SLOT_DIR = "/slot_%s"  # % slot name, under the board's root
MAX_STATE_BYTES = 1024
LOG_BYTES = 2048  # per log file; two files: the log never holds more than 4 KB
MAX_ENTRY = 480  # one log entry, bytes
MAX_CRASHES = 3  # crashes in a row without a healthy heartbeat before safe mode
WDT_RESET = 3  # machine.WDT_RESET on rp2 and esp32 (and the unix port's stand-in)
MAX_TRIES = 2  # boots a new slot gets to become healthy before it is rolled back
TRIAL_MS = 600000  # uptime a new slot gets to become healthy in one boot

NORMAL = "normal"
SAFE = "safe"
ROLLBACK = "rollback"




def _root(root):
    return default_root() if root is None else root


def _dir(root):
    return _root(root) + DIR








def _fresh():
    return {
        "format": FORMAT,
        "boots": 0,  # every boot decide() saw
        "unhealthy": 0,  # crashes since the last healthy heartbeat
        "crashed": False,  # this boot logged a crash (record_crash)
        "planned": False,  # this boot ends in a reset on purpose (planned_reset)
        "active": None,  # "a", "b" or None (the base image)
        "previous": None,  # what a rollback returns to
        "pending": None,  # installed, switched to at the next boot
        "trial": False,  # the active slot has not been healthy yet
        "tries": 0,  # boots on trial so far
        "versions": {},  # slot -> version
        "cause": None,  # reset cause of the last boot
        "mode": None,  # what the last boot decided
        "installed": None,  # time of the last install (us), as the installer gave it
    }


def load(root=None):
    """The boot state (a dict); a fresh one if the file is missing or damaged."""
    path = _dir(root) + "/" + STATE_FILE
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
        st = json.loads(data)
    except (OSError, ValueError):
        return _fresh()
    if len(data) > MAX_STATE_BYTES or not isinstance(st, dict) or st.get("format") != FORMAT:
        return _fresh()
    out = _fresh()
    for k in out:
        if k in st:
            out[k] = st[k]
    for k in ("active", "previous", "pending"):
        if out[k] not in SLOTS:
            out[k] = None
    if not isinstance(out["versions"], dict):
        out["versions"] = {}
    for k in ("boots", "unhealthy", "tries"):
        if not isinstance(out[k], int) or out[k] < 0:
            out[k] = 0
    for k in ("trial", "crashed", "planned"):
        out[k] = out[k] is True
    return out


def save(st, root=None):
    """Write the state: temp file, then one rename, so a power cut leaves the old or the new."""
    d = _dir(root)
    if not _exists(d):
        os.mkdir(d)
    path = d + "/" + STATE_FILE
    with open(path + TMP, "wb") as f:
        f.write(json.dumps(st).encode())
    _rename(path + TMP, path)


def slot_dir(slot, root=None):
    return _root(root) + SLOT_DIR % slot


def slot_complete(slot, root=None):
    """A slot holds a finished install (its manifest is written last)."""
    return _exists(slot_dir(slot, root) + "/" + MANIFEST)


MANIFEST = ".manifest"  # the signed manifest a slot was installed from


def log(line, root=None):
    """Append one line to the crash log, a ring of two bounded files (oldest dropped first)."""
    d = _dir(root)
    if not _exists(d):
        os.mkdir(d)
    line = line.replace("\n", " | ")
    if len(line) > MAX_ENTRY:
        line = line[:MAX_ENTRY]
    path = d + "/" + LOG_FILE
    try:
        size = os.stat(path)[6]
    except OSError:
        size = 0
    if size + len(line) + 1 > LOG_BYTES:
        _rename(path, d + "/" + LOG_OLD)
    with open(path, "a") as f:
        f.write(line + "\n")


def crash_log(root=None):
    """The crash log's lines, oldest first."""
    out = []
    d = _dir(root)
    for name in (LOG_OLD, LOG_FILE):
        try:
            with open(d + "/" + name) as f:
                out.extend(x for x in f.read().split("\n") if x)
        except OSError:
            pass
    return out


def record_crash(exc, root=None):
    """Log an exception the application did not handle, with its traceback, before the reset."""
    import io

    buf = io.StringIO()
    if hasattr(sys, "print_exception"):
        sys.print_exception(exc, buf)
    else:  # CPython
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=buf)
    st = load(root)
    if not st["crashed"]:
        st["crashed"] = True
        save(st, root)
    log("boot %d crash %s" % (st["boots"], buf.getvalue().strip()), root)


def planned_reset(root=None):
    """The board resets on purpose next (an update installed): the reset is not a crash."""
    st = load(root)
    st["planned"] = True
    save(st, root)


def decide(root=None, safe_pin=None, reset_cause=None, max_crashes=MAX_CRASHES, max_tries=MAX_TRIES):
    """What this boot runs: ``"normal"``, ``"safe"`` (no application) or ``"rollback"``.

    ``safe_pin`` true (the pin's level already read, or a callable
    returning it) forces safe mode for this boot without counting it.
    ``reset_cause`` (``machine.reset_cause()``) is recorded. The last
    boot was a crash if it logged one (``record_crash``) or if this reset
    is the watchdog's (``WDT_RESET``) and not one ``planned_reset``
    announced; a power cut is not a crash. A slot installed since the last
    boot is switched to and put on trial; a slot on trial that has had
    ``max_tries`` boots without ``mark_healthy`` is rolled back to the one
    before (``"rollback"``: the old application runs). After
    ``max_crashes`` crashes in a row without a healthy heartbeat, the
    board stays in safe mode until ``clear_safe`` or a new update.
    """
    st = load(root)
    st["boots"] += 1
    st["cause"] = reset_cause
    crashed = st["crashed"] or (reset_cause == WDT_RESET and not st["planned"])
    st["crashed"] = st["planned"] = False
    if crashed:
        st["unhealthy"] += 1
    if callable(safe_pin):
        safe_pin = safe_pin()
    if safe_pin:
        st["mode"] = SAFE
        save(st, root)
        log("boot %d cause %s: safe (pin)" % (st["boots"], reset_cause), root)
        return SAFE
    note = ""
    pending = st["pending"]
    if pending is not None:
        st["pending"] = None
        if slot_complete(pending, root) and pending != st["active"]:
            st["previous"] = st["active"]
            st["active"] = pending
            st["trial"] = True
            st["tries"] = 0
            st["unhealthy"] = 0
            note = " switched to slot %s" % pending
        else:
            note = " slot %s incomplete, not switched" % pending
    if st["trial"] and st["tries"] >= max_tries:
        bad = st["active"]
        st["active"] = st["previous"]
        st["previous"] = None
        st["trial"] = False
        st["tries"] = 0
        st["unhealthy"] = 1
        st["mode"] = ROLLBACK
        save(st, root)
        log("boot %d cause %s: rollback from slot %s (version %s) to %s" % (
            st["boots"], reset_cause, bad, st["versions"].get(bad), st["active"] or "base"), root)
        return ROLLBACK
    if st["trial"]:
        st["tries"] += 1
    mode = SAFE if st["unhealthy"] >= max_crashes and not st["trial"] else NORMAL
    st["mode"] = mode
    save(st, root)
    if mode != NORMAL or crashed or note:
        log("boot %d cause %s: %s, %d crashes in a row%s" % (
            st["boots"], reset_cause, mode, st["unhealthy"], note), root)
    return mode


def mark_healthy(root=None):
    """The application reached an acknowledged heartbeat: reset the counter, end a trial."""
    st = load(root)
    if st["unhealthy"] == 0 and not st["trial"]:
        return  # no flash write on later heartbeats
    ended = st["trial"]
    st["unhealthy"] = 0
    st["trial"] = False
    st["tries"] = 0
    save(st, root)
    if ended:
        log("boot %d: slot %s (version %s) healthy" % (
            st["boots"], st["active"], st["versions"].get(st["active"])), root)


def trial_overdue(uptime_ms, root=None, limit_ms=TRIAL_MS):
    """True if the active slot is on trial and ``uptime_ms`` passed ``limit_ms``: reset the board."""
    return uptime_ms > limit_ms and load(root)["trial"]


def clear_safe(root=None):
    """Leave safe mode at the next boot (an operator's act, or after a fix)."""
    st = load(root)
    st["unhealthy"] = 0
    save(st, root)


def app_path(root=None):
    """The folder of the active slot's application, or None for the base image's."""
    active = load(root)["active"]
    return None if active is None else slot_dir(active, root)


def running_version(root=None):
    """The version the board runs: the active slot's, or the base image's (goes in every heartbeat)."""
    st = load(root)
    if st["active"] is None:
        return VERSION
    return st["versions"].get(st["active"], VERSION)
