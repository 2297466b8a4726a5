"""Board facts: complete, consistent with each other and with DESIGN.md; the journal quota and
the code fit each board's littlefs; every board's bundle imports in the unix port with
stand-ins for ``machine`` and ``network`` and drives the board's UART, DE pin and network."""

import copy
import functools
import json
from pathlib import Path

import littlefs
import pytest
from _need import need
from lightnode import boards, fwbuild
from lightnode import micropython as mp
from lightnode.firmware.ln import boot, journal, keystore

REAL = [b for b in boards.names() if not boards.load(b).get("stands_in_for")]
SCRIPTS = Path(mp.PACKAGE) / "device_scripts"
# DESIGN.md's board table: heap budget (KB), file system (about, KB), default window (s).
DESIGN = {"pico_w": (128, 848, 5), "pico2_w": (320, 3072, 1), "esp32": (80, 1536, 2), "esp32s3": (1024, 6144, 1)}
# Blocks littlefs must keep free: copy-on-write needs spare blocks for every
# write, and wear levelling spreads erases only over blocks that are free.
FREE_SHARE = 0.10


def test_every_board_is_described_and_consistent():
    assert set(REAL) == set(DESIGN)
    for name in boards.names():
        f = boards.load(name)
        assert boards.problems(f) == [], name
        for key in ("mpy_arch", "sys_platform", "flash", "journal_quota_bytes", "heap_kb", "default_window_s",
                    "watchdog_max_ms", "uart", "network", "entropy"):
            assert key in f, (name, key)
        fl = f["flash"]
        assert f["journal_quota_bytes"] % journal.SEGMENT_BYTES == 0, name  # whole segments
        assert f["journal_quota_bytes"] * (1 + boards.RING_SHARE) < fl["fs_bytes"], name


@pytest.mark.parametrize("name", sorted(DESIGN))
def test_facts_match_design(name):
    f = boards.load(name)
    heap, fs_kb, window = DESIGN[name]
    assert f["heap_kb"] == heap and f["default_window_s"] == window
    assert abs(f["flash"]["fs_bytes"] / 1024 - fs_kb) <= fs_kb * 0.05
    assert f["heap_kb"] < f["gc_heap_kb"]  # TLS and the network live outside the budget
    assert f["uart"]["rs485_de"] not in (f["uart"]["tx"], f["uart"]["rx"])
    assert f["network"]["kind"] == "wifi" and f["network"]["ethernet"]["chip"] == "W5500"


def test_pico_w_is_the_issues_board():
    f = boards.load("pico_w")
    assert f["flash"]["total_bytes"] == 2 * 1024 * 1024 and f["flash"]["fs_bytes"] == 848 * 1024
    # RP2040 watchdog: a 24-bit count that ticks twice per microsecond (erratum RP2040-E1).
    assert f["watchdog_max_ms"] == 0xFFFFFF // 2 // 1000
    assert boards.load("pico2_w")["watchdog_max_ms"] == 0xFFFFFF // 1000


def test_unix_stands_in_for_pico_w():
    u, p = boards.load("unix"), boards.load("pico_w")
    for key in ("heap_kb", "default_window_s", "watchdog_max_ms", "journal_quota_bytes"):
        assert u[key] == p[key], key
    for key in ("fs_bytes", "block_size", "block_count"):
        assert u["flash"][key] == p["flash"][key], key
    assert u["network"]["kind"] == "host"


BROKEN = [
    ("quota over the file system", lambda f: f.update(journal_quota_bytes=f["flash"]["fs_bytes"])),
    ("DE on the TX pin", lambda f: f["uart"].update(rs485_de=f["uart"]["tx"])),
    ("UART on a reserved pin", lambda f: f["uart"].update(tx=f["gpio"]["reserved"][0])),
    ("W5500 CS on the DE pin", lambda f: f["network"]["ethernet"].update(cs=f["uart"]["rs485_de"])),
    ("geometry", lambda f: f["flash"].update(block_count=f["flash"]["block_count"] + 1)),
    ("heap over the GC heap", lambda f: f.update(heap_kb=f["gc_heap_kb"] + 1)),
    ("no network", lambda f: f["network"].update(kind="carrier pigeon")),
    ("zero window", lambda f: f.update(default_window_s=0)),
]


