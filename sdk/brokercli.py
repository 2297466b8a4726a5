"""``lightnode broker``: the Mosquitto broker's certificates, accounts and ACL (docs/broker.md).

    lightnode broker certs /etc/mosquitto/lightnode/certs --host broker.grid.example
    lightnode broker config --registry registry.db --credentials device-passwords \\
        --certs /etc/mosquitto/lightnode/certs --out /etc/mosquitto/lightnode
"""

from __future__ import annotations

from pathlib import Path

import click
from lightnode import broker as core
from lightnode.errors import LightnodeError


@click.group("broker")
def broker_group() -> None:
    """Certificates, accounts and ACL for a Mosquitto broker, from the registry."""


@broker_group.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="A name or address devices reach the broker by (repeatable); "
                   "localhost and 127.0.0.1 are always added.")
@click.option("--days", default=825, show_default=True, help="Server certificate lifetime.")
@click.option("--ca-days", default=3650, show_default=True, help="Lifetime of a new CA.")
@click.option("--new-ca", is_flag=True,
              help="Replace the CA in DIRECTORY (every device must then be given the new one).")
def certs(directory: str, hosts: tuple[str, ...], days: int, ca_days: int, new_ca: bool) -> None:
    """Make a CA and a server certificate (ECDSA P-256) in DIRECTORY.

    A CA already there is kept and signs the new server certificate, so
    renewing the broker's certificate needs nothing new on the devices.
    Keys are written readable by their owner only.
    """
    try:
        info = core.make_certs(directory, hosts=hosts, days=days, ca_days=ca_days, new_ca=new_ca)
    except (ValueError, LightnodeError) as e:
        raise click.ClickException(str(e)) from e
    d = Path(directory)
    click.echo("%s CA %s" % ("kept" if info.ca_reused else "new", d / core.CA_CERT))
    click.echo("CA SHA-256 fingerprint %s" % info.ca_fingerprint)
    click.echo("server certificate %s (%d days, ECDSA P-256): %d bytes DER; CA %d bytes DER"
               % (d / core.SERVER_CERT, days, info.server_der_bytes, info.ca_der_bytes))
    click.echo("give devices %s (DER) or %s (PEM)" % (d / core.CA_DER, d / core.CA_CERT))


@broker_group.command()
@click.option("--registry", "registry_path", required=True, type=click.Path(dir_okay=False),
              help="The registry (SQLite file or sqlite:/// URL).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Where mosquitto.conf, passwd and acl are written.")
@click.option("--credentials", type=click.Path(dir_okay=False, exists=True),
              help="user:secret lines (plain or $7$ hash); default: provisioning's "
                   "device-passwords beside the registry. Devices without one get no account.")
@click.option("--certs", "certs_dir", type=click.Path(file_okay=False, exists=True),
              help="Directory made by `lightnode broker certs`: a TLS listener.")
@click.option("--port", default=core.TLS_PORT, show_default=True, help="TLS listener port.")
@click.option("--bind", metavar="ADDRESS", help="TLS listener address (default: all).")
@click.option("--plain-port", type=int, help="Also a plain MQTT listener on 127.0.0.1 (tests, a local node).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False),
              help="Persistence directory (default: OUT/data).")
@click.option("--user", "run_as", metavar="NAME", help="The user mosquitto runs as (its `user` option).")
@click.option("--node", "extra_nodes", multiple=True, metavar="NAME",
              help="A node account besides the registry's nodes (repeatable).")
def config(registry_path: str, out: str, credentials: str | None, certs_dir: str | None,
           port: int, bind: str | None, plain_port: int | None, data_dir: str | None,
           run_as: str | None, extra_nodes: tuple[str, ...]) -> None:
    """Write mosquitto.conf, passwd and acl for the registry's devices and node accounts.

    A device writes only ln/SEGMENT/DEVICE/tx and reads only its ack topic
    and its segment's filter; node accounts read every tx and write acks,
    NACKs and filters. A node account without a password gets a new one,
    kept in OUT/node-NAME.password.
    """
    from lightnode import registry

    path = registry_path[len("sqlite://"):] if registry_path.startswith("sqlite://") else registry_path
    if not Path(path).is_file():
        raise click.ClickException("%s: no registry there" % path)
    try:
        reg = registry.open_registry(registry_path)
        try:
            devices, nodes = core.from_registry(reg)
        finally:
            reg.close()
        if credentials is None:
            from lightnode.provision import default_credentials

            found = default_credentials(registry_path)
            credentials = str(found) if found.is_file() else None
        creds = core.read_credentials(credentials) if credentials else {}
        files = core.write_broker(out, devices, [*nodes, *extra_nodes], creds,
                                    certs_dir=certs_dir, port=port, bind=bind,
                                    plain_port=plain_port, data_dir=data_dir, user=run_as,
                                    make_node_passwords=True)
    except (OSError, ValueError, LightnodeError) as e:
        raise click.ClickException(str(e)) from e
    click.echo("%d devices, %d node accounts (credentials: %s): %s, %s, %s"
               % (files.devices, files.nodes, credentials or "none", files.conf, files.passwd,
                  files.acl))
    for name, p in files.new_node_passwords.items():
        click.echo("new password for node account %s in %s" % (name, p))
    if files.no_credentials:
        click.echo("warning: %d devices have no credential and no account: %s"
                   % (len(files.no_credentials), " ".join(files.no_credentials)), err=True)
    if certs_dir is None:
        click.echo("warning: no TLS listener (no --certs)", err=True)
    click.echo("start: %s" % files.start_command())
    click.echo("after a change: regenerate, then `kill -HUP <mosquitto pid>` reloads passwd and acl")


broker = broker_group
