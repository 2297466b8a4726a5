"""The board's file system, as the firmware uses it: its root, and writes a power cut cannot tear.

On a board the root is ""; under the unix port (and CPython) it is the
working directory, the folder that stands for the board's flash.

    from ln import fs
    fs.write_atomic(fs.default_root() + "/lightnode/state.json", [data])
"""

import os
import sys

TMP = ".tmp"
_HOSTED = ("linux", "darwin", "win32")  # the unix port, and CPython


def default_root():
    """"" on a board; the working directory under the unix port."""
    if sys.platform in _HOSTED:
        return os.getcwd()
    return ""


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def rename_over(src, dst):
    """Rename ``src`` to ``dst``, replacing it (littlefs and POSIX do it in one step)."""
    try:
        os.rename(src, dst)
    except OSError:  # a filesystem whose rename does not replace (FAT)
        remove(dst)
        os.rename(src, dst)


def read_limited(path, limit):
    """The file's bytes; ValueError if it holds more than ``limit``."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError("%s: more than %d bytes" % (path, limit))
    return data


def write_atomic(path, chunks, private=False):
    """Write the bytes in ``chunks`` to ``path`` so that a power cut leaves the old file or the new one.

    The data goes to ``path + ".tmp"`` first and is renamed over ``path``.
    A failed write removes the temporary file and leaves ``path`` as it was.
    """
    tmp = path + TMP
    try:
        with open(tmp, "wb") as f:
            if private and hasattr(os, "chmod"):  # CPython; a board has no other reader
                os.chmod(tmp, 0o600)
            for c in chunks:
                f.write(c)
            f.flush()
    except Exception:
        remove(tmp)
        raise
    rename_over(tmp, path)
