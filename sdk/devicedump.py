"""``lightnode device dump``: read a board's journal and retention ring, and check them against the ledger.

The device keeps every signed transaction in its journal until a block
ack frees it, and freed records a while longer in a retention ring, like
a flight recorder (docs/journal.md has the on-flash format, docs/device-dump.md
this command). Here the journal is read in CPython, exactly as the board
reads it at boot (a torn tail ends a file), and each record is looked up
in the ledger under its device and sequence number:

- ``committed``: the ledger holds the same transaction (same id) there;
- ``pending``: not freed yet and not (yet) on the ledger: still to be sent;
- ``missing``: freed by an ack, yet the ledger has nothing there (an error);
- ``set-aside``: freed, not on the ledger, and the device's own committed
  ``EV_SET_ASIDE`` event names it (the node NACKed it; ``reason`` says why);
- ``different``: the ledger holds another transaction there (an error: a fork);
- ``corrupt``: the record's bytes are not the transaction its id names (an error).

    from lightnode import devicedump
    snap = devicedump.read_journal("boards/n1")           # a unix board, or a copied journal folder
    report = devicedump.check(snap, open_store("ledger.db"))
    report.ok, report.counts()

    lightnode device dump boards/n1 --store sqlite:///ledger.db
    lightnode device dump --port /dev/ttyACM0 --store ledger.db --json
"""

from __future__ import annotations

import binascii
import json
import os
import struct
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from lightnode.errors import LightnodeError
from lightnode.firmware.ln import journal as fmt
from lightnode.firmware.ln import keystore

STATUSES = ("committed", "pending", "set-aside", "missing", "different", "corrupt")
BAD = ("missing", "different", "corrupt")
JOURNAL_PATH = "%s/%s" % (keystore.DIR, "journal")  # where the firmware keeps it (firmware/main.py)


class DumpError(LightnodeError):
    """A journal that cannot be read out, or a board that does not hand it over."""


@dataclass
class Record:
    """One record of the journal (``freed`` False) or of the retention ring (``freed`` True)."""

    seq: int
    tx_id: bytes
    data: bytes
    file: str
    freed: bool
    status: str = ""
    ledger_tx_id: bytes | None = None
    kind: int | None = None
    device: bytes | None = None
    segment: str | None = None
    reason: str | None = None  # set aside: the NACK's reason, as the device's event names it

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "tx_id": self.tx_id.hex(),
            "bytes": len(self.data),
            "file": self.file,
            "freed": self.freed,
            "kind": self.kind,
            "status": self.status,
            "ledger_tx_id": None if self.ledger_tx_id is None else self.ledger_tx_id.hex(),
            "reason": self.reason,
        }


@dataclass
class Snapshot:
    """What a journal folder holds: its state file, its records, and any torn tails."""

    path: Path
    limit: int  # every seq below it may have been handed out; the next boot starts here
    freed: int  # records below it were freed by an ack
    last: int  # highest seq on flash (-1: none)
    prev: bytes  # the id the next transaction chains to
    state: str  # "ok", "missing" (no state file) or "lost" (unreadable: rebuilt from the records)
    records: list[Record] = field(default_factory=list)
    torn: list[tuple[str, int, int]] = field(default_factory=list)  # (file, good bytes, bytes cut)

    @property
    def pending(self) -> list[Record]:
        return [r for r in self.records if not r.freed]

    @property
    def retained(self) -> list[Record]:
        return [r for r in self.records if r.freed]

    @property
    def next_skip(self) -> int:
        """How many numbers the next boot skips: it signs ``limit`` next, after ``last``."""
        return self.limit - (self.last + 1)


def _number(name: str, prefix: str) -> int:
    if len(name) != 9 or name[0] != prefix or not name[1:].isdigit():
        return -1
    return int(name[1:])


def _scan(path: Path, after: int) -> tuple[list[tuple[int, bytes, bytes]], int]:
    """The good records of one file, as the board's journal reads them at open; and the good bytes."""
    raw = path.read_bytes()
    out: list[tuple[int, bytes, bytes]] = []
    at = 0
    while at + fmt.HEADER_BYTES <= len(raw):
        hdr = raw[at : at + fmt.HEADER_BYTES]
        n, crc, seq, tx_id = struct.unpack(fmt.HEADER, hdr)
        if not 0 < n <= fmt.wire.MAX_TX_BYTES or seq <= after:
            break
        body = raw[at + fmt.HEADER_BYTES : at + fmt.HEADER_BYTES + n]
        if len(body) != n or fmt._crc(hdr, body) != crc:
            break
        out.append((seq, bytes(tx_id), bytes(body)))
        after = seq
        at += fmt.HEADER_BYTES + n
    return out, at


