# ln.journal: records on littlefs (inside MicroPython, over ln.blockdev on a
# file standing for the board's flash) or on the host's file system (CPython).
# Appends, torn tails, reserved numbers, prev, the retention ring, quota, and
# freeing by the SDK-made block ack of tests/data/acks (forged ones free nothing).
import binascii
import hashlib
import os

import _vectors
from ln import ack, blockdev, journal, wire

PORTS = ("unix",)

h = binascii.unhexlify
_V = _vectors.load("acks/acks.json")
DEVICE = h(_V["device"])
SEGMENT = _V["segment"]
RECORDS = [(h(d), h(i)) for d, i in _V["records"]]

try:
    import vfs

    _FLASH = "/tmp/ln-journal-test-%s.bin" % binascii.hexlify(os.urandom(4)).decode()
except ImportError:  # CPython: the host's file system
    vfs = None
    _FLASH = None
_n = [0]
_BUF = bytearray(wire.MAX_TX_BYTES)  # one record buffer for every journal opened here


def _open(root, quota, **kw):
    return journal.Journal(root, quota, buf=_BUF, **kw)


def _fresh():
    """An empty folder on a freshly formatted file system."""
    _n[0] += 1
    if vfs is None:
        import tempfile

        return tempfile.mkdtemp(prefix="ln-journal-") + "/journal"
    try:
        vfs.umount("/flash")
    except OSError:
        pass
    dev = blockdev.BlockDevice(4096, 48, path=_FLASH)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), "/flash")
    return "/flash/journal"


def _nodes():
    out = {}
    for n in _V["nodes"]:
        key = h(n["key"])
        kid = hashlib.sha256(key).digest()[: wire.KID_BYTES]
        pk, roles = out.get(kid, (key, ()))
        out[kid] = (pk, roles + (n["role"],))
    return out


def _tx(i, size=100):
    data = bytes([i & 0xFF]) * size
    return data, hashlib.sha256(data).digest()


def _add(j, i, size=100):
    seq, skipped = j.reserve_seq()
    data, tx_id = _tx(i, size)
    j.append(seq, tx_id, data)
    return seq


def _seqs(it):
    return [seq for seq, _i, _b in it]


def test_append_sync_reopen():
    root = _fresh()
    j = _open(root, 64000)
    assert j.prev == journal.ZERO_ID and j.usage() == (0, 0)
    for i in range(5):
        assert _add(j, i) == i
    j.sync()
    got = [(seq, bytes(i), bytes(b)) for seq, i, b in j.pending()]
    assert got == [(i, _tx(i)[1], _tx(i)[0]) for i in range(5)]
    assert j.usage() == (5 * (journal.HEADER_BYTES + 100), 5)
    j.close()
    j = _open(root, 64000)
    assert [(s, bytes(b)) for s, _i, b in j.pending()] == [(i, _tx(i)[0]) for i in range(5)]
    assert j.prev == _tx(4)[1] and j.repaired == []
    assert j.record_for(3) == _tx(3) and j.record_for(7) is None
    j.close()


def test_rotation_keeps_order():
    root = _fresh()
    j = _open(root, 64000, segment_bytes=400)
    for i in range(12):
        _add(j, i)
        j.sync()
    j.close()
    files = sorted(n for n in os.listdir(root) if n.startswith("j"))
    assert len(files) == 6, files  # two records of 148 bytes per 400-byte segment
    j = _open(root, 64000, segment_bytes=400)
    assert _seqs(j.pending()) == list(range(12))
    seq = _add(j, 12)
    j.sync()
    assert seq == journal.RESERVE  # numbers below the reserved limit are skipped
    assert _seqs(j.pending())[-2:] == [11, seq]
    j.close()


