# Runs one plain-assert test module inside MicroPython and reports each
# test as a result line (see lightnode.micropython). Under CPython, pytest
# collects the same modules directly.
import gc
import sys

try:
    import time

    _now = time.ticks_ms
    _diff = time.ticks_diff
except AttributeError:  # pragma: no cover
    _now = None


def main(name, only=None):
    mod = __import__(name)
    names = sorted(n for n in dir(mod) if n.startswith("test_"))
    if only:
        names = [n for n in names if n in only]
    for n in names:
        gc.collect()
        t0 = _now()
        try:
            getattr(mod, n)()
            err = None
        except Exception as e:  # report every failure, run the rest
            err = "%s: %s" % (type(e).__name__, e)
            sys.print_exception(e)
        mp_result({"test": n, "ok": err is None, "error": err, "ms": _diff(_now(), t0)})  # noqa: F821
    mp_result({"done": name, "count": len(names)})  # noqa: F821


main(sys.argv[1], sys.argv[2:])
