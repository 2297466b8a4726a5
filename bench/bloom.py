"""The device-authentication filter: false-positive rate in theory and practice, and what a check costs.

    .venv/bin/python bench/bloom.py [non-members]

For 10,000 registered devices at a target rate of 1e-4 (lightnode.filters.build):

* ``fpr_measured`` over 10,000,000 non-members (default), looked up in
  batches by ``filters.maybe_members`` (the same indices as the device's
  ``has_key``; checked equal on the first batch);
* ``fpr_theory`` = (set bits / m)^k, the rate this very filter has for a
  key whose k indices are uniform (``fpr_formula``, (1 - e^(-kn/m))^k, is
  the expectation over filters; the two differ by the filter's own fill);
* ``fpr_p_value``: exact two-sided binomial test of the false-positive
  count against ``fpr_theory`` (the sum of the probabilities of every count
  no more likely than the one observed, from log-gamma; no scipy);
* ``bits_per_device`` against the Bloom optimum -log2(p)/ln 2 and the
  lower bound of any filter, log2(1/p);
* ``node_check_us``: ``NodeCheck.check`` (pre-check, then the exact look-up
  in a dict) per transaction, half from registered devices and half from
  strangers, next to ``verify_us``, one Ed25519 verification with libsodium
  (pynacl) of a transaction-sized Sig_structure, in the same run; also the
  batch path (``check_many``);
* ``device_lookup_ms``: one ``might_contain`` inside the unix port (at the
  pico_w heap budget) and the 32-bit WebAssembly port, the filter read from
  its bytes there; ``device_verify_filter_ms``: ``verify_filter`` of the
  signed filter in the unix port;
* ``filter_kb``: the signed filter as published.

Progress lines first; the last line is one JSON object.
"""

import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from lightnode import filters
from lightnode import micropython as mp
from lightnode.firmware.ln import ed25519
from nacl.signing import SigningKey

DEVICES = 10_000
P = 1e-4
NON_MEMBERS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
BATCH = 200_000
SEGMENT = "bench-feeder"
EPOCH = 1
NOT_AFTER = 2_000_000_000
SEED = bytes(range(32))
KID = b"node-1/filter"


def say(*a):
    print(*a, flush=True)


def binomial_p_value(k, n, p):
    """Exact two-sided binomial test: P(X with pmf <= pmf(k)), X ~ Bin(n, p)."""

    def logpmf(i):
        return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (
            n - i) * math.log1p(-p)

    mean = n * p
    sd = math.sqrt(n * p * (1 - p))
    lo = max(0, int(mean - 40 * sd) - 10)
    hi = min(n, int(mean + 40 * sd) + 10)  # beyond 40 sd every term is below 1e-300
    ref = logpmf(k) + 1e-7  # relative tolerance, as in R's binom.test
    total = 0.0
    for i in range(lo, hi + 1):
        lp = logpmf(i)
        if lp <= ref:
            total += math.exp(lp)
    return min(1.0, total)


def devices():
    rng = random.Random(7)
    return [(b"dev-%05d" % i, rng.randbytes(32)) for i in range(DEVICES)]


def measure_fpr(f):
    bm = filters._bytemap(f)
    pre = f.salt + b"\x08"
    outsider = hashlib.sha256(b"bench outsider key").digest()
    sha = hashlib.sha256
    hits = 0
    t0 = time.perf_counter()
    done = 0
    while done < NON_MEMBERS:
        n = min(BATCH, NON_MEMBERS - done)
        # device ids "o" + 7-byte counter: 8 bytes, none a member's
        digests = [sha(pre + b"o" + i.to_bytes(7, "big") + outsider).digest()
                   for i in range(done, done + n)]
        found = filters.maybe_members(digests, f, bm)
        if done == 0:
            ids = [b"o" + i.to_bytes(7, "big") for i in range(0, 20_000)]
            assert all(f.key(d, outsider) == digests[j] for j, d in enumerate(ids))
            scalar = [j for j in range(n) if f.has_key(digests[j])]
            assert scalar == found, "batch and scalar look-ups disagree"
        hits += len(found)
        done += n
        if done % 2_000_000 == 0 or done == NON_MEMBERS:
            say("  %9d non-members, %d false positives (%.1f s)" % (done, hits, time.perf_counter() - t0))
    return hits, time.perf_counter() - t0


def per_call_us(fn, items, rounds=5):
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for x in items:
            fn(*x)
        best = min(best, (time.perf_counter() - t) / len(items) * 1e6)
    return best


def node_costs(f, members):
    check = filters.NodeCheck(dict(members), f)
    rng = random.Random(3)
    strangers = [(b"s-%06d" % i, rng.randbytes(32)) for i in range(20_000)]
    mix = [x for pair in zip(members[:10_000], strangers[:10_000], strict=True) for x in pair]
    # one Ed25519 verification: libsodium over a transaction's Sig_structure (about 90 bytes)
    key = SigningKey(SEED)
    vk = key.verify_key
    tbs = os.urandom(90)
    sig = key.sign(tbs).signature
    verify = [(tbs, sig)] * 5000
    out = {}
    for _ in range(2):  # interleaved, best of each
        v = per_call_us(vk.verify, verify)
        out["verify_us"] = min(out.get("verify_us", v), v)
        for name, items in (("node_check_us", mix), ("node_check_member_us", members),
                            ("node_check_stranger_us", strangers)):
            c = per_call_us(check.check, items)
            out[name] = min(out.get(name, c), c)
        t = time.perf_counter()
        for _ in range(3):
            check.check_many(mix)
        b = (time.perf_counter() - t) / (3 * len(mix)) * 1e6
        out["node_check_batch_us"] = min(out.get("node_check_batch_us", b), b)
    return {k: round(v, 3) for k, v in out.items()}