@pytest.mark.parametrize("what,breaks", BROKEN, ids=[b[0] for b in BROKEN])
def test_problems_are_found(what, breaks):
    f = copy.deepcopy(boards.load("pico_w"))
    breaks(f)
    assert boards.problems(f), what


@functools.cache
def _code(arch_board):
    return fwbuild.compile_files(arch_board)


def _littlefs_image(facts, files, quota):
    """A littlefs of the board's geometry (MicroPython's VfsLfs2 settings) holding everything a board keeps."""
    fl = facts["flash"]
    fs = littlefs.LittleFS(block_size=fl["block_size"], block_count=fl["block_count"],
                           read_size=32, prog_size=32, cache_size=128, lookahead_size=32)

    def put(path, size_or_bytes):
        data = size_or_bytes if isinstance(size_or_bytes, bytes) else b"x" * size_or_bytes
        if "/" in path:
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as h:
            h.write(data)

    for p, b in files.items():
        put(p, b)
        if fl["update_slot"]:
            put((boot.SLOT_DIR % "a")[1:] + "/" + p, b)
    d = keystore.DIR[1:] + "/"
    put("main.py", 4096)
    for name, size in ((keystore.IDENTITY_FILE, 400), (keystore.KEY_FILE, 64),
                       (keystore.CONFIG_FILE, keystore.MAX_CONFIG_BYTES), (keystore.MAP_FILE % ("0" * 16), 8192),
                       ("app.json", 256), (boot.STATE_FILE, boot.MAX_STATE_BYTES), (boot.LOG_FILE, boot.LOG_BYTES),
                       (boot.LOG_OLD, boot.LOG_BYTES)):
        put(d + name, size)
    jd = d + "journal/"
    put(jd + journal.STATE_FILE, journal.STATE_BYTES)
    n = 0
    for prefix, total in ((journal.SEGMENT, quota), (journal.RING, int(quota * boards.RING_SHARE))):
        while total > 0:
            put(jd + prefix % n, min(journal.SEGMENT_BYTES, total))
            total -= journal.SEGMENT_BYTES
            n += 1
    # The segment being written when the quota is reached: the journal rotates before it checks.
    put(jd + journal.SEGMENT % n, journal.SEGMENT_BYTES)
    return fs


