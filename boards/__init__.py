"""Board facts: one folder per board, each with a ``board.json``.

The unix board stands in for a real one (``stands_in_for``) and takes its
heap budget and default window from it, so a test on the unix port runs
within the budget of the board it represents.

    >>> from lightnode import boards
    >>> boards.load("pico_w")["heap_kb"]
    128
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
_KEYS = ("heap_kb", "gc_heap_kb", "default_window_s", "watchdog_max_ms")


def names() -> list[str]:
    """Every board that has a folder here."""
    return sorted(p.parent.name for p in HERE.glob("*/board.json"))


def load(name: str) -> dict:
    """The facts of board ``name``, with a stand-in's gaps filled from its real board."""
    path = HERE / name / "board.json"
    if not path.is_file():
        raise ValueError("unknown board %r; boards: %s" % (name, ", ".join(names())))
    board = json.loads(path.read_text())
    real = board.get("stands_in_for")
    if real:
        base = load(real)
        for key in _KEYS:
            board.setdefault(key, base.get(key))
    for key in ("heap_kb", "default_window_s"):
        if not isinstance(board.get(key), int) or board[key] <= 0:
            raise ValueError("board %s: %s must be a positive integer" % (name, key))
    return board
