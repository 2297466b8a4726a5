"""Publishing a segment's device filter: built from the registry, signed, retained, committed.

The node builds the Bloom filter of the segment's registered, unrevoked,
unquarantined devices (``lightnode.filters.build``), signs it with its
filter key, records its SHA-256 with epoch and not-after as a registry
transaction signed by its registry key (``filter-publish``: the hash is
then on the registry chain, which the ledger commits and witnesses
cosign), and publishes it retained on ``ln/<segment>/filter`` so every
board receives the newest one when it connects. An investigator can prove
which filter a board was given for which epoch.

    signed = filterpub.publish(transport, reg, "feeder-7", filter_seed,
                               reg.as_node("node-a", registry_seed), epoch=12,
                               not_after_s=now + 86400)
"""

from __future__ import annotations

from typing import Any

from lightnode import filters
from lightnode.firmware.ln import wire as spec
from lightnode.registry import Registry, SignerLike, key_id


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


def publish(transport: Any, reg: Registry, segment: str, seed: bytes, signer: SignerLike,
            epoch: int, not_after_s: int, p: float = filters.DEFAULT_P) -> bytes:
    """Make the filter, record its hash in the registry (``signer``), publish it retained; its signed bytes.

    Recorded before it is published: a board never holds a filter the
    registry chain does not know of.
    """
    signed = make(reg, segment, seed, epoch, not_after_s, p)
    reg.publish_filter(segment, epoch, not_after_s, filters.filter_hash(signed), signer)
    transport.publish(spec.TOPIC_FILTER % segment, signed, qos=1, retain=True)
    return signed
