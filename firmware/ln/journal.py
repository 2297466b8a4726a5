"""The device's journal: every signed transaction on flash until a block ack frees it.

Records are appended to segment files under ``root`` on littlefs, each
with its length, sequence number, transaction id and a CRC32; a record
torn by a power cut is cut off when the journal is opened. Sequence
numbers are reserved ahead in a small state file, replaced atomically
(temporary file, then rename), so after a reboot the next number is past
every one handed out before it: numbers are skipped, never reused. The
previous transaction's id is found again at open, so the hash chain goes
on. A valid block ack (``ln.ack.check_ack``) frees records: whole freed
segments are renamed into a retention ring, whose oldest file goes first
when it is over its size. docs/journal.md has the layout.

    from ln import journal
    j = journal.Journal("/journal", 600_000)
    seq, skipped = j.reserve_seq()       # skipped > 0: record it as an event
    data, tx_id = txn.make(key, device, segment, seq, j.prev, t, kind, body)
    j.append(seq, tx_id, data)
    j.sync()                             # between polls
    for seq, tx_id, data in j.pending(): ...   # data valid until the next step
    j.free_through(ack_bytes, cfg.node_keys(), cfg.device, cfg.segment)
"""

import binascii
import os
import struct

from . import wire

# Record: header, then the transaction's bytes.
#   0  u32 LE  length of the transaction's bytes (1 .. wire.MAX_TX_BYTES)
#   4  u32 LE  CRC32 of header bytes 0-3 and 8-47, then of the transaction's bytes
#   8  u64 LE  sequence number
#  16  32 B    transaction id (SHA-256 of the COSE envelope)
HEADER = "<IIQ32s"
HEADER_BYTES = 48
# State file: all fields little-endian, 64 bytes.
#   0  4 B     magic b"LNJ1"
#   4  u64     seq limit: every number below it may have been handed out
#  12  u64     freed through: records with seq below it are acked (0: none)
#  20  u64     last seq + 1 known when written (0: none)
#  28  32 B    that transaction's id
#  60  u32     CRC32 of bytes 0-59
STATE = "<4sQQQ32sI"
STATE_BYTES = 64
STATE_MAGIC = b"LNJ1"
STATE_FILE = "state"
STATE_TMP = "state.tmp"
REPAIR_TMP = "repair.tmp"
SEGMENT = "j%08d"  # pending records
RING = "r%08d"  # freed records, kept for dump until the ring is over its size
SEGMENT_BYTES = 32768
RESERVE = 64
ZERO_ID = b"\x00" * wire.HASH_BYTES
_COPY = 512


class JournalError(OSError):
    """The journal cannot do what was asked with what is on flash."""


class JournalFull(JournalError):
    """Appending would take the pending records over the quota."""


def _crc(hdr, data):
    c = binascii.crc32(hdr[0:4])
    c = binascii.crc32(hdr[8:HEADER_BYTES], c)
    return binascii.crc32(data, c) & 0xFFFFFFFF


def _number(name, prefix):
    if len(name) != 9 or name[0] != prefix:
        return -1
    try:
        return int(name[1:])
    except ValueError:
        return -1


