# Runs inside the MicroPython unix port with the working directory at a
# unix-port board's root, its stdin and stdout on a pseudo-terminal
# (lightnode.rawrepl): it answers MicroPython's raw REPL as a board does
# over USB, so mpremote can copy files to the board, run code and
# soft-reset it. Stand-ins for machine and network are installed first, so
# the board's code imports as on the board it stands in for.
# argv: BOARD_FACTS_JSON (the board.json stood in for; "-" for none)
#
# The protocol (micropython's shared/runtime/pyexec.c, as mpremote's
# transport_serial.py speaks it):
#   friendly mode: Ctrl-A -> raw mode; Ctrl-D -> soft reset; others ignored
#   raw mode: prompt ">", code until Ctrl-D -> "OK", output, \x04, error, \x04;
#     Ctrl-D on an empty line -> soft reset; Ctrl-B -> friendly mode;
#     Ctrl-E "A" Ctrl-A -> raw-paste: "R\x01", window (u16 LE), data in
#     windows each granted by \x01, Ctrl-D ends it -> \x04, output, \x04, error, \x04
import gc
import json
import os
import sys

import sim_machine
import sim_network

sys.path.pop(0)  # this script's folder: the board's own files come from its root
sys.path.insert(0, "")

WINDOW = 512
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n"

_facts = {}
if len(sys.argv) > 1 and sys.argv[1] != "-":
    with open(sys.argv[1]) as f:
        _facts = json.loads(f.read())

ROOT = os.getcwd()
_in = sys.stdin.buffer
_out = sys.stdout.buffer
_one = bytearray(1)
_base = set(sys.modules)
_g = {}  # type: dict


def put(b):
    _out.write(b)


def get():
    """One byte from the host; None when the host side is gone."""
    n = _in.readinto(_one)
    if not n:
        return None
    return _one[0]


def banner():
    return b"MicroPython %s (unix port, standing in for %s); lightnode raw REPL\r\n" % (
        ".".join(str(v) for v in sys.implementation.version[:3]).encode(),
        str(_facts.get("name", "a board")).encode())


def soft_reset():
    """A fresh interpreter state as far as a script can make one: globals, modules, heap, cwd."""
    _g.clear()
    _g["__name__"] = "__main__"
    for k in list(sys.modules):
        if k not in _base:
            del sys.modules[k]
    sim_machine.install(_facts)
    sim_network.install()
    os.chdir(ROOT)
    gc.collect()
    put(b"MPY: soft reboot\r\n")


def run(src):
    """Execute ``src`` with its output between the two \x04 of the protocol."""
    err = None
    try:
        exec(src, _g)
    except BaseException as e:  # noqa: BLE001 - the host gets every error, as from a board
        err = e
    put(b"\x04")
    if err is not None:
        sys.print_exception(err, sys.stdout)
    put(b"\x04")


def raw_paste():
    put(b"R\x01" + bytes((WINDOW & 0xFF, WINDOW >> 8)))
    src = bytearray()
    left = WINDOW
    while True:
        c = get()
        if c is None:
            return False
        if c == 4:
            put(b"\x04")
            run(bytes(src))
            return True
        src.append(c)
        left -= 1
        if left == 0:
            left = WINDOW
            put(b"\x01")


def serve():
    soft_reset()
    put(banner() + b">>> ")
    raw = False
    line = bytearray()
    while True:
        c = get()
        if c is None:
            return
        if not raw:
            if c == 1:
                raw = True
                line = bytearray()
                put(RAW_PROMPT + b">")
            elif c == 4:
                soft_reset()
                put(banner() + b">>> ")
            elif c == 3:
                put(b"\r\nKeyboardInterrupt\r\n>>> ")
            continue
        if c == 2:
            raw = False
            put(b"\r\n" + banner() + b">>> ")
        elif c == 1:
            line = bytearray()
            put(RAW_PROMPT + b">")
        elif c == 3:
            line = bytearray()
        elif c == 5 and not line:
            a, b = get(), get()
            if (a, b) == (ord("A"), 1):
                if not raw_paste():
                    return
                put(b">")
        elif c == 4:
            if not line:
                soft_reset()
                put(RAW_PROMPT + b">")
            else:
                put(b"OK")
                run(bytes(line))
                line = bytearray()
                put(b">")
        else:
            line.append(c)


serve()