def test_torn_tail_is_cut():
    root = _fresh()
    j = _open(root, 64000)
    for i in range(3):
        _add(j, i)
    j.sync()
    j.close()
    name = root + "/" + journal.SEGMENT % 0
    good = os.stat(name)[6]
    # a whole header whose CRC does not hold, then half a record
    with open(name, "ab") as f:
        f.write(b"\x64\x00\x00\x00" + b"\x00" * 44 + b"x" * 30)
    j = _open(root, 64000)
    assert j.repaired == [(journal.SEGMENT % 0, good, 78)], j.repaired
    assert os.stat(name)[6] == good
    assert _seqs(j.pending()) == [0, 1, 2]
    # a length past the limit, and a short header
    j.close()
    with open(name, "ab") as f:
        f.write(b"\xff\xff\xff\x7f" + b"\x00" * 10)
    j = _open(root, 64000)
    assert j.repaired[0][1:] == (good, 14)
    seq = _add(j, 3)
    j.sync()
    j.close()
    j = _open(root, 64000)
    assert _seqs(j.pending()) == [0, 1, 2, seq] and j.repaired == []
    # a flipped bit in the last record's bytes cuts that record only
    j.close()
    with open(name, "r+b") as f:
        f.seek(good + journal.HEADER_BYTES + 5)
        f.write(b"\x00")
    j = _open(root, 64000)
    assert _seqs(j.pending()) == [0, 1, 2] and j.repaired[0][1] == good
    j.close()


def test_reserved_numbers_are_skipped_never_reused():
    root = _fresh()
    j = _open(root, 64000, reserve=4)
    assert j.reserve_seq() == (0, 0)
    j.append(0, _tx(0)[1], _tx(0)[0])
    assert j.reserve_seq() == (1, 0)
    j.append(1, _tx(1)[1], _tx(1)[0])
    j.sync()
    j.close()
    # 0-3 were reserved: after the reboot the next number is 4, two skipped
    j = _open(root, 64000, reserve=4)
    seq, skipped = j.reserve_seq()
    assert (seq, skipped) == (4, 2)
    j.append(seq, _tx(4)[1], _tx(4)[0])
    assert j.reserve_seq() == (5, 0)
    # a number reserved but never used is skipped too, and never appended
    try:
        j.append(2, _tx(2)[1], _tx(2)[0])
        raise AssertionError("a number below the last one appended")
    except ValueError:
        pass
    try:
        j.append(9, _tx(9)[1], _tx(9)[0])
        raise AssertionError("a number not reserved")
    except ValueError:
        pass
    j.sync()
    j.close()
    # a reboot without appending anything: 5-7 were reserved
    j = _open(root, 64000, reserve=4)
    assert j.reserve_seq() == (8, 3)
    assert journal.STATE_FILE in os.listdir(root)
    assert journal.STATE_TMP not in os.listdir(root)
    j.close()


def test_prev_survives_reboots_and_freeing():
    root = _fresh()
    j = _open(root, 64000, segment_bytes=400)
    for i in range(4):
        _add(j, i)
    j.sync()
    j.close()
    j = _open(root, 64000, segment_bytes=400)
    assert j.prev == _tx(3)[1]
    assert j._free(3) == 4 and j.usage() == (0, 0)
    j.close()
    j = _open(root, 64000, segment_bytes=400)
    assert j.prev == _tx(3)[1]
    assert _seqs(j.retained()) == [0, 1, 2, 3]
    assert _add(j, 4) > 3
    j.close()


def test_retention_ring_drops_oldest():
    root = _fresh()
    # each segment holds two records (296 bytes); the ring keeps two segments
    j = _open(root, 64000, segment_bytes=400, ring_bytes=600)
    for i in range(10):
        _add(j, i)
        j.sync()
    assert j._free(1) == 2
    assert _seqs(j.retained()) == [0, 1]
    assert j._free(4) == 3  # the segment of 4 and 5 stays pending, 4 freed in it
    assert _seqs(j.retained()) == [0, 1, 2, 3, 4]
    assert _seqs(j.pending()) == [5, 6, 7, 8, 9] and j.usage()[1] == 5
    assert j._free(7) == 3
    assert _seqs(j.retained()) == [4, 5, 6, 7]  # 0-3 overwritten
    assert j._free(7) == 0
    j.close()
    j = _open(root, 64000, segment_bytes=400, ring_bytes=600)
    assert _seqs(j.pending()) == [8, 9] and _seqs(j.retained()) == [4, 5, 6, 7]
    assert j.record_for(8) == _tx(8) and j.record_for(5) is None
    j.close()