def journal_dir(path: str | Path) -> Path:
    """The journal folder: ``path`` itself, or a unix board's ``lightnode/journal`` (or a copy's ``journal``)."""
    p = Path(path)
    for cand in (p / JOURNAL_PATH.lstrip("/"), p / "journal", p):
        if cand.is_dir() and ((cand / fmt.STATE_FILE).exists() or any(
                _number(x.name, "j") >= 0 or _number(x.name, "r") >= 0 for x in cand.iterdir())):
            return cand
    raise DumpError("%s holds no journal (no %s, no journal/, no state or segment files)"
                    % (p, JOURNAL_PATH.lstrip("/")))


def read_journal(path: str | Path) -> Snapshot:
    """Read a journal folder (or a board directory holding one) without changing it."""
    d = journal_dir(path)
    raw_state = None
    sp = d / fmt.STATE_FILE
    state = "missing"
    if sp.exists():
        raw_state = sp.read_bytes()
        state = "lost"
    limit = freed = last1 = 0
    last_id = fmt.ZERO_ID
    if raw_state is not None and len(raw_state) == fmt.STATE_BYTES:
        magic, lim, fr, l1, lid, crc = struct.unpack(fmt.STATE, raw_state)
        if magic == fmt.STATE_MAGIC and crc == binascii.crc32(raw_state[:60]) & 0xFFFFFFFF:
            limit, freed, last1, last_id, state = lim, fr, l1, lid, "ok"
    names = [x.name for x in d.iterdir()]
    segs = sorted(k for k in (_number(n, "j") for n in names) if k >= 0)
    ring = sorted(k for k in (_number(n, "r") for n in names) if k >= 0)
    snap = Snapshot(d, 0, freed, last1 - 1, bytes(last_id), state)
    for k in ring:  # freed whole files, oldest first; each checked on its own
        name = fmt.RING % k
        recs, good = _scan(d / name, -1)
        size = (d / name).stat().st_size
        if good != size:
            snap.torn.append((name, good, size - good))
        snap.records += [Record(s, i, b, name, True) for s, i, b in recs]
        if recs and recs[-1][0] > snap.last and (not segs or k > segs[-1]):
            snap.last, snap.prev = recs[-1][0], recs[-1][1]
    after = -1
    for k in segs:
        name = fmt.SEGMENT % k
        recs, good = _scan(d / name, after)
        size = (d / name).stat().st_size
        if good != size:
            snap.torn.append((name, good, size - good))
        snap.records += [Record(s, i, b, name, s < freed) for s, i, b in recs]
        if recs:
            after = recs[-1][0]
            if after > snap.last:
                snap.last, snap.prev = after, recs[-1][1]
    snap.limit = max(limit, snap.last + 1)
    return snap


def _decode(rec: Record) -> bool:
    """Fill in kind, device and segment; False when the bytes are not the transaction the id names."""
    from lightnode import wire

    try:
        tx = wire.decode(rec.data)
    except LightnodeError:
        return False
    rec.kind, rec.device, rec.segment = tx.kind, tx.device_id, tx.segment
    return tx.id == rec.tx_id and tx.seq == rec.seq


@dataclass
class Report:
    snapshot: Snapshot
    device: bytes | None
    segment: str | None

    @property
    def records(self) -> list[Record]:
        return self.snapshot.records

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(STATUSES, 0)
        for r in self.records:
            c[r.status] = c.get(r.status, 0) + 1
        return c

    @property
    def ok(self) -> bool:
        return not any(r.status in BAD for r in self.records)

    def as_dict(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "journal": str(s.path),
            "device": None if self.device is None else self.device.hex(),
            "segment": self.segment,
            "state": s.state,
            "seq_limit": s.limit,
            "freed_through": s.freed - 1,
            "last_seq": s.last,
            "next_skip": s.next_skip,
            "torn": [{"file": f, "good_bytes": g, "cut_bytes": c} for f, g, c in s.torn],
            "counts": self.counts(),
            "ok": self.ok,
            "records": [r.as_dict() for r in self.records],
        }


