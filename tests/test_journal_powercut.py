"""The journal survives a power cut at every write and erase step.

Inside the unix port, the firmware's own ``ln.journal`` runs on
MicroPython's ``VfsLfs2`` over ``ln.blockdev`` in RAM (board geometry:
4096-byte blocks). One append-sync-rotate cycle (open, reserve numbers,
append and sync records of varied sizes across several segment files, free
the oldest into the retention ring, keep appending) is cut after n steps
for every n from 0 to the cycle's step count; then 2,000 random cuts, each
with a torn last step (part of the write or erase lands), a random cycle,
and a second cut during the reboot's repair and the appends after it.

After each cut the flash is mounted again and checked: it mounts, the
journal opens, every synced record is there with its bytes, nothing is
there that was not appended (so at most the record being written is
missing), the next number is past every number handed out, and ``prev``
is the newest record's id. Many cuts run in one unix-port process.
"""

import json
import random

import pytest
from _need import need
from lightnode import micropython as mp

pytestmark = pytest.mark.micropython

RANDOM_CUTS = 2000
HEAP_KB = 1024

DEVICE = r'''
import gc
import hashlib
import json
import os
import sys
import vfs
from ln import blockdev, journal, wire

BS = 4096
BLOCKS = 24
SEG = 2048
RESERVE = 4
K = 14           # records per cycle
FREE_AT = 8      # after this many records, free the first few


class Log:
    def __init__(self):
        self.synced = {}    # seq -> record index, sync() returned after it
        self.appended = {}  # seq -> record index, append() was called
        self.issued = -1    # highest number reserve_seq() handed out
        self.freed = -1     # _free() returned after freeing through this seq
        self.cuts = 0       # each may lose the one record it caught unsynced


def record(seed, i):
    n = 40 + (seed * 131 + i * 977) % 900
    data = bytes([(seed + i) & 0xFF]) * n
    return data, hashlib.sha256(data).digest()


BUF = bytearray(wire.MAX_TX_BYTES)


def run_cycle(dev, seed, log, start):
    """Open the journal on dev and add K records from index start; PowerCut may end it anywhere."""
    fs = vfs.VfsLfs2(dev)
    vfs.mount(fs, "/f")
    j = None
    try:
        j = journal.Journal("/f/j", 60000, reserve=RESERVE, segment_bytes=SEG,
                            ring_bytes=40000, buf=BUF)
        for i in range(start, start + K):
            seq, skipped = j.reserve_seq()
            if seq > log.issued:
                log.issued = seq
            data, tx_id = record(seed, i)
            log.appended[seq] = i
            j.append(seq, tx_id, data)
            j.sync()
            log.synced[seq] = i
            if i == start + FREE_AT:
                upto = sorted(log.synced)[2 + seed % 3]
                j._free(upto)
                log.freed = upto
        j.close()
    finally:
        if j is not None and j._head is not None:
            try:
                j._head.close()
            except OSError:
                pass
            j._head = None
        vfs.umount("/f")


def check(dev, seed, log):
    """None if the flash after the cut holds what it must, else why not."""
    try:
        fs = vfs.VfsLfs2(dev)
        vfs.mount(fs, "/f")
    except OSError as e:
        return "no mount: %r" % (e,)
    try:
        j = journal.Journal("/f/j", 60000, reserve=RESERVE, segment_bytes=SEG,
                            ring_bytes=40000, buf=BUF)
        if log.issued >= 0 and journal.STATE_FILE not in os.listdir("/f/j"):
            return "state file lost"
        if j._freed < log.freed + 1:
            return "free through %d undone" % log.freed
        seen = {}
        for it in (j.retained(), j.pending()):
            for seq, tx_id, body in it:
                if seq in seen:
                    return "seq %d twice" % seq
                i = log.appended.get(seq)
                if i is None:
                    return "seq %d never appended" % seq
                data, want = record(seed, i)
                if bytes(body) != data or bytes(tx_id) != want:
                    return "seq %d bytes differ" % seq
                seen[seq] = i
        for seq in log.synced:
            if seq not in seen:
                return "synced seq %d lost" % seq
        missing = [s for s in log.appended if s not in seen]
        if len(missing) > log.cuts:
            return "%d records missing after %d cuts" % (len(missing), log.cuts)
        top = max(seen) if seen else -1
        want_prev = record(seed, seen[top])[1] if seen else journal.ZERO_ID
        if j.prev != want_prev:
            return "prev is not seq %d's id" % top
        seq, skipped = j.reserve_seq()
        if seq <= log.issued:
            return "seq %d reused (issued up to %d)" % (seq, log.issued)
        if skipped != seq - top - 1:
            return "skip %d" % skipped
        j.close()
        return None
    except Exception as e:
        return "check raised %r" % (e,)
    finally:
        try:
            vfs.umount("/f")
        except OSError:
            pass


def main(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    ram = bytearray(BS * BLOCKS)
    dev = blockdev.BlockDevice(BS, BLOCKS, data=ram)
    vfs.VfsLfs2.mkfs(dev)
    base = bytes(ram)
    # the cycle's step count, uncut
    log = Log()
    run_cycle(dev, 0, log, 0)
    steps = dev.steps
    out = {"steps": steps, "cases": 0, "cut": 0, "writing_lost": 0, "failures": [],
           "erases_max": max(dev.erases)}
    for case in plan:
        if case == "all":
            cases = [[0, n, 0, -1, 0] for n in range(steps + 1)]
        else:
            cases = [case]
        for seed, n1, torn1, n2, torn2 in cases:
            ram[:] = base
            log = Log()
            cut = False
            start = 0
            for n, torn in ((n1, torn1), (n2, torn2)):
                if n < 0:
                    break
                dev = blockdev.BlockDevice(BS, BLOCKS, data=ram)
                dev.cut_after(n, torn)
                try:
                    run_cycle(dev, seed, log, start)
                except OSError:
                    if not dev.dead:
                        raise
                    cut = True
                    log.cuts += 1
                start += K
                gc.collect()
            why = check(blockdev.BlockDevice(BS, BLOCKS, data=ram), seed, log)
            out["cases"] += 1
            out["cut"] += cut
            if why is None and len(log.appended) > len(log.synced):
                out["writing_lost"] += 1
            if why is not None and len(out["failures"]) < 10:
                out["failures"].append([seed, n1, torn1, n2, torn2, why])
            elif why is not None:
                out["failures"].append(None)
    mp_result(out)


main(sys.argv[1])
'''


