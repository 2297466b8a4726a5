"""The board's entry: run the light-node application (ln.run).

Kept small: a board compiles this file from source at every boot, while
``ln`` is precompiled. Under the unix port, the first argument is how
many seconds to run (``-`` or none: forever), the second the board's
default window; the run ends by printing its counters as one
``@@LN {...}`` line.
"""

import sys


def main(seconds=None, window_s=None):
    from ln import run

    return run.main(seconds, window_s)


if __name__ == "__main__":
    _a = getattr(sys, "argv", [])[1:]
    main(float(_a[0]) if _a and _a[0] != "-" else None, float(_a[1]) if len(_a) > 1 else None)