# the filter comes as raw bytes (unix) or as hex in JSON (the wasm port's
# filesystem takes only .py, .mpy and .json files)
_DEVICE_LOOKUP = """
import gc, time, hashlib
from lightnode.bloom import filter as bf
path = %r
if path.endswith(".json"):
    import json
    from binascii import unhexlify
    with open(path) as fh:
        raw = unhexlify(json.load(fh)["filter"])
else:
    with open(path, "rb") as fh:
        raw = fh.read()
f = bf.BloomFilter.from_bytes(raw)
raw = None
gc.collect()
reps = %d
pk = hashlib.sha256(b"device probe").digest()
ids = [b"dev-%%05d" %% i for i in range(50)] + [b"zz-%%05d" %% i for i in range(50)]
hit = 0
t = time.ticks_ms()
for _ in range(reps):
    for d in ids:
        if f.might_contain(d, pk):
            hit += 1
ms = time.ticks_diff(time.ticks_ms(), t)
mp_result({"ms": ms / (reps * len(ids)), "n": reps * len(ids), "hits": hit, "free": gc.mem_free()})
"""

_DEVICE_VERIFY = """
import gc, time
from binascii import unhexlify
from lightnode.bloom import signed
with open(%r, "rb") as fh:
    data = fh.read()
keys = {%r: (unhexlify(%r), ("filter",))}
gc.collect()
t = time.ticks_ms()
f = signed.verify_filter(data, keys, 0, 1, 65536)
ms = time.ticks_diff(time.ticks_ms(), t)
mp_result({"ms": ms, "items": f.items})
"""


def device_runs(f, signed_bytes):
    out = {}
    with tempfile.TemporaryDirectory(prefix="lightnode-bloom-") as tmp:
        (Path(tmp) / "filter.bin").write_bytes(f.to_bytes())
        (Path(tmp) / "filter.cose").write_bytes(signed_bytes)
        (Path(tmp) / "filter.json").write_text(json.dumps({"filter": f.to_bytes().hex()}))
        try:
            run = mp.run_unix(code=_DEVICE_LOOKUP % (str(Path(tmp) / "filter.bin"), 400),
                              board="pico_w").check()
            out["unix"] = run.results[0]["ms"]
            say("  unix port (pico_w heap): %.4f ms per look-up" % out["unix"])
            public = ed25519.SigningKey(SEED).public.hex()
            run = mp.run_unix(code=_DEVICE_VERIFY % (str(Path(tmp) / "filter.cose"), KID, public),
                              heap=512).check()
            out["verify_filter_unix"] = run.results[0]["ms"]
            say("  unix port: verify_filter %d ms" % out["verify_filter_unix"])
        except Exception as e:  # report what could not run, keep the rest
            say("  unix port: not measured: %s" % e)
        try:
            run = mp.run_wasm(code=_DEVICE_LOOKUP % ("/data/filter.json", 10), data=tmp).check()
            out["wasm"] = run.results[0]["ms"]
            say("  wasm port (32-bit): %.4f ms per look-up" % out["wasm"])
        except Exception as e:
            say("  wasm port: not measured: %s" % e)
    return out


def main():
    say("building the filter of %d devices at p=%g" % (DEVICES, P))
    members = devices()
    t = time.perf_counter()
    f = filters.build(members, EPOCH, NOT_AFTER, p=P, segment=SEGMENT)
    build_s = time.perf_counter() - t
    signed_bytes = filters.sign(f, SEED, KID)
    m, k, n = f.bits, f.hashes, f.items
    x = f.set_bits()
    theory = (x / m) ** k
    formula = (1 - math.exp(-k * n / m)) ** k
    say("  m=%d bits, k=%d, %d set (%.4f), built in %.2f s" % (m, k, x, x / m, build_s))
    say("looking up %d non-members" % NON_MEMBERS)
    hits, secs = measure_fpr(f)
    measured = hits / NON_MEMBERS
    pval = binomial_p_value(hits, NON_MEMBERS, theory)
    say("  measured %.3e, theory %.3e (formula %.3e), p-value %.3f" % (measured, theory, formula, pval))
    say("node check against one verification")
    costs = node_costs(f, members)
    say("  %s" % costs)
    say("inside MicroPython")
    dev = device_runs(f, signed_bytes)
    optimum = -math.log2(P) / math.log(2)
    result = {
        "devices": DEVICES,
        "target_fpr": P,
        "bits": m,
        "hashes": k,
        "non_members": NON_MEMBERS,
        "false_positives": hits,
        "fpr_measured": measured,
        "fpr_theory": theory,
        "fpr_formula": formula,
        "fpr_p_value": round(pval, 4),
        "fpr_test": "exact two-sided binomial, H0: rate = fpr_theory",
        "lookups_per_s": round(NON_MEMBERS / secs),
        "bits_per_device": round(m / n, 3),
        "bits_per_device_optimum": round(optimum, 3),
        "bits_per_device_lower_bound": round(-math.log2(P), 3),
        **costs,
        "node_check_share_of_verify": round(costs["node_check_us"] / costs["verify_us"], 4),
        "node_check_batch_share_of_verify": round(costs["node_check_batch_us"] / costs["verify_us"], 4),
        "device_lookup_ms": {"unix": dev.get("unix"), "wasm": dev.get("wasm")},
        "device_verify_filter_ms": dev.get("verify_filter_unix"),
        "filter_kb": round(len(signed_bytes) / 1024, 2),
        "filter_bytes": len(f.to_bytes()),
        "boards": {b: filters.fits(b, len(signed_bytes))[0]
                   for b in ("pico_w", "pico2_w", "esp32", "esp32s3")},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
