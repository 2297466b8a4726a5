"""The ``lightnode`` command."""

import click
from lightnode import __version__, boards


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lightnode")
def main() -> None:
    """lightnode: signed, journaled readings from grid devices, and the tools to check them.

    Light nodes read PMUs, relays and meters, sign what they read as compact
    COSE transactions and upload them over MQTT; full nodes commit them to
    chains an investigator can verify offline. These commands simulate a
    substation with its attacks, run and flash the firmware, run full nodes,
    and inspect, audit and export what light nodes signed.
    """


@main.command()
@click.option("--windows", default=6, show_default=True, help="Readings windows to sign.")
@click.option("--board", default="unix", show_default=True, type=click.Choice(boards.names()),
              help="Board whose heap budget and default window the device runs at.")
@click.option("--out", type=click.Path(file_okay=False), help="Write each transaction (.cose, .cbor) and device.pub here.")
@click.option("--seed", help="Device key seed, 64 hex digits (default: a new random key).")
def demo(windows: int, board: str, out: str | None, seed: str | None) -> None:
    """Sign PMU readings inside MicroPython with the firmware's own code, verify them with the SDK.

    A simulated PMU (50 frames/s) feeds the light node one window at a time
    (the board's default window); the device, at the board's heap budget,
    signs each as a readings transaction; the SDK, a second implementation,
    checks signature, hash chain, sequence and readings.
    """
    from lightnode.demo import run
    from lightnode.errors import LightnodeError

    try:
        run(windows=windows, board=board, out=out, seed=seed)
    except (ValueError, LightnodeError) as e:
        raise click.ClickException(str(e)) from e


def _register() -> None:
    from lightnode.brokercli import broker
    from lightnode.devicedump import dump
    from lightnode.evidencecli import evidence
    from lightnode.firmwarecli import firmware
    from lightnode.hilcli import hil
    from lightnode.ledgercli import audit, ledger
    from lightnode.nodecli import node
    from lightnode.pointmapcli import pointmap_group
    from lightnode.probe import probe
    from lightnode.provisioncli import board, provision
    from lightnode.registrycli import device, operator, registry_group
    from lightnode.reportcli import report
    from lightnode.simulatecli import simulate
    from lightnode.txcli import tx

    main.add_command(tx)
    main.add_command(probe)
    main.add_command(pointmap_group)
    main.add_command(registry_group)
    device.add_command(provision)
    device.add_command(dump)
    main.add_command(device)
    main.add_command(operator)
    main.add_command(board)
    main.add_command(broker)
    main.add_command(ledger)
    main.add_command(audit)
    main.add_command(node)
    main.add_command(evidence)
    main.add_command(firmware)
    main.add_command(simulate)
    main.add_command(hil)
    main.add_command(report)


_register()
