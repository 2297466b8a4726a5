"""The broker a node starts in its own process when given none: amqtt (pure Python), on loopback.

For a single machine and for trying things out (DESIGN.md, "Scale"): no
second program to install or run. Deployments use Mosquitto or any MQTT
broker with the generated credentials and ACL (``lightnode broker``);
this one is anonymous and listens on 127.0.0.1 only.

    async with embedded_broker(1883) as port:
        ...   # mqtt://127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["DEFAULT_PORT", "embedded_broker"]

DEFAULT_PORT = 1883


def config(port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d" % port}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


@contextlib.asynccontextmanager
async def embedded_broker(port: int = DEFAULT_PORT) -> AsyncIterator[int]:
    """Run amqtt on 127.0.0.1:``port`` in the running event loop until the block ends."""
    from amqtt.broker import Broker

    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    broker = Broker(config(port))
    await broker.start()
    try:
        yield port
    finally:
        await broker.shutdown()