def check(snap: Snapshot, store: Any) -> Report:
    """Give each record its status against ``store`` (a ``lightnode.ledger.store.Store``)."""
    device = segment = None
    aside: dict[int, str] | None = None
    for r in snap.records:
        if not _decode(r):
            r.status = "corrupt"
            continue
        if device is None:
            device, segment = r.device, r.segment
        elif (r.device, r.segment) != (device, segment):
            r.status = "corrupt"  # one board, one device: a stranger's record is not its own
            continue
        e = store.entry_by_seq("seg:%s" % r.segment, r.device, r.seq)
        r.ledger_tx_id = None if e is None else e.tx_id
        if e is None and r.freed:
            if aside is None:
                aside = set_aside(store, r.device, r.segment)
            r.reason = aside.get(r.seq)
            r.status = "missing" if r.reason is None else "set-aside"
        elif e is None:
            r.status = "pending"
        elif e.tx_id == r.tx_id:
            r.status = "committed"
        else:
            r.status = "different"
    return Report(snap, device, segment)


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def fetch_journal(port: str, dest: str | Path, run: Runner = subprocess.run,
                  mpremote: str | None = None, timeout: float = 300) -> Path:
    """Copy ``/lightnode/journal`` off the board on serial ``port`` with mpremote, into ``dest``."""
    from lightnode.provision import find_mpremote

    argv = [mpremote or find_mpremote(), "connect", port, "fs", "cp", "-r", ":" + JOURNAL_PATH,
            str(dest) + os.sep]
    try:
        proc = run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise DumpError("mpremote is not installed (pip install mpremote)") from None
    except subprocess.TimeoutExpired:
        raise DumpError("%s: the journal was not copied within %ss" % (port, timeout)) from None
    if proc.returncode != 0:
        tail = ((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()[-3:]
        raise DumpError("%s: mpremote fs cp failed: %s" % (port, " / ".join(tail) or "no output"))
    return journal_dir(dest)


def _print(report: Report) -> None:
    s = report.snapshot
    click.echo("journal %s: device %s, segment %s, state file %s" % (
        s.path, report.device.hex() if report.device else "-", report.segment or "-", s.state))
    click.echo("  seq limit %d (next boot skips %d), freed through %d, last %d" % (
        s.limit, s.next_skip, s.freed - 1, s.last))
    for f, good, cut in s.torn:
        click.echo("  torn tail: %s cut at %d (%d bytes)" % (f, good, cut))
    for r in report.records:
        extra = ""
        if r.status == "different" and r.ledger_tx_id is not None:
            extra = "  ledger %s" % r.ledger_tx_id.hex()[:16]
        label = "set aside (%s)" % r.reason if r.status == "set-aside" else r.status
        click.echo("  %8d  %-7s %-5s %-9s %s%s" % (
            r.seq, "ring" if r.freed else "pending", r.kind if r.kind is not None else "-",
            label, r.tx_id.hex()[:16], extra))
    c = report.counts()
    click.echo("%d records: %s" % (len(report.records), ", ".join(
        "%d %s" % (c[k], k) for k in STATUSES if c.get(k))) if report.records else "no records")


@click.command("dump")
@click.argument("directory", required=False, type=click.Path(file_okay=False, exists=True))
@click.option("--port", help="A board on this serial port: copy its journal off with mpremote first.")
@click.option("--store", "store_url", envvar="LIGHTNODE_STORE", default="lightnode-ledger.db",
              show_default=True, help="Ledger store: sqlite:///path, a path, or postgresql://...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def dump(directory: str | None, port: str | None, store_url: str, as_json: bool) -> None:
    """Read a board's journal and retention ring and check every record against the ledger.

    DIRECTORY is a unix-port board (or a journal folder copied off a board);
    --port reads a board over mpremote instead. Exit 1 if a freed record is
    not on the ledger, the ledger holds another transaction under a
    record's number, or a record is corrupt.
    """
    from lightnode.ledgercli import _open

    if (directory is None) == (port is None):
        raise click.UsageError("give DIRECTORY or --port (one of them)")
    with tempfile.TemporaryDirectory(prefix="lightnode-dump-") as tmp:
        try:
            src = fetch_journal(port, tmp) if port else Path(str(directory))
            snap = read_journal(src)
        except (DumpError, OSError) as e:
            raise click.ClickException(str(e)) from e
        store = _open(store_url)
        try:
            report = check(snap, store)
        finally:
            store.close()
        if as_json:
            click.echo(json.dumps(report.as_dict(), indent=2))
        else:
            _print(report)
    if not report.ok:
        bad = [r for r in report.records if r.status in BAD]
        raise click.ClickException("%d record%s not as the ledger has them (first: seq %d, %s)" % (
            len(bad), "" if len(bad) == 1 else "s", bad[0].seq, bad[0].status))


def ledger_tx_ids(store: Any, device: bytes, segment: str) -> dict[int, bytes]:
    """seq -> tx id of everything the ledger holds for the device (for tests and tools)."""
    return {e.seq: e.tx_id for e in store.entries(chain="seg:%s" % segment, device=device)}


def set_aside(store: Any, device: bytes | None, segment: str | None) -> dict[int, str]:
    """seq -> NACK reason of every record the device's committed EV_SET_ASIDE events name."""
    from lightnode import wire
    from lightnode.firmware.ln import ack
    from lightnode.firmware.ln import wire as spec

    out: dict[int, str] = {}
    if device is None:
        return out
    for e in store.entries(chain="seg:%s" % segment, device=device, kind=spec.KIND_EVENT):
        try:
            body = wire.decode(e.data).body
        except LightnodeError:
            continue
        if type(body) is not dict or body.get(spec.E_TYPE) != spec.EV_SET_ASIDE:
            continue
        seq, why = body.get(spec.E_VALUE), body.get(spec.E_LIMIT)
        if type(seq) is int and 0 <= seq < (e.seq or 0):
            ok = type(why) is int and 0 <= why < len(ack.NACK_REASONS)
            out[seq] = ack.NACK_REASONS[why] if ok else "reason %r" % (why,)
    return out
