"""``lightnode node``: run the full node of one segment (ingest, validation, NACKs, blocks).

One process per segment. It subscribes to ``ln/<segment>/+/tx`` (QoS1,
persistent session) on the broker, checks each transaction, commits what
is authentic to the segment chain in signed blocks, and NACKs the rest.

The node's role keys live in one JSON file (``--key-file``, mode 0600):
``{"node": NAME, "checkpoint": SEED_HEX, "ack": SEED_HEX}``. ``--new-keys``
writes one and prints the public keys an admin registers
(``Registry.add_node_key(NAME, role, key, admin)``); the node refuses to
run with keys the registry does not hold for it. A key's kid (in
checkpoints, NACKs, acks and the auditor's key map) is the registry's
``key_id``: the first 8 bytes of SHA-256 of the public key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from lightnode.ledger.store import DEFAULT_URL, ENV_URL

BLOCK_ENTRIES = 1024
BLOCK_AGE_MS = 1000


def read_node_keys(path: str) -> dict[str, Any]:
    """The key file: node name and one 32-byte seed per role (checkpoint, ack)."""
    try:
        raw = json.loads(Path(path).read_text())
        keys = {"node": str(raw["node"])}
        for role in ("checkpoint", "ack"):
            seed = bytes.fromhex(raw[role])
            if len(seed) != 32:
                raise ValueError("%s seed: 32 bytes expected" % role)
            keys[role] = seed  # type: ignore[assignment]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise click.ClickException("key file %s: %s" % (path, e)) from e
    return keys


def write_node_keys(path: str, node: str) -> dict[str, bytes]:
    from lightnode import keys

    seeds = {role: keys.generate_seed() for role in ("checkpoint", "ack")}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"node": node, **{r: s.hex() for r, s in seeds.items()}}, f)
    return {r: keys.public_key(s) for r, s in seeds.items()}


@click.command("node")
@click.option(
    "--segment",
    required=True,
    help="The network segment this node serves (one process per segment).",
)
@click.option(
    "--broker",
    default="embedded",
    show_default=True,
    help="mqtt://[user:password@]host:port, or 'embedded' (amqtt in this process, 127.0.0.1).",
)
@click.option(
    "--embedded-port", default=1883, show_default=True, help="Port of the embedded broker."
)
@click.option(
    "--store",
    "store_url",
    envvar=ENV_URL,
    default=DEFAULT_URL,
    show_default=True,
    help="Ledger store: sqlite:///path (WAL), a path, or postgresql://...[?schema=NAME]; "
    "the same default as lightnode ledger and audit.",
)
@click.option("--registry", "registry_path", required=True, help="The registry (SQLite file).")
@click.option("--key-file", required=True,
              help="The node's role keys: a JSON file written by --new-keys (mode 0600).")
@click.option(
    "--new-keys",
    "new_keys",
    metavar="NODE",
    help="Write a new key file for node NODE, print its public keys, exit.",
)
@click.option("--client-id", help="MQTT client id (default: lightnode-<segment>-<node>).")
@click.option(
    "--block-entries",
    default=BLOCK_ENTRIES,
    show_default=True,
    help="Cut a block at this many entries.",
)
@click.option(
    "--block-age-ms",
    default=BLOCK_AGE_MS,
    show_default=True,
    help="... or when its first entry is this old.",
)
@click.option(
    "--reorder-timeout-ms",
    default=2000,
    show_default=True,
    help="How long an out-of-order transaction waits for the missing ones before it is committed with a gap flag.",
)
@click.option(
    "--nack-per-s", default=5.0, show_default=True, help="NACKs per second per source (sustained)."
)
@click.option("--nack-burst", default=20.0, show_default=True, help="NACKs per source in a burst.")
@click.option("--stats-file", help="Write the node's counters here (JSON) every second.")
@click.option(
    "--witness",
    is_flag=True,
    help="Run as a witness (lightnode.node.witness) instead of a producer.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="The segment's local time zone (IANA name), for operators' hours.",
)
@click.option(
    "--operator-hours",
    multiple=True,
    metavar="[NAME=]HH:MM-HH:MM",
    help="Hours operator actions are expected in (default 06:00-22:00); NAME= for one operator. "
    "An action outside them is flagged operator-odd-hour. Repeatable.",
)
@click.option(
    "--point-maps",
    multiple=True,
    type=click.Path(exists=True),
    help="Point map files or folders besides the shipped ones: a PMU registered with one of "
    "their digests has its voltage angle analysed. Repeatable.",
)
@click.option("--no-analysis", is_flag=True, help="Do not run the time analysis (lightnode.node.analysis).")
@click.option("-v", "--verbose", is_flag=True)
def node(
    segment: str,
    broker: str,
    embedded_port: int,
    store_url: str,
    registry_path: str,
    key_file: str,
    new_keys: str | None,
    client_id: str | None,
    block_entries: int,
    block_age_ms: int,
    reorder_timeout_ms: int,
    nack_per_s: float,
    nack_burst: float,
    stats_file: str | None,
    witness: bool,
    timezone: str,
    operator_hours: tuple[str, ...],
    point_maps: tuple[str, ...],
    no_analysis: bool,
    verbose: bool,
) -> None:
    """Run the full node of one segment: check every transaction, commit the authentic, NACK the rest."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if new_keys:
        try:
            pub = write_node_keys(key_file, new_keys)
        except FileExistsError as e:
            raise click.ClickException("%s exists: not overwritten" % key_file) from e
        for role, key in pub.items():
            click.echo("%s %s %s" % (new_keys, role, key.hex()))
        return
    if witness:
        _witness(segment, broker, store_url, registry_path, key_file, client_id)
        return
    analysis = None if no_analysis else _analysis_config(timezone, operator_hours, point_maps)
    try:
        asyncio.run(
            _main(
                segment,
                broker,
                embedded_port,
                store_url,
                registry_path,
                key_file,
                client_id,
                block_entries,
                block_age_ms,
                reorder_timeout_ms,
                nack_per_s,
                nack_burst,
                stats_file,
                analysis,
            )
        )
    except KeyboardInterrupt:
        pass


