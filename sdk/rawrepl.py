"""A unix-port board on a serial port: MicroPython's raw REPL on a pseudo-terminal, for mpremote.

The unix port has no raw REPL of its own. ``UnixBoardPort`` runs
``device_scripts/rawrepl_board.py`` inside it, with the board directory
as its working directory (the board's flash) and its stdin and stdout on
the master side of a pseudo-terminal; the slave side is the serial port
mpremote opens (``mpremote connect /dev/pts/N``). The script answers the
raw REPL and raw-paste mode as a board does, with stand-ins for
``machine`` and ``network``, so ``lightnode firmware flash`` and any
mpremote command can be tried without a board.

    from lightnode.rawrepl import UnixBoardPort
    with UnixBoardPort("boards/n1") as port:          # port.path: "/dev/pts/5"
        subprocess.run(["mpremote", "connect", port.path, "fs", "ls"])

From a shell: ``lightnode firmware serial boards/n1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import tty
from pathlib import Path

from lightnode import boards
from lightnode import micropython as mp
from lightnode.errors import HarnessError

SCRIPT = Path(__file__).resolve().parent / "device_scripts" / "rawrepl_board.py"
# Heap of the stand-in's interpreter: it runs what mpremote sends (file
# copies, hashing, imports of compiled code), not the application at its budget.
REPL_HEAP_KB = 1024


class UnixBoardPort:
    """A unix-port board directory served as a MicroPython board on a pseudo-terminal."""

    def __init__(self, directory: str | os.PathLike[str], board: str = "unix", heap_kb: int = REPL_HEAP_KB,
                 log: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ValueError("%s is not a directory (a unix-port board's flash)" % self.directory)
        self.facts = boards.load(board)
        self.heap_kb = heap_kb
        self.log = log
        self.path = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._fds: list[int] = []
        self._facts_path = ""

    def start(self) -> UnixBoardPort:
        master, slave = os.openpty()
        # Raw from the start: no echo, no line editing, no CR/LF mapping,
        # as a USB CDC port is; pyserial sets the same when it opens the port.
        tty.setraw(slave)
        self._fds = [master, slave]  # the slave stays open so the port outlives each mpremote
        self.path = os.ttyname(slave)
        # The stand-in for machine reads the board's facts (pins, watchdog limit).
        fd, facts_path = tempfile.mkstemp(prefix="lightnode-board-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.facts, f)
        self._facts_path = facts_path
        env = dict(os.environ, MICROPYPATH=".frozen")
        err = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                [mp.find_micropython(), "-X", "heapsize=%dK" % self.heap_kb, str(SCRIPT), facts_path],
                stdin=master, stdout=master, stderr=err, cwd=str(self.directory), env=env)
        finally:
            if self.log:
                err.close()  # type: ignore[union-attr]
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self._facts_path:
            try:
                os.remove(self._facts_path)
            except OSError:
                pass
            self._facts_path = ""

    def wait(self) -> int:
        """Until the board's interpreter ends (it does when killed); its exit status."""
        if self._proc is None:
            raise HarnessError("the board is not started")
        return self._proc.wait()

    def __enter__(self) -> UnixBoardPort:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