def _run(plan, tmp_path, name):
    need(mp.find_micropython)
    path = tmp_path / ("%s.json" % name)
    path.write_text(json.dumps(plan))
    run = mp.run_unix(code=DEVICE, heap=HEAP_KB, args=(str(path),), timeout=300)
    run.check()
    assert run.results, run.stdout[-3000:]
    return run.results[-1]


def test_cut_at_every_step_of_the_cycle(tmp_path):
    out = _run(["all"], tmp_path, "every")
    print("cycle of %(steps)d write/erase steps, %(cases)d cuts, cut between append and sync in %(writing_lost)d" % out)
    assert out["steps"] > 50, out
    assert out["cases"] == out["steps"] + 1
    assert out["failures"] == [], out["failures"]


def test_random_cuts(tmp_path):
    rnd = random.Random(20261125)
    steps = _run([], tmp_path, "count")["steps"]
    plan = []
    for _ in range(RANDOM_CUTS):
        second = rnd.random() < 0.5
        plan.append([
            rnd.randrange(1, 1000),
            rnd.randrange(0, steps + 20),
            rnd.choice((0, 0, rnd.randrange(1, 4096))),
            rnd.randrange(0, steps + 20) if second else -1,
            rnd.randrange(0, 4096) if second else 0,
        ])
    out = _run(plan, tmp_path, "random")
    print("%(cases)d random cases, %(cut)d cut, cut between append and sync in %(writing_lost)d" % out)
    assert out["cases"] == RANDOM_CUTS
    assert out["cut"] > RANDOM_CUTS * 0.8, out
    assert out["failures"] == [], out["failures"]
