"""Board facts: one folder per board, each with a ``board.json``.

The unix board stands in for a real one (``stands_in_for``) and takes its
heap budget, default window, watchdog and journal quota from it, so a test
on the unix port runs within the budget of the board it represents.
``load`` refuses facts that contradict each other (``problems`` says
which); docs/boards.md explains every field.

    >>> from lightnode import boards
    >>> boards.load("pico_w")["heap_kb"]
    128
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
_KEYS = ("heap_kb", "gc_heap_kb", "default_window_s", "watchdog_max_ms", "journal_quota_bytes")
_POSITIVE = ("heap_kb", "default_window_s", "watchdog_max_ms", "journal_quota_bytes")
NETWORK_KINDS = ("wifi", "ethernet", "host")
# The journal's retention ring is a quarter of its quota (ln.journal).
RING_SHARE = 0.25


def names() -> list[str]:
    """Every board that has a folder here."""
    return sorted(p.parent.name for p in HERE.glob("*/board.json"))


def _pins(facts: dict) -> dict[str, int]:
    """Every GPIO the board's facts assign, by role (``uart.tx``, ``ethernet.cs``...)."""
    out = {}
    if "safe_mode_pin" in facts:
        out["safe_mode_pin"] = facts["safe_mode_pin"]
    uart = facts.get("uart") or {}
    for role in ("tx", "rx", "rs485_de"):
        if role in uart:
            out["uart." + role] = uart[role]
    eth = (facts.get("network") or {}).get("ethernet") or {}
    for role in ("sck", "mosi", "miso", "cs", "rst", "int"):
        if role in eth:
            out["ethernet." + role] = eth[role]
    return out


def problems(facts: dict) -> list[str]:
    """What is inconsistent in a board's (loaded) facts; empty when nothing is."""
    out = []
    for key in _POSITIVE:
        if not isinstance(facts.get(key), int) or isinstance(facts.get(key), bool) or facts[key] <= 0:
            out.append("%s must be a positive integer" % key)
    if isinstance(facts.get("gc_heap_kb"), int) and isinstance(facts.get("heap_kb"), int) \
            and facts["heap_kb"] > facts["gc_heap_kb"]:
        out.append("heap_kb %d is more than the GC heap of %d KB" % (facts["heap_kb"], facts["gc_heap_kb"]))
    fl = facts.get("flash") or {}
    try:
        if fl["block_size"] * fl["block_count"] != fl["fs_bytes"]:
            out.append("flash: block_size x block_count is not fs_bytes")
        if fl["fs_bytes"] > fl["total_bytes"]:
            out.append("flash: the file system is larger than the flash")
        quota = facts.get("journal_quota_bytes")
        if isinstance(quota, int) and quota * (1 + RING_SHARE) >= fl["fs_bytes"]:
            out.append("journal_quota_bytes %d and its ring leave no room in a %d-byte file system"
                       % (quota, fl["fs_bytes"]))
    except (KeyError, TypeError):
        out.append("flash needs total_bytes, fs_bytes, block_size and block_count")
    net = facts.get("network") or {}
    if net.get("kind") not in NETWORK_KINDS:
        out.append("network.kind must be one of %s" % ", ".join(NETWORK_KINDS))
    if facts.get("word_bits") == 32 and net.get("kind") == "host":
        out.append("a 32-bit board has no host network")
    gpio = facts.get("gpio")
    pins = _pins(facts)
    if gpio is None and pins:
        out.append("pins are assigned but gpio (count, reserved, input_only) is missing")
    if gpio is not None:
        if "id" not in facts.get("uart", {}) or "rs485_de" not in facts["uart"]:
            out.append("uart needs id, tx, rx and rs485_de")
        if "safe_mode_pin" not in facts:
            out.append("safe_mode_pin is missing")
        seen: dict[int, str] = {}
        for role, pin in pins.items():
            if not isinstance(pin, int) or not 0 <= pin < gpio["count"]:
                out.append("%s: GPIO %r does not exist" % (role, pin))
            elif pin in gpio["reserved"]:
                out.append("%s: GPIO %d is reserved (flash, radio or USB)" % (role, pin))
            elif pin in gpio["input_only"] and role not in ("uart.rx", "ethernet.miso", "ethernet.int"):
                out.append("%s: GPIO %d is input-only" % (role, pin))
            elif pin in seen:
                out.append("%s and %s share GPIO %d" % (seen[pin], role, pin))
            else:
                seen[pin] = role
    return out


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
    bad = problems(board)
    if bad:
        raise ValueError("board %s: %s" % (name, "; ".join(bad)))
    return board


def _kb(n: int) -> str:
    return "%d KB" % (n // 1024) if n % 1024 == 0 else "%d B" % n


def facts_table() -> str:
    """The boards' facts as the Markdown table docs/boards.md shows (a test keeps them equal)."""
    cols = names()
    f = {n: load(n) for n in cols}

    def uart(b: dict) -> str:
        u = b["uart"]
        return "UART%d TX %d RX %d, DE %d" % (u["id"], u["tx"], u["rx"], u["rs485_de"]) if "id" in u \
            else u.get("kind", "")

    def eth(b: dict) -> str:
        e = b["network"].get("ethernet")
        if not e:
            return "-"
        return "SPI%d SCK %d MOSI %d MISO %d CS %d RST %d INT %d" % (
            e["spi"], e["sck"], e["mosi"], e["miso"], e["cs"], e["rst"], e["int"])

    def quota(b: dict) -> str:
        q, fs = b["journal_quota_bytes"], b["flash"]["fs_bytes"]
        return "%s (%d%% of the file system; ring %s more)" % (_kb(q), round(100 * q / fs), _kb(int(q * RING_SHARE)))

    rows = [
        ("MCU", lambda b: b["mcu"]),
        ("MicroPython build", lambda b: b["micropython_build"]),
        ("`sys.platform`, mpy arch", lambda b: "%s, %s" % (b["sys_platform"], b["mpy_arch"])),
        ("USB", lambda b: b["usb"]),
        ("heap budget (of GC heap)", lambda b: "%d KB (of %d KB)" % (b["heap_kb"], b["gc_heap_kb"])),
        ("flash, file system", lambda b: "%s, %s" % (_kb(b["flash"]["total_bytes"]), _kb(b["flash"]["fs_bytes"]))),
        ("blocks", lambda b: "%d x %d B" % (b["flash"]["block_count"], b["flash"]["block_size"])),
        ("journal quota", quota),
        ("update slot on the file system", lambda b: "yes" if b["flash"]["update_slot"] else "no"),
        ("default window", lambda b: "%d s" % b["default_window_s"]),
        ("watchdog max", lambda b: "%d ms" % b["watchdog_max_ms"]),
        ("Modbus RS-485", uart),
        ("safe-mode pin (to GND at boot)", lambda b: str(b["safe_mode_pin"]) if "safe_mode_pin" in b else "-"),
        ("network", lambda b: "%s%s" % (b["network"]["kind"], " (%s)" % b["network"]["chip"]
                                        if "chip" in b["network"] else "")),
        ("W5500 option", eth),
    ]
    out = ["| | " + " | ".join("`%s`" % n for n in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, get in rows:
        out.append("| %s | " % label + " | ".join(get(f[n]).replace("|", "/") for n in cols) + " |")
    return "\n".join(out) + "\n"