class Journal:
    def __init__(self, root, quota_bytes, reserve=RESERVE, segment_bytes=SEGMENT_BYTES,
                 ring_bytes=None, buf=None):
        """Open (or start) the journal in folder ``root``, repairing a torn tail.

        ``quota_bytes`` bounds the pending segments, ``ring_bytes`` (a
        quarter of the quota unless given) the retention ring. ``buf``, a
        bytearray of at least ``_COPY`` bytes, is the record buffer if the
        caller shares one; else one of ``wire.MAX_TX_BYTES`` is allocated
        here. A record longer than ``buf`` is read into a buffer of its own
        (a small board keeps a buffer for the usual record, not the largest).
        """
        if reserve < 1 or segment_bytes < HEADER_BYTES + 1 or quota_bytes < segment_bytes:
            raise ValueError("reserve, segment_bytes or quota_bytes out of range")
        self.root = root
        self.quota = quota_bytes
        self.reserve = reserve
        self.segment_bytes = segment_bytes
        self.ring_bytes = quota_bytes // 4 if ring_bytes is None else ring_bytes
        # allocated once: every read goes through these
        self._hdr = bytearray(HEADER_BYTES)
        self._hv = memoryview(self._hdr)
        if buf is None:
            buf = bytearray(wire.MAX_TX_BYTES)
        elif len(buf) < _COPY:
            raise ValueError("a record buffer of at least %d bytes" % _COPY)
        self._buf = buf
        self._bv = memoryview(self._buf)
        self._state = bytearray(STATE_BYTES)
        self._segs = []  # pending files, oldest first: [number, first seq, last seq, bytes, records]
        self._ring = []  # freed files, oldest first: [number, bytes]
        self._head = None  # the open newest pending file
        self._num = -1  # highest file number in use
        self._head_freed = 0  # bytes of freed records still in the oldest pending file
        self.repaired = []  # (file, offset, bytes cut) of this open
        self.state_lost = False
        self._open()

    # -- paths and small file steps

    def _path(self, name):
        return self.root + "/" + name

    def _size(self, name):
        return os.stat(self._path(name))[6]

    def _remove(self, name):
        try:
            os.remove(self._path(name))
        except OSError:
            pass

    # -- state file

    def _read_state(self):
        try:
            with open(self._path(STATE_FILE), "rb") as f:
                n = f.readinto(self._state)
        except OSError:
            return None
        if n != STATE_BYTES:
            return ()
        magic, limit, freed, last1, last_id, crc = struct.unpack(STATE, self._state)
        if magic != STATE_MAGIC or crc != binascii.crc32(memoryview(self._state)[:60]) & 0xFFFFFFFF:
            return ()
        return limit, freed, last1, last_id

    def _write_state(self, limit):
        s = self._state
        struct.pack_into(STATE, s, 0, STATE_MAGIC, limit, self._freed, self._last + 1,
                         self.prev, 0)
        struct.pack_into("<I", s, 60, binascii.crc32(memoryview(s)[:60]) & 0xFFFFFFFF)
        with open(self._path(STATE_TMP), "wb") as f:
            f.write(s)
        os.rename(self._path(STATE_TMP), self._path(STATE_FILE))
        self._limit = limit

    # -- reading records

    def _read_header(self, f):
        """(length, crc, seq, tx id view) of the record at f's position, or None at a short read."""
        if f.readinto(self._hdr) != HEADER_BYTES:
            return None
        n, crc, seq = struct.unpack_from("<IIQ", self._hdr, 0)
        return n, crc, seq

    def _read_body(self, f, n):
        mv = self._bv[:n] if n <= len(self._bv) else memoryview(bytearray(n))
        if f.readinto(mv) != n:
            return None
        return mv

    def _scan(self, name, after):
        """(good bytes, records, first seq, last seq, last id) of file ``name``; records must pass ``after``."""
        good = count = 0
        first = last = -1
        last_id = None
        with open(self._path(name), "rb") as f:
            while True:
                h = self._read_header(f)
                if h is None:
                    break
                n, crc, seq = h
                if not 0 < n <= wire.MAX_TX_BYTES or seq <= after:
                    break
                body = self._read_body(f, n)
                if body is None or _crc(self._hv, body) != crc:
                    break
                after = last = seq
                if first < 0:
                    first = seq
                last_id = bytes(self._hv[16:HEADER_BYTES])
                good += HEADER_BYTES + n
                count += 1
        return good, count, first, last, last_id

    def _cut(self, name, good, size):
        """Keep the first ``good`` bytes of ``name``: copy them aside, then rename over it."""
        self.repaired.append((name, good, size - good))
        if good == 0:
            self._remove(name)
            return
        buf = self._bv[:_COPY]
        with open(self._path(name), "rb") as src, open(self._path(REPAIR_TMP), "wb") as dst:
            left = good
            while left:
                k = src.readinto(buf[: min(_COPY, left)])
                dst.write(buf[:k])
                left -= k
        os.rename(self._path(REPAIR_TMP), self._path(name))

    def _open(self):
        try:
            os.mkdir(self.root)
        except OSError:
            pass
        self._remove(STATE_TMP)
        self._remove(REPAIR_TMP)
        segs, ring = [], []
        for name in os.listdir(self.root):
            k = _number(name, "j")
            if k >= 0:
                segs.append(k)
            k = _number(name, "r")
            if k >= 0:
                ring.append(k)
        segs.sort()
        ring.sort()
        st = self._read_state()
        if st:
            limit, freed, last1, last_id = st
        else:
            self.state_lost = st == ()
            limit, freed, last1, last_id = 0, 0, 0, ZERO_ID
        self._freed = freed
        self._last = last1 - 1
        self.prev = last_id
        after = -1
        for k in segs:
            name = SEGMENT % k
            size = self._size(name)
            good, count, first, last, lid = self._scan(name, after)
            if good != size:
                self._cut(name, good, size)
            if count:
                self._segs.append([k, first, last, good, count])
                after = last
                if last > self._last:
                    self._last, self.prev = last, lid
        for k in ring:
            self._ring.append([k, self._size(RING % k)])
        if ring and (not segs or ring[-1] > segs[-1]):
            # the newest record may have been freed already
            name = RING % ring[-1]
            good, count, first, last, lid = self._scan(name, -1)
            if count and last > self._last:
                self._last, self.prev = last, lid
        self._num = max(segs[-1] if segs else -1, ring[-1] if ring else -1)
        if self._last >= limit:  # the state file was lost: start past every record
            limit = self._last + 1
        self._limit = limit
        self._next = limit  # numbers below the limit may have been handed out before the reboot
        self._settle()

    def _settle(self):
        """Finish a free a power cut interrupted: acked segments into the ring, the ring within size."""
        while self._segs and self._segs[0][2] < self._freed:
            self._to_ring(self._segs.pop(0))
        total = 0
        for r in self._ring:
            total += r[1]
        while self._ring and total > self.ring_bytes:
            k, size = self._ring.pop(0)
            self._remove(RING % k)
            total -= size
        self._head_freed = self._freed_bytes()

    def _freed_bytes(self):
        # headers only: the freed records at the front of the oldest pending file
        if not self._segs or self._segs[0][1] >= self._freed:
            return 0
        used = 0
        with open(self._path(SEGMENT % self._segs[0][0]), "rb") as f:
            while True:
                h = self._read_header(f)
                if h is None or h[2] >= self._freed:
                    break
                used += HEADER_BYTES + h[0]
                f.seek(h[0], 1)
        return used

    def _to_ring(self, seg):
        os.rename(self._path(SEGMENT % seg[0]), self._path(RING % seg[0]))
        self._ring.append([seg[0], seg[3]])

    # -- writing

    def reserve_seq(self):
        """``(seq, skipped)``: the next sequence number, and how many were skipped before it.

        Every ``reserve`` numbers the state file is rewritten first, so a
        number is handed out only once it is on flash as reserved.
        """
        if self._next >= self._limit:
            self.sync()  # the state names the last record as prev: it must be on flash first
            self._write_state(self._next + self.reserve)
        seq = self._next
        self._next += 1
        return seq, seq - (self._last + 1)

    def append(self, seq, tx_id, tx_bytes):
        """Add one record; it is on flash for sure after ``sync()``."""
        n = len(tx_bytes)
        if not 0 < n <= wire.MAX_TX_BYTES or len(tx_id) != wire.HASH_BYTES:
            raise ValueError("record of %d bytes or id of %d" % (n, len(tx_id)))
        if not self._last < seq < self._next:
            raise ValueError("seq %d was not reserved after %d" % (seq, self._last))
        size = HEADER_BYTES + n
        used = self.pending_bytes()
        if used + size > self.quota:
            raise JournalFull("journal full: %d of %d bytes" % (used, self.quota))
        if self._head is None:
            self._reopen_head()
        head = self._segs[-1] if self._segs and self._head is not None else None
        if head is None or head[3] + size > self.segment_bytes:
            self._rotate()
            head = None
        struct.pack_into(HEADER, self._hdr, 0, n, 0, seq, tx_id)
        struct.pack_into("<I", self._hdr, 4, _crc(self._hv, tx_bytes))
        self._head.write(self._hdr)
        self._head.write(tx_bytes)
        if head is None:
            self._segs.append([self._num, seq, seq, size, 1])
        else:
            head[2] = seq
            head[3] += size
            head[4] += 1
        self._last = seq
        self.prev = bytes(tx_id)
        return seq

    def _rotate(self):
        """Close the head segment; the next append starts a new file."""
        if self._head is not None:
            self._head.close()
            self._head = None
        self._num += 1
        self._head = open(self._path(SEGMENT % self._num), "wb")

    def _reopen_head(self):
        # after a reboot, appends go on in the newest segment while it has room
        if self._segs and self._segs[-1][3] < self.segment_bytes:
            self._head = open(self._path(SEGMENT % self._segs[-1][0]), "ab")

    def sync(self):
        """Commit what was appended: after it returns, a power cut loses none of it."""
        if self._head is not None:
            self._head.flush()

    def close(self):
        if self._head is not None:
            self._head.close()
            self._head = None

    # -- reading out

    def _records(self, names, after, below=-1):
        for name in names:
            with open(self._path(name), "rb") as f:
                while True:
                    h = self._read_header(f)
                    if h is None:
                        break
                    n, crc, seq = h
                    if seq <= after:
                        f.seek(n, 1)
                        continue
                    if 0 <= below <= seq:
                        break
                    body = self._read_body(f, n)
                    yield seq, self._hv[16:HEADER_BYTES], body

    def pending(self):
        """``(seq, tx id, bytes)`` of every record not yet freed, oldest first (views, valid until the next)."""
        self.sync()
        names = [SEGMENT % s[0] for s in self._segs]
        return self._records(names, self._freed - 1)

    def retained(self):
        """``(seq, tx id, bytes)`` of freed records still on flash, oldest first (views, valid until the next).

        The ring's files, then the freed head of the oldest pending file
        (a segment goes into the ring once all of it is freed).
        """
        names = [RING % r[0] for r in self._ring]
        if self._segs and self._segs[0][1] < self._freed:
            names.append(SEGMENT % self._segs[0][0])
        return self._records(names, -1, self._freed)

    def record_for(self, seq):
        """``(bytes, tx id)`` of the pending record ``seq``, or None (for ``ack.check_ack``)."""
        for s in self._segs:
            if s[1] <= seq <= s[2]:
                for q, tx_id, body in self._records([SEGMENT % s[0]], seq - 1):
                    if q == seq:
                        return bytes(body), bytes(tx_id)
                    return None
        return None

    def pending_bytes(self):
        """Bytes the pending records take on flash (what the quota bounds); no file is read."""
        used = -self._head_freed
        for s in self._segs:
            used += s[3]
        return used

    def usage(self):
        """``(bytes, records)`` of pending records on flash, for heartbeats."""
        used = self.pending_bytes()
        count = 0
        for s in self._segs:
            count += s[4]
        if self._segs and self._segs[0][1] < self._freed:
            for q, _i, _b in self._records([SEGMENT % self._segs[0][0]], -1):
                if q < self._freed:
                    count -= 1
        return used, count

    def free_through(self, ack_bytes, node_keys, device_id, segment):
        """Free records up to the acked one if ``ack_bytes`` is a valid block ack; returns how many.

        Anything else raises ``ln.ack.AckError`` and frees nothing.
        """
        from . import ack

        a = ack.check_ack(ack_bytes, node_keys, device_id, segment, self.record_for)
        return self._free(a.seq)

    def _free(self, seq):
        """Free through ``seq`` (only after a checked ack): state first, then segments into the ring."""
        if seq + 1 <= self._freed:
            return 0
        if seq > self._last:
            raise ValueError("seq %d was never appended" % seq)
        before = self.usage()[1]
        self.sync()
        self._freed = seq + 1
        self._write_state(self._limit)
        if self._head is not None and self._segs and self._segs[-1][2] <= seq:
            self._head.close()
            self._head = None
        self._settle()
        return before - self.usage()[1]
