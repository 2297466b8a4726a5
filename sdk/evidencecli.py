"""``lightnode evidence export`` and ``lightnode evidence verify``: evidence bundles, made and checked offline.

    lightnode evidence export --store ledger.db --registry registry.db \\
        --device 4c4e0001 --since 2025-01-01T00:00Z --kind event --out case-17.lnev
    lightnode evidence verify case-17.lnev --trust roots.json

The trust file holds the roots given out of band (docs/verification.md,
"Evidence bundles"): ``{"nodes": {kid: key}, "witnesses": {kid: key},
"registry": [genesis admin key], "quorum": 1}``, all hex. ``verify`` exits
1 on any failure and names each failing object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from lightnode.errors import LightnodeError
from lightnode.ledger import query
from lightnode.ledgercli import _open, _store_option, _time


@click.group("evidence")
def evidence() -> None:
    """Evidence bundles: transactions with every proof, checkpoint, cosignature and registry entry to check them."""


@evidence.command("export")
@_store_option
@click.option(
    "--registry",
    "registry_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="Registry file whose transactions establish the device keys.",
)
@click.option("--device", help="Device id (hex).")
@click.option("--since", callback=_time, help="Device time from (us since 1970 or ISO 8601).")
@click.option("--until", callback=_time, help="Device time before (us since 1970 or ISO 8601).")
@click.option("--kind", help="Transaction kind: readings, event, ... or a number.")
@click.option("--chain", help="Segment chain, seg:<segment>.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Bundle file to write.")
def export_cmd(
    store_url: str,
    registry_path: str,
    device: str | None,
    since: int | None,
    until: int | None,
    kind: str | None,
    chain: str | None,
    out: str,
) -> None:
    """Write one bundle of the selected transactions (only those in final blocks)."""
    from lightnode.evidence import Selection, export
    from lightnode.registry import open_registry

    try:
        sel = Selection(
            bytes.fromhex(device) if device else None,
            since,
            until,
            query.parse_kind(kind) if kind else None,
            chain,
        )
        reg = open_registry(registry_path)
        ex = export(_open(store_url), reg, sel, out)
    except (LightnodeError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(
        "%s: %d transaction(s), %d checkpoint(s), %d registry transaction(s), %d bytes"
        % (out, ex.transactions, ex.checkpoints, ex.registry, len(ex.data))
    )
    for where in ex.left_out:
        click.echo("left out (not in a final block yet): %s" % where, err=True)
    if not ex.transactions:
        raise click.ClickException("no transaction in a final block matches")


@evidence.command("verify")
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--trust",
    "trust_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="JSON trust roots: nodes, witnesses (kid hex -> key hex), registry, quorum.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(bundle: str, trust_path: str, as_json: bool) -> None:
    """Check a bundle offline against trust roots; exit 1 naming every failure."""
    from lightnode.evidence import Trust, verify

    try:
        trust = Trust.load(trust_path)
    except (OSError, ValueError) as e:
        raise click.ClickException("trust %s: %s" % (trust_path, e)) from e
    report = verify(Path(bundle).read_bytes(), trust)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        for a in report.anchors:
            click.echo("anchored to " + a)
        reg = report.registry
        if reg:
            click.echo(
                "registry: %d transaction(s), genesis admin %s, head %s"
                % (reg["transactions"], reg["genesis_admin"], reg["head"][:16])
            )
            for a in reg["anchored_by"]:
                click.echo("  " + a)
        for t in report.transactions:
            if "device" not in t:
                continue
            click.echo(
                "tx %-3d %s seq %-6d %-9s %s  ledger time %s .. %s  %s"
                % (
                    t["n"],
                    t["device"],
                    t["seq"],
                    t["kind"],
                    t.get("checkpoint", "?"),
                    (t.get("bracket_iso") or [None, None])[0] or "-",
                    (t.get("bracket_iso") or [None, None])[1] or "-",
                    "ok" if t["verified"] else "FAILED",
                )
            )
        for w in report.warnings:
            click.echo("WARNING " + w)
        for f in report.failures:
            click.echo("FAIL " + f)
        click.echo("evidence: %s" % ("ok" if report.ok else "%d failure(s)" % len(report.failures)))
    if not report.ok:
        sys.exit(1)