def test_quota():
    root = _fresh()
    j = _open(root, 1000, segment_bytes=400)
    for i in range(6):
        _add(j, i)
    try:
        _add(j, 6)
        raise AssertionError("over the quota")
    except journal.JournalFull:
        pass
    assert j.usage() == (6 * 148, 6)
    j._free(3)
    _add(j, 7)
    assert _seqs(j.pending()) == [4, 5, 7]
    j.close()


def test_pending_bytes_leave_out_freed_records_still_in_place():
    root = _fresh()
    # segments of two records (296 bytes): freeing 0-2 leaves 2 freed in place beside 3
    j = _open(root, 64000, segment_bytes=400)
    for i in range(5):
        _add(j, i)
    j.sync()
    assert j.pending_bytes() == 5 * 148
    j._free(2)
    assert j.pending_bytes() == 2 * 148 and j.usage() == (2 * 148, 2)
    j.close()
    j = _open(root, 64000, segment_bytes=400)  # found again at open
    assert j.pending_bytes() == 2 * 148
    j.close()


def _ack_journal():
    root = _fresh()
    j = _open(root, 64000)
    for data, tx_id in RECORDS:
        seq, _s = j.reserve_seq()
        j.append(seq, tx_id, data)
    j.sync()
    return j


def _refused(j, data, nodes):
    before = j.usage()
    try:
        j.free_through(data, nodes, DEVICE, SEGMENT)
        raise AssertionError("a forged ack freed records")
    except ack.AckError as e:
        reason = e.reason
    assert j.usage() == before and _seqs(j.retained()) == []
    return reason


def test_forged_acks_free_nothing():
    nodes = _nodes()
    j = _ack_journal()
    for reason, data in sorted(_V["refused"].items()):
        assert _refused(j, h(data), nodes) == reason
    real = h(_V["ack"])
    # wrong key: a node set where the ack key is not configured
    no_ack = dict((k, v) for k, v in nodes.items() if "ack" not in v[1])
    assert _refused(j, real, no_ack) == ack.AR_KEY
    # missing quorum: only the producer's checkpoint key configured
    producer = None
    for k, v in nodes.items():
        if "checkpoint" in v[1]:
            producer = k
            break
    one = dict((k, v) for k, v in nodes.items() if "checkpoint" not in v[1] or k == producer)
    assert _refused(j, real, one) in (ack.AR_QUORUM, ack.AR_KEY)
    # tampered signature
    bad = bytearray(real)
    bad[-1] ^= 1
    assert _refused(j, bytes(bad), nodes) == ack.AR_SIGNATURE
    assert _seqs(j.pending()) == [0, 1, 2, 3, 4]
    j.close()
    # wrong hash: the journal's own record 4 is another transaction
    j = _open(_fresh(), 64000)
    for _ in range(5):
        s, _k = j.reserve_seq()
        data, tx_id = RECORDS[3] if s == 4 else RECORDS[s]
        j.append(s, tx_id, data)
    j.sync()
    assert _refused(j, real, nodes) == ack.AR_TX
    j.close()


def test_valid_ack_frees_through_its_seq():
    j = _ack_journal()
    assert j.free_through(h(_V["ack"]), _nodes(), DEVICE, SEGMENT) == 5
    assert _seqs(j.pending()) == [] and j.usage() == (0, 0)
    assert [(s, bytes(b)) for s, _i, b in j.retained()] == [
        (s, RECORDS[s][0]) for s in range(5)]
    assert j.prev == RECORDS[4][1]
    j.close()
