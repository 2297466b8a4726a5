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
* ``node_check_us``: steady state, what a transaction costs once the
  node has seen its device: ``NodeCheck.check`` over a stream of 100,000
  transactions (10 from each of the 10,000 registered devices, every round
  in a new shuffled order, ids and keys new bytes objects as decoded off
  the wire), the look-up a ``Registry``, the verdict cache warm: the
  registry's head read, one dict look-up, the sequence number compared;
* ``node_check_cold_us``: the first transaction of each device, the cache
  empty: the filter, the registry look-up, the verdict kept;
* ``node_check_stranger_us``: 20,000 distinct strangers, each seen once:
  the filter (about 1 in 10^4 on to the look-up), the refused set;
  ``node_check_stranger_repeat_us``: 100 strangers sending again and again,
  answered from the refused set;
* ``node_check_batch_us``: the steady-state stream through ``check_many``,
  1,000 a batch (building the batches included);
* each next to ``verify_us``, one Ed25519 verification with libsodium
  (pynacl) of a transaction-sized Sig_structure, interleaved in the same
  run, best of 5; ``node_check_share_of_verify`` is the steady-state
  figure over it, ``node_check_cold_share_of_verify`` the cold one;
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

from lightnode import filters, keys, registry
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
ROUNDS = 10  # transactions from each device in the steady-state stream


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


def once_us(fn, items):
    """One pass of ``fn`` over ``items``, in microseconds per item."""
    t = time.perf_counter()
    for x in items:
        fn(*x)
    return (time.perf_counter() - t) / len(items) * 1e6


def fresh(pairs, seq):
    """``(device_id, key, seq)`` with new bytes objects, as a transaction decoded off the wire gives."""
    return [(bytes(bytearray(d)), bytes(bytearray(k)), seq) for d, k in pairs]


def node_registry(members):
    """A registry (in memory) holding the members: the node's exact look-up."""
    reg = registry.open_registry(":memory:")
    admin_seed = hashlib.sha256(b"bench admin").digest()
    reg.init_admin("bench", keys.public_key(admin_seed), admin_seed)
    admin = reg.as_operator("bench", admin_seed)
    for d, k in members:
        reg.add_device(d, k, SEGMENT, "pico2_w", "0.1.0", "00" * 32, admin)
    return reg


def stream(members, rng):
    """``ROUNDS`` transactions from every member, each round in a new shuffled order."""
    out = []
    for r in range(ROUNDS):
        order = list(members)
        rng.shuffle(order)
        out += fresh(order, r)
    return out


def node_costs(f, members):
    reg = node_registry(members)
    check = filters.NodeCheck(reg, f)
    rng = random.Random(3)
    # one Ed25519 verification: libsodium over a transaction's Sig_structure (about 90 bytes)
    key = SigningKey(SEED)
    vk = key.verify_key
    tbs = os.urandom(90)
    sig = key.sign(tbs).signature
    verify = [(tbs, sig)] * 5000
    out = {}

    def best(name, value):
        out[name] = min(out.get(name, value), value)

    for _ in range(5):  # interleaved, best of each; fresh objects every time
        best("verify_us", per_call_us(vk.verify, verify, rounds=1))
        # cold: the first transaction of each member, the cache empty (filter,
        # registry look-up, the verdict kept)
        check.invalidate()
        best("node_check_cold_us", once_us(check.check, fresh(members, 0)))
        # steady state: the cache warm, every member sending ROUNDS more, shuffled
        txs = stream(members, rng)
        best("node_check_us", once_us(check.check, txs))
        # the batch path over the same kind of stream, 1,000 transactions a batch
        txs = stream(members, rng)
        t = time.perf_counter()
        for i in range(0, len(txs), 1000):
            part = txs[i : i + 1000]
            check.check_many([(d, k) for d, k, _ in part], [s for _, _, s in part])
        best("node_check_batch_us", (time.perf_counter() - t) / len(txs) * 1e6)
        # strangers: each seen once (the filter, the refused set), and one
        # stranger sending again and again (the refused set answers)
        strangers = [(b"s-%08d" % i, rng.randbytes(32)) for i in range(20_000)]
        best("node_check_stranger_us", once_us(check.check, fresh(strangers, 0)))
        again = fresh(strangers[:100], 0) * 200
        best("node_check_stranger_repeat_us", once_us(check.check, again))
    ok = [check.check(d, k, s) for d, k, s in stream(members[:1000], rng)]
    assert all(ok), "a member refused"
    out = {k: round(v, 3) for k, v in out.items()}
    out["node_cache_entries"] = list(check.cached)
    return out


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
        "node_check_cold_share_of_verify": round(costs["node_check_cold_us"] / costs["verify_us"], 4),
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
