"""``lightnode ledger ...`` and ``lightnode audit``: read a ledger store, and re-verify one offline.

Times (``--since``, ``--until``) are microseconds since 1970 or ISO 8601
(UTC unless they say otherwise). ``--store`` is ``sqlite:///path``, a path,
or ``postgresql://...``; the default is the environment's LIGHTNODE_STORE,
then ``lightnode-ledger.db``.

    lightnode ledger chains
    lightnode ledger blocks seg:feeder-7 --json
    lightnode ledger tx --device 4c4e0001a5c3e701 --since 2025-01-01T00:00Z --kind event
    lightnode ledger flags --since 2025-01-01
    lightnode ledger flags --kind angle-drift --kind time-step --json
    lightnode audit --store postgresql://127.0.0.1/ledger --keys keys.json
    lightnode audit --store ledger.db --registry registry.db
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from lightnode.errors import LightnodeError
from lightnode.ledger import query
from lightnode.ledger.store import DEFAULT_URL, ENV_URL, Store, open_store
from rich.console import Console
from rich.table import Table

DEFAULT_STORE = DEFAULT_URL
ENV_STORE = ENV_URL


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _store_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store",
        "store_url",
        envvar=ENV_STORE,
        default=DEFAULT_STORE,
        show_default=True,
        help="Ledger store: sqlite:///path, a path, or postgresql://...",
    )(f)


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def _open(url: str) -> Store:
    if "://" not in url and not Path(url).exists():
        raise click.ClickException("no ledger store at %s" % url)
    try:
        return open_store(url)
    except (LightnodeError, ValueError) as e:
        raise click.ClickException(str(e)) from e


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return query.parse_time(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _print_json(rows: Any) -> None:
    click.echo(json.dumps(rows, indent=2, sort_keys=True))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    _console().print(t)


@click.group("ledger")
def ledger() -> None:
    """What a ledger store holds: chains, blocks, transactions, flags, rejections."""


@ledger.command("chains")
@_store_option
@_json_option
def chains_cmd(store_url: str, as_json: bool) -> None:
    """Every chain, its size, blocks, and how far it is final."""
    rows = query.chains(_open(store_url))
    if as_json:
        _print_json(rows)
        return
    _table(
        "chains",
        ["chain", "kind", "size", "final size", "blocks", "last checkpoint"],
        [
            [
                r["chain"],
                r["kind"],
                r["size"],
                r["final_size"],
                r["blocks"],
                query.iso(r["last_time"]),
            ]
            for r in rows
        ],
    )


@ledger.command("blocks")
@click.argument("chain")
@click.option("--since", callback=_time, help="Checkpoint time from (us or ISO 8601).")
@_store_option
@_json_option
def blocks_cmd(chain: str, since: int | None, store_url: str, as_json: bool) -> None:
    """The blocks of CHAIN (seg:<segment>, registry, operator, general): checkpoints and their witnesses."""
    rows = query.blocks(_open(store_url), chain, since)
    if as_json:
        _print_json(rows)
        return
    _table(
        "blocks of %s" % chain,
        ["height", "size", "root", "time", "final", "witnesses"],
        [
            [
                r["height"],
                r["size"],
                r["root"][:16],
                query.iso(r["time"]),
                "yes" if r["final"] else "no",
                " ".join(r["witnesses"]),
            ]
            for r in rows
        ],
    )


@ledger.command("tx")
@click.option("--device", help="Device id, hex.")
@click.option("--since", callback=_time, help="Device time from (us or ISO 8601).")
@click.option("--until", callback=_time, help="Device time until, exclusive.")
@click.option(
    "--kind", help="readings, event, operator, heartbeat, registration, summary, or a number."
)
@click.option("--chain", help="Only this chain (seg:<segment>).")
@click.option("--limit", type=int, default=1000, show_default=True)
@_store_option
@_json_option
def tx_cmd(
    device: str | None,
    since: int | None,
    until: int | None,
    kind: str | None,
    chain: str | None,
    limit: int,
    store_url: str,
    as_json: bool,
) -> None:
    """Committed transactions, with their flags and ledger time brackets."""
    try:
        dev = bytes.fromhex(device) if device else None
        k = query.parse_kind(kind) if kind else None
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    rows = query.transactions(_open(store_url), dev, since, until, k, chain, limit)
    if as_json:
        _print_json(rows)
        return
    _table(
        "transactions",
        ["chain", "index", "device", "seq", "kind", "device time", "flags", "bracket"],
        [
            [
                r["chain"],
                r["index"],
                r["device"],
                r["seq"],
                r["kind"],
                query.iso(r["device_time"]),
                ",".join(r["flags"]),
                "%s .. %s" % tuple(query.iso(t) or "-" for t in r["bracket"]),
            ]
            for r in rows
        ],
    )


@ledger.command("flags")
@click.option("--since", callback=_time, help="Flag time from (us or ISO 8601).")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="Only flags of this kind (gap, clock-back, fork, angle-drift, time-step, clock-bracket, "
    "operator-odd-hour, ...). Repeatable.",
)
@click.option("--device", help="Only flags on this device (hex id).")
@_store_option
@_json_option
def flags_cmd(
    since: int | None, kinds: tuple[str, ...], device: str | None, store_url: str, as_json: bool
) -> None:
    """Gaps, anomalies, time-analysis flags and forks (forks with both copies, in --json)."""
    rows = query.flags(_open(store_url), since)
    if kinds:
        rows = [r for r in rows if r["kind"] in kinds]
    if device is not None:
        rows = [r for r in rows if r["device"] == device.lower()]
    if as_json:
        _print_json(rows)
        return
    _table(
        "flags",
        ["time", "kind", "chain", "index", "device", "seq", "detail"],
        [
            [
                query.iso(r["time"]),
                r["kind"],
                r["chain"],
                r["index"],
                r["device"],
                r["seq"],
                r["detail"],
            ]
            for r in rows
        ],
    )


@ledger.command("rejections")
@click.option("--since", callback=_time, help="From (us or ISO 8601).")
@_store_option
@_json_option
def rejections_cmd(since: int | None, store_url: str, as_json: bool) -> None:
    """Refused input, counted per source and reason."""
    rows = query.rejections(_open(store_url), since)
    if as_json:
        _print_json(rows)
        return
    _table(
        "rejections",
        ["source", "reason", "count", "first", "last"],
        [
            [r["source"], r["reason"], r["count"], query.iso(r["first"]), query.iso(r["last"])]
            for r in rows
        ],
    )


def load_keys(path: str) -> dict[bytes, bytes]:
    """A JSON map of key id (hex: device ids, node and witness kids) to Ed25519 public key (hex)."""
    try:
        raw = json.loads(Path(path).read_text())
        if not isinstance(raw, dict):
            raise ValueError("a JSON object expected")
        keys = {bytes.fromhex(k): bytes.fromhex(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise click.ClickException("keys %s: %s" % (path, e)) from e
    for k, v in keys.items():
        if len(v) != 32:
            raise click.ClickException(
                "keys %s: the key of %s is %d bytes, not 32" % (path, k.hex(), len(v))
            )
    return keys


@click.command("audit")
@_store_option
@click.option(
    "--keys",
    "keys_path",
    type=click.Path(dir_okay=False, exists=True),
    help="JSON map: key id hex (devices, nodes, witnesses) -> Ed25519 public key hex.",
)
@click.option(
    "--registry",
    "registry_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Registry file: device keys by sequence number, node checkpoint keys by time.",
)
@_json_option
def audit(store_url: str, keys_path: str | None, registry_path: str | None, as_json: bool) -> None:
    """Re-verify a whole ledger store offline; exit 1 naming every failure.

    Transactions (decoding and signatures), leaf hashes, each chain's tree
    against each checkpoint, checkpoint signatures and the chain of previous
    header hashes, cosignatures and finality, the general chain's leaves,
    and the evidence behind every flag. With --registry, each device key
    is the one the registry gives for the transaction's sequence number,
    node keys are the registry's checkpoint keys (kid: first 8 bytes of
    SHA-256 of the key), a witness is another node than the producer, and
    the registry chain and the checkpoints' registry roots are checked
    against the registry. --keys and --registry may be given together.
    """
    from lightnode.ledger.audit import audit as run

    if keys_path is None and registry_path is None:
        raise click.UsageError("--keys or --registry (or both) is needed")
    keys = load_keys(keys_path) if keys_path else {}
    reg = None
    if registry_path is not None:
        from lightnode.registry import RegistryError, open_registry

        try:
            reg = open_registry(registry_path)
        except RegistryError as e:
            raise click.ClickException("registry %s: %s" % (registry_path, e)) from e
    report = run(_open(store_url), keys, reg)
    if as_json:
        _print_json(report.as_dict())
    else:
        con = _console()
        for name, s in sorted(report.chains.items()):
            con.print(
                "%-24s %6d entries %5d blocks %5d final"
                % (name, s["entries"], s["blocks"], s["final"])
            )
        con.print(
            "checked: "
            + ", ".join("%d %s" % (n, what) for what, n in sorted(report.checked.items()))
        )
        for f in report.failures:
            con.print("FAIL " + f)
        con.print("audit: %s" % ("ok" if report.ok else "%d failure(s)" % len(report.failures)))
    if not report.ok:
        sys.exit(1)
