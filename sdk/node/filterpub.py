"""Publishing a segment's device filter: built from the registry, signed, retained, committed.

The node builds the Bloom filter of the segment's registered, unrevoked,
unquarantined devices (``lightnode.filters.build``), signs it with its
filter key, publishes it retained on ``ln/<segment>/filter`` so every
board receives the newest one when it connects, and commits the signed
filter on the ledger's ``registry`` chain: its hash is then in a tree that
witnesses cosign, and an investigator can prove which filter a board was
given for which epoch.

    signed = filterpub.publish(transport, reg, "feeder-7", seed, epoch=12,
                               not_after_s=now + 86400, ledger=ledger)
"""

from __future__ import annotations

from typing import Any

from lightnode import filters
from lightnode.firmware.ln import wire as spec
from lightnode.registry import Registry, key_id

REGISTRY_CHAIN = "registry"


def members(reg: Registry, segment: str) -> list[tuple[bytes, bytes]]:
    """``(device_id, public_key)`` of the devices a board of ``segment`` may hear from."""
    return [(d.device_id, d.public_key) for d in reg.devices(segment=segment)
            if d.revoked is None and d.quarantined is None]


def make(reg: Registry, segment: str, seed: bytes, epoch: int, not_after_s: int,
         p: float = filters.DEFAULT_P) -> bytes:
    """The signed filter of ``segment`` for ``epoch``; the kid is the filter key's id."""
    reg.catch_up()
    f = filters.build(members(reg, segment), epoch, not_after_s, p, segment=segment)
    from lightnode.keys import public_key

    return filters.sign(f, seed, key_id(public_key(seed)))


def publish(transport: Any, reg: Registry, segment: str, seed: bytes, epoch: int,
            not_after_s: int, ledger: Any = None, p: float = filters.DEFAULT_P) -> bytes:
    """Make, publish retained (QoS1) and, given a ``Ledger``, commit the filter; its signed bytes."""
    signed = make(reg, segment, seed, epoch, not_after_s, p)
    transport.publish(spec.TOPIC_FILTER % segment, signed, qos=1, retain=True)
    if ledger is not None:
        ledger.add_entry(REGISTRY_CHAIN, signed)
    return signed
