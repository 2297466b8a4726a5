"""Runs every plain-assert module of tests/device inside MicroPython.

Under CPython pytest collects those modules directly; here each one runs
again inside the unix port at the unix board's heap budget (a module may
raise it with ``HEAP_KB = n`` for data-heavy vector files), and inside the
32-bit WebAssembly port when the module says ``PORTS = ("unix", "wasm")``.
"""

import ast
import shutil
from pathlib import Path

import pytest
from _need import need
from lightnode import micropython as mp

HERE = Path(__file__).resolve().parent
DEVICE = HERE / "device"
DATA = HERE / "data"
MODULES = sorted(p for p in DEVICE.glob("test_*.py"))
NODEWIRE = HERE.parent / "sdk" / "nodewire.py"


@pytest.fixture(scope="session")
def node_wire(tmp_path_factory):
    """A folder holding only the SDK's nodewire.py: device tests build node-only objects with
    its facts, which the board's own image leaves out."""
    d = tmp_path_factory.mktemp("nodewire")
    shutil.copy(NODEWIRE, d / "nodewire.py")
    return d


def _settings(path):
    found = {"PORTS": ("unix",), "HEAP_KB": None, "WASM_TIMEOUT": 180}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", None)
            if name in found:
                found[name] = ast.literal_eval(node.value)
    return found


def _require(what):
    return need(what)


def _cases():
    for path in MODULES:
        settings = _settings(path)
        for port in settings["PORTS"]:
            yield pytest.param(path, port, settings, id="%s-%s" % (path.stem, port),
                               marks=[getattr(pytest.mark, "micropython" if port == "unix" else "wasm")])


def _report(run, path):
    tests = [r for r in run.results if "test" in r]
    done = [r for r in run.results if "done" in r]
    failed = [r for r in tests if not r["ok"]]
    detail = "\n".join("%s: %s" % (r["test"], r["error"]) for r in failed)
    assert run.ok and done, "%s did not finish inside MicroPython:\n%s\n%s" % (
        path.name, run.stdout[-4000:], run.stderr[-4000:])
    assert done[0]["count"] == len(tests) > 0, "%s ran no tests" % path.name
    assert not failed, "%s failed inside MicroPython:\n%s\n%s" % (path.name, detail, run.stdout[-4000:])


@pytest.mark.parametrize("path,port,settings", list(_cases()))
def test_device_module(path, port, settings, node_wire):
    if port == "unix":
        _require(mp.find_micropython)
        run = mp.run_unix(DEVICE / "_mprun.py", paths=(DEVICE, node_wire), args=(path.stem,),
                          heap=settings["HEAP_KB"], cwd=DEVICE)
    else:
        _require(mp.wasm_dir)
        _require(mp.find_node)
        run = mp.run_wasm(DEVICE / "_mprun.py", paths=(DEVICE, node_wire), args=(path.stem,),
                          heap=settings["HEAP_KB"] or 1024, timeout=settings["WASM_TIMEOUT"],
                          data=DATA)
    _report(run, path)
