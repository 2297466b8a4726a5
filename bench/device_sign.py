"""Signing one PMU window's transaction inside MicroPython: ours against the textbook.

    .venv/bin/python bench/device_sign.py

Signs the bytes Ed25519 signs for one transaction of a Pico W default
window (5 s of a 50 frames/s PMU, bench/_window.py) with ln.ed25519 and
with bench/textbook_ed25519.py (RFC 8032 written plainly), alternating
the two in one run, in the unix port (64-bit) and in the 32-bit wasm port
(plain Python: no viper there). Then finds by bisection the smallest
``-X heapsize`` at which 20 signatures in a row succeed in the unix port.
Progress lines first; the last line is one JSON object.
"""

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lightnode import micropython as mp  # noqa: E402

SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")

# Runs inside MicroPython: alternate rounds of ours and the textbook, each
# round timing n signatures with ticks_ms (the wasm port's ticks_us is coarse).
_TIMING = """
import sys, gc, time
from binascii import hexlify, unhexlify
import textbook_ed25519 as tb
from ln import ed25519, sha512

msg = unhexlify(sys.argv[1])
seed = unhexlify(sys.argv[2])
n_ours, n_tb, rounds = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
key = ed25519.SigningKey(seed)
sig = key.sign(msg)
assert sig == tb.sign(seed, msg), "ours and the textbook disagree"
assert ed25519.verify(key.public, msg, sig) and tb.verify(key.public, msg, sig)

def per_call(f, n):
    gc.collect()
    t = time.ticks_ms()
    for _ in range(n):
        f()
    return time.ticks_diff(time.ticks_ms(), t) / n

for r in range(rounds):
    mp_result({"round": r,
               "ours": per_call(lambda: key.sign(msg), n_ours),
               "textbook": per_call(lambda: tb.sign(seed, msg), n_tb),
               "verify": per_call(lambda: ed25519.verify(key.public, msg, sig), max(1, n_ours // 4)),
               "textbook_verify": per_call(lambda: tb.verify(key.public, msg, sig), max(1, n_tb // 2))})
mp_result({"sig": hexlify(sig).decode(), "sha512_halves": sha512.HALVES})
"""

# Runs inside the unix port at a given heap: 20 signatures in a row.
_HEAP = """
import sys
from binascii import unhexlify
from ln import ed25519
msg = unhexlify(sys.argv[1])
key = ed25519.SigningKey(unhexlify(sys.argv[2]))
for _ in range(20):
    sig = key.sign(msg)
assert ed25519.verify(key.public, msg, sig)
mp_result({"ok": True})
"""


def _message():
    try:
        import _window
    except ImportError:
        _window = None
    if _window is not None:
        w = _window.window_transaction()
        return w["payload"], w["to_be_signed"], "bench/_window.py"
    # Stand-in of the same shape until bench/_window.py exists.
    import hashlib
    import random

    import cbor2

    rnd = random.Random(5)
    payload = bytes(rnd.getrandbits(8) for _ in range(4096))
    protected = cbor2.dumps({1: -8, 4: bytes(8), 258: -16, 259: 60})
    tbs = cbor2.dumps(["Signature1", protected, b"", hashlib.sha256(payload).digest()])
    return payload, tbs, "stand-in"


def _time(runner, msg, n_ours, n_tb, rounds, **kw):
    run = runner(
        code=_TIMING,
        paths=(str(HERE),),
        args=(msg.hex(), SEED.hex(), n_ours, n_tb, rounds),
        **kw,
    ).check()
    rows = [r for r in run.results if "round" in r]
    for r in rows:
        print(
            f"  round {r['round']}: ours {r['ours']:.2f} ms, textbook {r['textbook']:.2f} ms, "
            f"verify {r['verify']:.2f} ms, textbook verify {r['textbook_verify']:.2f} ms",
            flush=True,
        )
    last = run.results[-1]
    med = {
        k: statistics.median(r[k] for r in rows)
        for k in ("ours", "textbook", "verify", "textbook_verify")
    }
    return med, last


def _min_heap(msg, image):
    # image "mpy": the precompiled code is loaded into the heap, so the figure
    # is the whole -X heapsize; "rom": the code runs in place from a ROMFS
    # image (as from a board's flash) and the figure is the heap it leaves.
    def ok(kb):
        return mp.run_unix(code=_HEAP, heap=kb, args=(msg.hex(), SEED.hex()), image=image).ok

    lo, hi = 4, 128  # lo fails, hi succeeds
    if not ok(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        good = ok(mid)
        print(f"  heap {mid} KB: {'ok' if good else 'fails'}", flush=True)
        if good:
            hi = mid
        else:
            lo = mid
    return hi


def main():
    payload, tbs, source = _message()
    print(f"message: {len(tbs)} bytes to sign, payload {len(payload)} bytes ({source})")
    from nacl.signing import SigningKey

    want = SigningKey(SEED).sign(tbs).signature

    print("unix port (64-bit):", flush=True)
    unix, u_last = _time(mp.run_unix, tbs, 200, 20, 5)
    assert bytes.fromhex(u_last["sig"]) == want, "signature differs from libsodium's"
    print("wasm port (32-bit, plain Python):", flush=True)
    wasm, w_last = _time(mp.run_wasm, tbs, 60, 8, 5)
    assert bytes.fromhex(w_last["sig"]) == want, "signature differs from libsodium's (wasm)"
    print("smallest unix -X heapsize for 20 signatures, code loaded into the heap:", flush=True)
    heap = _min_heap(tbs, "mpy")
    print("smallest unix heap for 20 signatures, code in ROM:", flush=True)
    heap_rom = _min_heap(tbs, "rom")

    out = {
        "ms_per_tx": round(unix["ours"], 3),
        "textbook_ms_per_tx": round(unix["textbook"], 3),
        "ms_per_tx_32bit": round(wasm["ours"], 3),
        "textbook_ms_per_tx_32bit": round(wasm["textbook"], 3),
        "speedup": round(unix["textbook"] / unix["ours"], 2),
        "speedup_32bit": round(wasm["textbook"] / wasm["ours"], 2),
        "verify_ms": round(unix["verify"], 3),
        "textbook_verify_ms": round(unix["textbook_verify"], 3),
        "verify_ms_32bit": round(wasm["verify"], 3),
        "textbook_verify_ms_32bit": round(wasm["textbook_verify"], 3),
        "bytes_signed": len(tbs),
        "payload_bytes": len(payload),
        "min_heap_kb": heap,
        "min_heap_kb_code_in_rom": heap_rom,
        "sha512_halves_unix": u_last["sha512_halves"],
        "sha512_halves_32bit": w_last["sha512_halves"],
        "message_source": source,
        "same_signature_as_libsodium": True,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