def _analysis_config(
    timezone: str, hours: tuple[str, ...], maps: tuple[str, ...]
) -> tuple[Any, list[Path]]:
    """The time analysis's settings from the options (click errors for bad ones)."""
    from lightnode.node.analysis import AnalysisConfig, parse_hours

    default, per = None, {}
    try:
        for h in hours:
            name, _, window = h.rpartition("=")
            if name:
                per[name] = parse_hours(window)
            else:
                default = parse_hours(window)
        cfg = AnalysisConfig(timezone=timezone, operator_windows=per)
        if default is not None:
            cfg.operator_hours = default
        from zoneinfo import ZoneInfo

        ZoneInfo(timezone)
    except (ValueError, LookupError) as e:
        raise click.BadParameter(str(e)) from e
    files: list[Path] = []
    for m in maps:
        p = Path(m)
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    return cfg, files


def _checkpoint_keys(reg: Any, now_us: int) -> dict[bytes, bytes]:
    """kid -> public key of every node's current checkpoint key in the registry."""
    from lightnode import registry

    return {registry.key_id(k.public_key): k.public_key for k in reg.node_keys(role="checkpoint")
            if k.revoked is None and (k.valid_until is None or k.valid_until > now_us)}


def _witness(segment: str, broker: str, store_url: str, registry_path: str, key_file: str,
             client_id: str | None) -> None:
    """``--witness``: cosign the producer's blocks of ``segment`` (lightnode.node.witness)."""
    import threading

    from lightnode import keys, registry
    from lightnode.errors import LightnodeError
    from lightnode.node import witness as w
    from lightnode.node.mqtt import Transport

    k = read_node_keys(key_file)
    name = k["node"]
    try:
        reg = registry.open_registry(registry_path)
    except LightnodeError as e:
        raise click.ClickException("registry %s: %s" % (registry_path, e)) from e
    pub = keys.public_key(k["checkpoint"])
    if reg.node_key_for(name, "checkpoint", registry.now_us()) != pub:
        raise click.ClickException("the registry holds no current checkpoint key %s of node %s"
                                   % (pub.hex(), name))
    if broker == "embedded":
        raise click.ClickException("a witness joins the producer's broker: give --broker mqtt://...")
    kid = registry.key_id(pub)
    others = {q: p for q, p in _checkpoint_keys(reg, registry.now_us()).items() if q != kid}
    transport = Transport.from_url(broker, client_id or "lightnode-%s-%s" % (segment, name),
                                   clean_session=False)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    transport.start()
    print("witness %s: segment %s, broker %s, store %s" % (name, segment, broker, store_url),
          file=sys.stderr, flush=True)
    try:
        w.run(transport, store_url, segment, k["checkpoint"], kid, producers=others,
              witnesses=others, stop=stop)
    finally:
        transport.close()


