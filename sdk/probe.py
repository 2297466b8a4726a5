"""``lightnode probe``: the commissioning command, the first thing an engineer runs on site.

One subcommand per field protocol, each in its own module
(``probe_modbus``, ``probe_mms``, ``probe_c37118``), registered here when
present. Output is readable by default and ``--json`` for machines; a
timeout or a protocol error is one clear line and a non-zero exit.
"""

import importlib

import click


@click.group()
def probe() -> None:
    """Talk to a field device once: read, listen, discover, and say plainly what came back."""


for _name, _attr in (("probe_modbus", "modbus"), ("probe_mms", "mms"), ("probe_c37118", "c37118")):
    try:
        probe.add_command(getattr(importlib.import_module("lightnode." + _name), _attr))
    except ImportError:  # that protocol's command is not installed
        pass
