"""``lightnode probe``: the commissioning command, the first thing an engineer runs on site.

One subcommand per field protocol, each in its own module
(``probe_modbus``, ``probe_mms``, ``probe_c37118``), registered here when
present. Output is readable by default and ``--json`` for machines; a
timeout or a protocol error is one clear line and a non-zero exit.

With ``--on micropython`` a subcommand runs its device-side script through
``run_device`` (the drivers come from the harness's ROM image, as a board
runs them) and reads the outcome with ``device_failure``.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from typing import Any

import click

# Prepended to every device-side script: the settings as ``cfg``. They travel
# in a file (sys.argv[1]): the unix port takes only short arguments.
_SETTINGS = """import json as _json, sys as _sys
with open(_sys.argv[1]) as _f:
    cfg = _json.loads(_f.read())
del _f, _json, _sys
"""


def run_device(script: str, settings: dict[str, Any], board: str = "pico_w", heap: int | None = None,
               timeout: float = 120) -> Any:
    """``script`` inside the MicroPython unix port at ``board``'s heap budget; the harness's Run.

    The script reads ``settings`` as ``cfg`` and reports a failure of the
    device or the link as ``mp_result({"error": "one line"})``.
    HarnessError when the port is missing or the run times out.
    """
    from lightnode import micropython as mp

    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="lightnode-probe-") as f:
        json.dump(settings, f)
        f.flush()
        return mp.run_unix(code=_SETTINGS + script, board=board, heap=heap, args=(f.name,), timeout=timeout)


def device_failure(run: Any) -> str | None:
    """One line on what went wrong in a ``run_device`` run, or None when nothing did.

    The first error the script reported, else the last line of a run that
    ended badly (a traceback's, a MemoryError's).
    """
    for r in run.results:
        if isinstance(r, dict) and "error" in r:
            return str(r["error"])
    if run.ok:
        return None
    tail = (run.stderr or run.stdout).strip().splitlines()
    return "MicroPython run failed: %s" % (tail[-1] if tail else "exit %d" % run.returncode)


@click.group()
def probe() -> None:
    """Talk to a field device once: read, listen, discover, and say plainly what came back."""


for _name, _attr in (("probe_modbus", "modbus"), ("probe_mms", "mms"), ("probe_c37118", "c37118")):
    try:
        probe.add_command(getattr(importlib.import_module("lightnode." + _name), _attr))
    except ImportError:  # that protocol's command is not installed
        pass
