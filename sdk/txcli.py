"""``lightnode tx``: look inside signed transactions, and check them against a device key.

A FILE is either a wire transaction (the CBOR array ``[envelope,
payload]``, as sent over MQTT or kept in a journal) or a COSE envelope
``NNNNNN.cose`` whose payload sits beside it as ``NNNNNN.cbor`` (how
``lightnode demo --out DIR`` writes them, with ``device.pub``). Either
file of such a pair may be named.

    lightnode tx inspect out/000001.cose
    lightnode tx inspect --json capture.bin
    lightnode tx verify out/*.cose --key-file out/device.pub
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from lightnode import keys
from lightnode import wire as codec
from lightnode.errors import WireError
from lightnode.firmware.ln import wire as spec
from rich.console import Console
from rich.table import Table

ENVELOPE_SUFFIX = ".cose"
PAYLOAD_SUFFIX = ".cbor"
_ALG_NAMES = {spec.ALG_EDDSA: "EdDSA", spec.ALG_ED25519: "Ed25519"}


@dataclass
class Found:
    """What one FILE turned out to be, and what came of decoding it."""

    path: Path
    what: str  # one line: what was read
    tx: codec.Transaction | None = None
    envelope: codec.Sign1 | None = None  # an envelope whose payload file is missing
    error: str | None = None  # why it could not be read or decoded
    reason: str | None = None  # the wire reason, when the bytes were refused


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise OSError("no such file") from None
    except IsADirectoryError:
        raise OSError("a directory, not a file") from None
    except OSError as e:
        raise OSError(e.strerror or str(e)) from None


def load(path: Path) -> Found:
    """Read FILE, work out what it is (and find its partner file), decode it."""
    try:
        data = _read(path)
    except OSError as e:
        return Found(path, "unreadable", error=f"cannot read {path}: {e}")
    first = data[:1]
    text = data.strip()
    if text and len(text) <= 200 and all(c in b"0123456789abcdefABCDEF" for c in text):
        return Found(path, "hex text", error="hex text (a key file?), not a transaction")
    envelope_path = payload_path = None
    if first == b"\xd2" or (path.suffix == ENVELOPE_SUFFIX and first != b"\x82"):
        envelope_path, payload_path = path, path.with_suffix(PAYLOAD_SUFFIX)
    elif (
        path.suffix == PAYLOAD_SUFFIX
        and first != b"\x82"
        and path.with_suffix(ENVELOPE_SUFFIX).is_file()
    ):
        envelope_path, payload_path = path.with_suffix(ENVELOPE_SUFFIX), path
    if envelope_path is None or payload_path is None:
        what = f"wire transaction, {len(data)} bytes"
        try:
            return Found(path, what, tx=codec.decode(data))
        except WireError as e:
            return Found(path, what, error=str(e), reason=e.reason)
    try:
        env = data if envelope_path == path else _read(envelope_path)
    except OSError as e:
        return Found(path, "payload file", error=f"cannot read {envelope_path}: {e}")
    try:
        payload = data if payload_path == path else _read(payload_path)
    except OSError as e:
        what = f"COSE envelope, {len(env)} bytes; payload file {payload_path.name} {e}"
        try:
            return Found(path, what, envelope=codec.decode_cose_sign1(env))
        except WireError as err:
            return Found(path, what, error=str(err), reason=err.reason)
    what = (
        f"COSE envelope {envelope_path.name} ({len(env)} bytes)"
        f" + payload {payload_path.name} ({len(payload)} bytes)"
    )
    try:
        return Found(path, what, tx=codec.from_parts(env, payload))
    except WireError as e:
        return Found(path, what, error=str(e), reason=e.reason)


# -- what a transaction says ---------------------------------------------------------


def _iso(us: int) -> str:
    try:
        t = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(microseconds=us)
    except OverflowError:
        return f"{us} us since 1970 (beyond the calendar)"
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _jsonable(x: Any) -> Any:
    if isinstance(x, bytes):
        return x.hex()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def _readings(tx: codec.Transaction) -> tuple[list[dict[str, Any]] | None, str | None]:
    try:
        series = tx.readings()
    except ImportError:  # pragma: no cover - the readings codec ships with the SDK
        return None, "readings codec not installed"
    except WireError as e:
        return None, str(e)
    out = []
    for s in series:
        points = []
        for p in s.points:
            v = p.values
            points.append(
                {
                    "id": p.id,
                    "order": p.order,
                    "n": len(v),
                    "first": v[0] if v else None,
                    "last": v[-1] if v else None,
                    "min": min(p.mins if p.mins is not None else v) if v else None,
                    "max": max(p.maxs if p.maxs is not None else v) if v else None,
                    "own_quality": p.quality is not None,
                }
            )
        out.append(
            {
                "t0": s.times[0],
                "t0_utc": _iso(s.times[0]),
                "period_us": s.period,
                "samples": s.n,
                "span_us": s.times[-1] - s.times[0],
                "late_samples": sum(
                    1 for i in range(1, s.n) if s.times[i] - s.times[i - 1] != s.period
                ),
                "not_good": sum(1 for q in s.quality if q != spec.Q_GOOD),
                "gaps": [list(g) for g in s.gaps],
                "agg": s.agg,
                "points": points,
            }
        )
    return out, None


def describe(found: Found) -> dict[str, Any]:
    """Everything ``inspect`` shows, as JSON-ready data."""
    d: dict[str, Any] = {"file": str(found.path), "found": found.what}
    if found.error:
        d["error"] = found.error
        if found.reason:
            d["reason"] = found.reason
    if found.envelope is not None:
        e = found.envelope
        d["envelope"] = {
            "bytes": len(e.raw),
            "alg": e.alg,
            "kid": e.kid.hex() if e.kid else None,
            "protected": _jsonable(e.header),
            "unprotected": _jsonable(e.unprotected),
            "payload": e.payload.hex() if e.payload is not None else None,
            "hash_envelope": e.is_hash_envelope,
            "signature": e.signature.hex(),
        }
    tx = found.tx
    if tx is None:
        return d
    d.update(
        id=tx.id.hex(),
        version=tx.version,
        device=tx.device_id.hex(),
        segment=tx.segment,
        seq=tx.seq,
        prev=tx.prev.hex(),
        first=tx.prev == bytes(spec.HASH_BYTES),
        time={
            "us": tx.time.us,
            "utc": _iso(tx.time.us),
            "quality": tx.time.quality,
            "quality_name": tx.time.quality_name,
            "uncertainty_us": tx.time.uncertainty,
        },
        kind=tx.kind,
        kind_name=tx.kind_name,
        envelope={
            "bytes": len(tx.envelope),
            "tag": spec.COSE_SIGN1_TAG,
            "alg": tx.alg,
            "alg_name": _ALG_NAMES.get(tx.alg, str(tx.alg)),
            "kid": tx.kid.hex(),
            "payload_hash_alg": tx.header[spec.H_PAYLOAD_HASH_ALG],
            "preimage_content_format": tx.header[spec.H_PREIMAGE_CTY],
            "payload_hash": tx.payload_hash.hex(),
            "signature": tx.signature.hex(),
            "signed_bytes": len(tx.signed_bytes),
        },
        payload_bytes=len(tx.payload),
        transaction_bytes=len(tx.raw),
    )
    if tx.kind == spec.KIND_READINGS:
        series, err = _readings(tx)
        if series is not None:
            d["series"] = series
        else:
            d["readings_error"] = err
    else:
        d["body"] = _jsonable(tx.body)
    return d


def _key_options() -> Any:
    def deco(f: Any) -> Any:
        f = click.option(
            "--key-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="File with the device's public key in hex (such as device.pub).",
        )(f)
        f = click.option(
            "--key",
            "key_hex",
            metavar="HEX",
            help="The device's Ed25519 public key, 64 hex digits.",
        )(f)
        return f

    return deco


def _public_key(key_hex: str | None, key_file: Path | None, required: bool) -> bytes | None:
    if key_hex and key_file:
        raise click.UsageError("give --key or --key-file, not both")
    try:
        if key_hex:
            return keys.parse_public_key(key_hex)
        if key_file:
            return keys.read_public_key(key_file)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--key" if key_hex else "--key-file") from None
    if required:
        raise click.UsageError("a public key is needed: --key HEX or --key-file PATH")
    return None


def _check(found: Found, key: bytes) -> str | None:
    """None if FILE verifies with ``key``, else the one-line reason."""
    if found.error:
        return found.error
    if found.tx is not None:
        try:
            found.tx.verify(key)
        except WireError as e:
            found.reason = e.reason
            return str(e)
        return None
    if found.envelope is None:  # load() gives a transaction, an envelope or an error
        return "nothing decoded"
    try:
        found.envelope.verify(key)
    except WireError as e:
        found.reason = e.reason
        return str(e)
    return "payload file missing: the envelope's signature is good, but what it hashes cannot be checked"


def _distinct(files: tuple[Path, ...]) -> list[Path]:
    """FILES, without a payload file whose envelope file is named too (one pair, one check)."""
    named = set(files)
    return [
        p
        for p in files
        if not (p.suffix == PAYLOAD_SUFFIX and p.with_suffix(ENVELOPE_SUFFIX) in named)
    ]


@click.group()
def tx() -> None:
    """Inspect and verify transactions that light nodes signed."""


@tx.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one JSON array.")
@_key_options()
def inspect(
    files: tuple[Path, ...], as_json: bool, key_hex: str | None, key_file: Path | None
) -> None:
    """Show what each FILE holds: header, device time, kind, id, envelope, readings.

    With a key, also say whether each one verifies. Exits non-zero if a
    FILE cannot be read or decoded (or, with a key, does not verify).
    """
    key = _public_key(key_hex, key_file, required=False)
    failed = False
    out = []
    for path in _distinct(files):
        found = load(path)
        d = describe(found)
        if found.error:
            failed = True
        elif key is not None:
            why = _check(found, key)
            d["verified"] = why is None
            if why:
                d["verify_error"] = why
                failed = True
        out.append(d)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        console = Console(highlight=False, soft_wrap=True)
        for d in out:
            _show(console, d)
    if failed:
        raise SystemExit(1)


def _show(console: Console, d: dict[str, Any]) -> None:
    console.print(f"[bold]{d['file']}[/bold]: {d['found']}")
    if "error" in d:
        console.print(f"  [red]refused[/red]: {d['error']}")
    if "envelope" in d and "id" not in d:
        e = d["envelope"]
        console.print(f"  envelope only: alg {e['alg']}, kid {e['kid']}, {e['bytes']} bytes")
        if e["hash_envelope"]:
            console.print(f"  payload SHA-256 {e['payload']}")
    if "id" not in d:
        if "verified" in d:
            console.print(
                "  verify: "
                + ("[green]ok[/green]" if d["verified"] else f"[red]{d['verify_error']}[/red]")
            )
        console.print()
        return
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim")
    t.add_column()
    tm = d["time"]
    env = d["envelope"]
    t.add_row("tx id", d["id"])
    t.add_row("device", f"{d['device']}  segment {d['segment']}")
    t.add_row("seq", str(d["seq"]))
    t.add_row("prev", d["prev"] + ("  (first transaction)" if d["first"] else ""))
    t.add_row("time", f"{tm['utc']}  {tm['quality_name']} ±{tm['uncertainty_us']} us")
    t.add_row("kind", f"{d['kind']} {d['kind_name']}")
    t.add_row(
        "envelope",
        f"COSE_Sign1 tag {env['tag']}, alg {env['alg']} ({env['alg_name']}), kid {env['kid']}, "
        f"payload hash SHA-256 ({env['payload_hash_alg']}) of content format {env['preimage_content_format']}",
    )
    t.add_row(
        "sizes",
        f"transaction {d['transaction_bytes']} B, envelope {env['bytes']} B, payload {d['payload_bytes']} B, "
        f"Ed25519 signs {env['signed_bytes']} B",
    )
    t.add_row("payload hash", env["payload_hash"])
    t.add_row("signature", env["signature"])
    if "verified" in d:
        t.add_row(
            "verify", "[green]ok[/green]" if d["verified"] else f"[red]{d['verify_error']}[/red]"
        )
    console.print(t)
    if "series" in d:
        for i, s in enumerate(d["series"]):
            extra = []
            if s["agg"]:
                extra.append(f"decimated, {s['agg']} per sample")
            if s["gaps"]:
                extra.append(f"gaps {s['gaps']}")
            if s["late_samples"]:
                extra.append(f"{s['late_samples']} off-period steps")
            if s["not_good"]:
                extra.append(f"{s['not_good']} samples not good")
            console.print(
                f"  series {i}: {s['samples']} samples from {s['t0_utc']}, period {s['period_us']} us"
                + ("; " + "; ".join(extra) if extra else "")
            )
            pt = Table(box=None, padding=(0, 2), show_edge=False)
            for col in ("point", "order", "n", "first", "last", "min", "max"):
                pt.add_column(col, justify="right")
            for p in s["points"]:
                pt.add_row(
                    str(p["id"]),
                    str(p["order"]),
                    str(p["n"]),
                    str(p["first"]),
                    str(p["last"]),
                    str(p["min"]),
                    str(p["max"]),
                )
            console.print(pt)
    elif "readings_error" in d:
        console.print(f"  [red]readings body refused[/red]: {d['readings_error']}")
    elif "body" in d:
        console.print(f"  body: {json.dumps(d['body'])}")
    console.print()


@tx.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_key_options()
def verify(files: tuple[Path, ...], key_hex: str | None, key_file: Path | None) -> None:
    """Check each FILE was signed by the device with this key.

    One line per FILE: "ok" with the transaction's device, seq and id, or
    the reason it does not verify. Exits 0 only if every FILE verifies.
    """
    key = _public_key(key_hex, key_file, required=True) or b""
    bad = 0
    for path in _distinct(files):
        found = load(path)
        why = _check(found, key)
        if why is None and found.tx is not None:
            t = found.tx
            click.echo(
                f"ok    {path}: device {t.device_id.hex()} seq {t.seq} {t.kind_name}, id {t.id.hex()}"
            )
        else:
            bad += 1
            click.echo(f"FAIL  {path}: {why}")
    if bad:
        click.echo(f"{bad} of {len(_distinct(files))} did not verify", err=True)
        raise SystemExit(1)
