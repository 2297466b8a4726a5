"""Wire facts only full nodes and the desktop SDK use; under CPython ``wire`` has them too.

A board never imports this module: every module-level name a board loads
costs it heap. Under CPython ``wire`` re-exports every name here, so SDK
code keeps writing ``spec.KIND_OPERATOR``. docs/wire-format.md explains them.

    from lightnode.firmware.ln import wire as spec
    spec.TOPIC_BLOCK % segment
"""

# COSE header labels and algorithms a device never emits nor checks.
H_PAYLOAD_LOCATION = 260
ALG_ED448 = -53  # RFC 9864; refused as unsupported

# Transaction kinds a device never signs (wire.KIND_NAMES names every kind).
KIND_OPERATOR = 3
KIND_REGISTRATION = 5
KIND_SUMMARY = 6

# Per-sample quality bits a device's sampler never sets (wire.Q_ALL covers them).
Q_QUESTIONABLE = 2
Q_SUBSTITUTED = 4
Q_TEST = 8

# Between full nodes only: the producer publishes each whole block, the
# witnesses answer with their cosignatures.
TOPIC_BLOCK = "ln/%s/block"  # % segment
TOPIC_COSIG = "ln/%s/cosig"  # % segment

# Content types of objects only nodes sign and check.
CTY_REGISTRY = "application/lightnode-registry+cbor"
CTY_OPERATOR = "application/lightnode-operator+cbor"

# Checkpoint payload keys a device does not read (wire.CP_KEYS lists them all).
CP_PREV = 4
CP_TIME = 5
CP_REGISTRY = 6
