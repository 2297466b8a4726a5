# Runs inside MicroPython: a light node's signing path over windows of
# readings. The job file holds one JSON header line, then one binary record
# per window, read into one buffer allocated at start (as a sampler keeps
# its frames), so the heap holds one window at a time:
#   "<HH" frames n, points k; "<q" t0 us; n x "<i" time offsets from t0;
#   n x "<B" quality; then per point "<HB" id, order and n x "<i" values.
# Each signed transaction is appended to OUT as "<H" length + bytes, as a
# journal would keep it.
# argv: JOB OUT [SEED_HEX]. Without a seed the device makes its own key
# from os.urandom and only the public key leaves it.
import gc
import hashlib
import json
import struct
import sys
import time

from ln import ed25519, readings, txn, wire


def main(job_path, out_path, seed_hex=None):
    if seed_hex:
        import binascii

        seed = binascii.unhexlify(seed_hex)
    else:
        seed = ed25519.generate_seed()
    key = ed25519.SigningKey(seed)
    seed = None
    device_id = hashlib.sha256(key.public).digest()[:8]
    prev = bytes(wire.HASH_BYTES)
    seq = 0
    out = open(out_path, "wb")
    with open(job_path, "rb") as f:
        head = json.loads(f.readline())
        buf = bytearray(head["record_bytes"])
        mv = memoryview(buf)
        mp_result({"public": key.public.hex(), "device": device_id.hex()})  # noqa: F821
        while f.readinto(mv[:4]) == 4:
            n, k = struct.unpack_from("<HH", buf, 0)
            size = 12 + 5 * n + k * (3 + 4 * n)
            f.readinto(mv[4:size])
            t0 = struct.unpack_from("<q", buf, 4)[0]
            times = [t0 + dt for dt in struct.unpack_from("<%di" % n, buf, 12)]
            quality = struct.unpack_from("<%dB" % n, buf, 12 + 4 * n)
            points = []
            at = 12 + 5 * n
            for _ in range(k):
                pid, order = struct.unpack_from("<HB", buf, at)
                points.append((pid, order, struct.unpack_from("<%di" % n, buf, at + 3)))
                at += 3 + 4 * n
            seq += 1
            gc.collect()
            started = time.ticks_us()
            body = [readings.series_cbor(times, head["period"], points, quality)]
            times = points = quality = None
            data, tx_id = txn.make(key, device_id, head["segment"], seq, prev,
                                   (time.time_ns() // 1000, wire.TQ_NTP, head["uncertainty_us"]),
                                   wire.KIND_READINGS, body)
            ms = time.ticks_diff(time.ticks_us(), started) / 1000
            body = None
            out.write(struct.pack("<H", len(data)))
            out.write(data)
            data = None
            mp_result({"seq": seq, "id": tx_id.hex(), "ms": ms, "heap_free": gc.mem_free()})  # noqa: F821
            prev = tx_id
    out.close()


main(*sys.argv[1:])