@pytest.mark.parametrize("name", REAL)
def test_quota_and_code_fit_the_file_system(name):
    """Code (and an update slot where the board has room), config, a full journal and its ring
    fit the board's littlefs with a tenth of the blocks to spare."""
    need(mp.find_mpy_cross)
    f = boards.load(name)
    fs = _littlefs_image(f, _code(name), f["journal_quota_bytes"])
    free = fs.block_count - fs.used_block_count
    assert free >= FREE_SHARE * fs.block_count, (name, free, fs.block_count)
    # ... and the quota is not timid: a fifth more (whole segments) would not fit. The
    # difference is the room the code has to grow.
    more = -(-f["journal_quota_bytes"] // 5 // journal.SEGMENT_BYTES) * journal.SEGMENT_BYTES
    with pytest.raises((littlefs.errors.LittleFSError, AssertionError)):
        fs = _littlefs_image(f, _code(name), f["journal_quota_bytes"] + more)
        assert fs.block_count - fs.used_block_count >= FREE_SHARE * fs.block_count


def test_pico_w_has_no_room_for_an_update_slot_beside_its_journal():
    """Why pico_w says update_slot false: a second copy of the code leaves no journal at all."""
    need(mp.find_mpy_cross)
    f = copy.deepcopy(boards.load("pico_w"))
    assert f["flash"]["update_slot"] is False
    f["flash"]["update_slot"] = True
    with pytest.raises((littlefs.errors.LittleFSError, AssertionError)):
        fs = _littlefs_image(f, _code("pico_w"), journal.SEGMENT_BYTES)
        assert fs.block_count - fs.used_block_count >= FREE_SHARE * fs.block_count


IMPORT_ALL = """
import sys, json
sys.path.insert(0, %(scripts)r)
with open(%(facts)r) as f:
    facts = json.loads(f.read())
import sim_machine, sim_network
sim_machine.install(facts)
sim_network.install()
sys.path.remove(%(scripts)r)
sys.path.insert(0, %(board)r)
mods = %(mods)r
import gc
ok, bad = 0, []
base = set(sys.modules)
for m in mods:
    # one at a time, then dropped: a board imports the drivers its point map needs,
    # not every driver at once
    __import__(m)
    path = sys.modules[m].__file__
    if path.startswith(%(board)r) and path.endswith(".mpy"):
        ok += 1
    else:
        bad.append(path)
    for k in list(sys.modules):
        if k not in base:
            del sys.modules[k]
    gc.collect()
import machine, network
from ln import app
from lightnode.drivers.modbus import rs485
u = facts["uart"]
uart = rs485.open_uart(u["id"], tx=machine.Pin(u["tx"]), rx=machine.Pin(u["rx"]))
link = rs485.Rs485Link(uart, machine.Pin(u["rs485_de"], machine.Pin.OUT), echo=False)
link.send(b"\\x01\\x03\\x00\\x00\\x00\\x01\\x84\\x0a")
e = facts["network"]["ethernet"]
spi = machine.SPI(e["spi"], sck=machine.Pin(e["sck"]), mosi=machine.Pin(e["mosi"]), miso=machine.Pin(e["miso"]))
nic = network.WIZNET5K(spi, machine.Pin(e["cs"]), machine.Pin(e["rst"]))
nic.active(True)
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("grid", "secret")
wdt = machine.WDT(timeout=facts["watchdog_max_ms"])
try:
    machine.WDT(timeout=facts["watchdog_max_ms"] + 1)
    over = False
except ValueError:
    over = True
mp_result({"ok": ok, "bad": bad, "sent": uart.sent.hex(), "de": link.de.value(), "nic": nic.isconnected(),
           "wlan": wlan.isconnected(), "wdt_over_refused": over, "cause": app.reset_cause()})
"""


def _module_names(files):
    out = []
    for p in sorted(files):
        if not p.endswith(".mpy"):
            continue
        name = p[: -len(".mpy")].replace("/", ".")
        out.append(name[: -len(".__init__")] if name.endswith(".__init__") else name)
    return out


@pytest.mark.parametrize("name", REAL)
def test_board_code_imports_in_the_unix_port_with_stand_ins(name, tmp_path):
    """The board's bundle, compiled by mpy-cross for its architecture, imports in the unix port
    (bytecode .mpy files carry no architecture), one module at a time, in twice the board's GC
    heap (objects are 64-bit here; the heap budget is the soak test's), and drives the board's
    pins through the stand-ins."""
    need(mp.find_mpy_cross, mp.find_micropython)
    f = boards.load(name)
    files = _code(name)
    board = tmp_path / "flash"
    for p, b in files.items():
        (board / p).parent.mkdir(parents=True, exist_ok=True)
        (board / p).write_bytes(b)
    native = [p for p, b in files.items() if p.endswith(".mpy") and b[2] >> 2 != 0]
    assert native == [], "native code cannot run in the unix port: %s" % native
    facts = tmp_path / "board.json"
    facts.write_text(json.dumps(f))
    mods = _module_names(files)
    run = mp.run_unix(code=IMPORT_ALL % {"scripts": str(SCRIPTS), "facts": str(facts), "board": str(board),
                                         "mods": mods}, heap=2 * f["gc_heap_kb"], image="mpy").check()
    r = run.results[0]
    assert r["bad"] == [] and r["ok"] == len(mods) > 40  # each from the board's compiled files
    assert r["sent"] == "010300000001840a" and r["de"] == 0  # DE dropped after the frame
    assert r["nic"] and r["wlan"] and r["wdt_over_refused"]
    assert r["cause"] == 1  # the stand-in's PWRON_RESET reached the application


def test_board_guide_shows_the_boards_json():
    """docs/boards.md's table is the one board.json makes; regenerate it with boards.facts_table()."""
    doc = (Path(mp.REPO) / "docs" / "boards.md").read_text()
    start = doc.index("<!-- board-facts")
    start = doc.index("\n", start) + 1
    table = doc[start : doc.index("<!-- /board-facts -->")]
    assert table == boards.facts_table()
    for name in boards.names():
        f = boards.load(name)
        assert "`%s`" % name in table and f["mcu"] in table
        assert "%d KB (%d%%" % (f["journal_quota_bytes"] // 1024,
                                round(100 * f["journal_quota_bytes"] / f["flash"]["fs_bytes"])) in table