def _analyzer(segment: str, reg: Any, analysis: tuple[Any, list[Path]] | None) -> Any:
    if analysis is None:
        return None
    import lightnode.drivers
    from lightnode.node.analysis import Analyzer, PointRoles

    cfg, extra = analysis
    shipped = sorted((Path(lightnode.drivers.__file__).parent / "maps").glob("*.json"))
    return Analyzer(segment, cfg, PointRoles(reg, shipped + extra))


async def _main(
    segment: str,
    broker: str,
    embedded_port: int,
    store_url: str,
    registry_path: str,
    key_file: str,
    client_id: str | None,
    block_entries: int,
    block_age_ms: int,
    reorder_timeout_ms: int,
    nack_per_s: float,
    nack_burst: float,
    stats_file: str | None,
    analysis: tuple[Any, list[Path]] | None = None,
) -> None:
    import contextlib

    from lightnode import keys, registry
    from lightnode.errors import LightnodeError
    from lightnode.ledger.chain import Ledger
    from lightnode.ledger.store import open_store
    from lightnode.node.embedded import embedded_broker
    from lightnode.node.ingest import Ingest
    from lightnode.node.mqtt import Transport
    from lightnode.node.service import Node

    k = read_node_keys(key_file)
    name = k["node"]
    try:
        reg = registry.open_registry(registry_path)
    except LightnodeError as e:
        raise click.ClickException("registry %s: %s" % (registry_path, e)) from e
    kids = {}
    for role in ("checkpoint", "ack"):
        pub = keys.public_key(k[role])
        if reg.node_key_for(name, role, registry.now_us()) != pub:
            raise click.ClickException(
                "the registry holds no current %s key %s of node %s: register it first"
                % (role, pub.hex(), name)
            )
        kids[role] = registry.key_id(pub)
    try:
        store = open_store(store_url)
    except (LightnodeError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    # Every other node's checkpoint key is a witness: a block is final with one of them.
    witnesses = {q: p for q, p in _checkpoint_keys(reg, registry.now_us()).items()
                 if q != kids["checkpoint"]}
    ledger = Ledger(
        store,
        k["checkpoint"],
        kids["checkpoint"],
        block_entries=block_entries,
        block_age_us=block_age_ms * 1000,
        witnesses=witnesses,
        quorum=1,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if broker == "embedded":
            port = await stack.enter_async_context(embedded_broker(embedded_port))
            broker = "mqtt://127.0.0.1:%d" % port
        transport = Transport.from_url(
            broker, client_id or "lightnode-%s-%s" % (segment, name), clean_session=False
        )
        from lightnode.node.quorum import Producer

        producer = Producer(ledger, transport, segment, k["ack"], kids["ack"]) if witnesses else None
        ingest = Ingest(
            ledger,
            reg,
            segment,
            k["ack"],
            kids["ack"],
            transport.publish,
            producer=producer,
            reorder_timeout_us=reorder_timeout_ms * 1000,
            nack_per_s=nack_per_s,
            nack_burst=nack_burst,
            nack_all_per_s=max(500.0, nack_per_s),
            analyzer=_analyzer(segment, reg, analysis),
        )
        n = Node(transport, ingest, stats_path=stats_file)
        print(
            "node %s: segment %s, broker %s, store %s" % (name, segment, broker, store_url),
            file=sys.stderr,
            flush=True,
        )
        await n.run(stop)
    store.close()
