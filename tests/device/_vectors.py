# Where the test data lives, from inside MicroPython (unix or wasm) and CPython.
import json
import os

try:
    # the unix port may give a bare name when the module was found on a relative path
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
except (AttributeError, NameError):
    _here = "."

DATA = None
for _cand in (_here + "/../data", "/data"):
    try:
        os.stat(_cand)
        DATA = _cand
        break
    except OSError:
        pass


def path(name):
    if DATA is None:
        raise OSError("test data folder not found")
    return DATA + "/" + name


def load(name):
    with open(path(name)) as f:
        return json.load(f)


def lines(name):
    """One JSON object per line, read one at a time (fits a board's heap)."""
    with open(path(name)) as f:
        for line in f:
            line = line.strip()
            if line:
                yield json.loads(line)


def unhex(s):
    import binascii

    return binascii.unhexlify(s)
