"""Every fact of the lightnode wire format, in one place.

Device code (``ln.cbor``, ``ln.cose``, ``ln.txn``) and the desktop SDK
(``lightnode.wire``) both import these names; nothing else may spell a
label, a limit or a reason out again. docs/wire-format.md explains them.

    from ln import wire
    wire.MAX_TX_BYTES
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

    # what only full nodes and the SDK use lives with the SDK: a board never has it (each
    # name a board loads costs heap)
    from lightnode.nodewire import *  # noqa: F403


FORMAT_VERSION = const(1)

# COSE (RFC 9052, RFC 9053, RFC 9864, RFC 9995 hash envelope).
COSE_SIGN1_TAG = const(18)
H_ALG = const(1)
H_CTY = const(3)
H_KID = const(4)
H_PAYLOAD_HASH_ALG = const(258)
H_PREIMAGE_CTY = const(259)
ALG_EDDSA = const(-8)  # what devices emit: what pycose and most verifiers take
ALG_ED25519 = const(-19)  # RFC 9864 fully specified; accepted as the same algorithm
ALG_SHA256 = const(-16)
CTY_CBOR = const(60)  # CoAP content format of application/cbor

# Transaction payload map keys.
P_VERSION = const(0)
P_DEVICE = const(1)
P_SEGMENT = const(2)
P_SEQ = const(3)
P_PREV = const(4)
P_TIME = const(5)
P_KIND = const(6)
P_BODY = const(7)
PAYLOAD_KEYS = (0, 1, 2, 3, 4, 5, 6, 7)

# Kinds.
KIND_READINGS = const(1)
KIND_EVENT = const(2)
KIND_HEARTBEAT = const(4)
KIND_NAMES = {
    1: "readings",
    2: "event",
    3: "operator",
    4: "heartbeat",
    5: "registration",
    6: "summary",
}

# Time quality of the device clock.
TQ_UNSYNCED = const(0)
TQ_NTP = const(1)
TQ_GPS = const(2)
TQ_SOURCE = const(3)
TQ_NAMES = {0: "unsynced", 1: "ntp", 2: "gps", 3: "source"}

# Readings body: a list of series; a series map has these keys.
S_T0 = const(0)  # source time of the first sample, us since 1970
S_PERIOD = const(1)  # nominal sample period, us
S_DT = const(2)  # per later sample: (t[i] - t[i-1]) - period, us
S_POINTS = const(3)  # [[point id, delta order, [encoded values]], ...]
S_QUALITY = const(4)  # run-length quality: [[count, quality], ...]
S_GAPS = const(5)  # optional: [[sample index, samples missing before it], ...]
S_AGG = const(6)  # optional: samples per aggregate when decimated
MAX_DELTA_ORDER = const(2)

# Per-sample quality bits (0 = good).
Q_GOOD = const(0)
Q_INVALID = const(1)
Q_TIME_UNLOCKED = const(16)
Q_OVERFLOW = const(32)
Q_ALL = const(63)

# Event body keys.
E_TYPE = const(0)
E_SEVERITY = const(1)
E_POINT = const(2)
E_VALUE = const(3)
E_LIMIT = const(4)
E_TIME = const(5)

# Event types (E_TYPE).
EV_ALARM_HIGH = const(1)  # a point went above its alarm high limit
EV_ALARM_LOW = const(2)  # below its alarm low limit
EV_ALARM_CLEAR = const(3)  # back within its limits
EV_COMM_LOSS = const(4)  # the source stopped answering
EV_COMM_RESTORED = const(5)
EV_STATUS = const(6)  # the source's own status word changed (value: the new word)
EV_SEQ_SKIP = const(7)  # a reboot skipped sequence numbers (value: how many)
EV_CLOCK_STEP = const(8)  # the device clock was stepped (value: the step, us)
EV_SAFE_MODE = const(9)  # booted in safe mode (value: crashes in a row; limit: crash id, docs/updates.md)
# the node NACKed a record the device keeps but never sends again (value: its seq; limit: the
# reason's index in ln.ack.NACK_REASONS); the node's acks count that seq as covered (docs/acks.md)
EV_SET_ASIDE = const(10)

# Event severities (E_SEVERITY).
SEV_INFO = const(0)
SEV_WARNING = const(1)
SEV_ALARM = const(2)
SEV_CRITICAL = const(3)

# Heartbeat link states (HB_LINK).
LINK_DOWN = const(0)
LINK_CONNECTING = const(1)
LINK_UP = const(2)
LINK_CLOSED = const(3)

# Heartbeat body keys.
HB_FIRMWARE = const(0)
HB_FREE_HEAP = const(1)
HB_JOURNAL = const(2)
HB_LINK = const(3)
HB_TIME_QUALITY = const(4)
HB_RESET_CAUSE = const(5)

# Hard limits, enforced by encoders and decoders on both sides.
MAX_TX_BYTES = const(16384)  # a whole wire transaction
MAX_DEPTH = const(8)  # nesting of arrays, maps and tags
MAX_ITEMS = const(2048)  # entries in one array or map
MAX_TOTAL_ITEMS = const(16384)  # data items in one decoded document
MAX_DEVICE_ID = const(32)  # bytes
MAX_SEGMENT = const(32)  # characters, [a-z0-9-]
ED25519_SIG_BYTES = const(64)
ED25519_KEY_BYTES = const(32)
ED448_KEY_BYTES = const(57)
# A node's or operator's key is named (kid) by the first KID_BYTES bytes of
# SHA-256 of its public key; a device's kid is its device id.
KID_BYTES = const(8)  # an Ed448 key is refused as unsupported-alg
HASH_BYTES = const(32)

# Why a transaction or COSE object was refused. Device and SDK raise
# their own error types but carry one of these reasons.
R_MALFORMED = "malformed"  # not well-formed CBOR, truncated, trailing bytes
R_NON_CANONICAL = "non-canonical"  # well-formed but not deterministic encoding
R_OVERSIZED = "oversized"  # over a hard limit above
R_UNSUPPORTED = "unsupported"  # a CBOR feature outside our subset (floats, ...)
R_STRUCTURE = "structure"  # wrong shape or type
R_TAG = "bad-tag"  # not COSE_Sign1's tag 18
R_ALG = "unsupported-alg"  # algorithm other than Ed25519
R_PROTECTED = "protected-header"  # protected header missing, extra or wrong
R_UNPROTECTED = "unprotected-header"  # a transaction's unprotected header not empty
R_SIGNATURE = "bad-signature"
R_PAYLOAD_HASH = "payload-hash"  # SHA-256 of the payload differs from the envelope
R_KID = "kid-mismatch"  # kid and payload device id differ
R_PAYLOAD = "bad-payload"  # payload fields missing, extra, out of range
R_VERSION = "unsupported-version"
REASONS = (
    R_MALFORMED,
    R_NON_CANONICAL,
    R_OVERSIZED,
    R_UNSUPPORTED,
    R_STRUCTURE,
    R_TAG,
    R_ALG,
    R_PROTECTED,
    R_UNPROTECTED,
    R_SIGNATURE,
    R_PAYLOAD_HASH,
    R_KID,
    R_PAYLOAD,
    R_VERSION,
)

# MQTT topics (device id as lowercase hex). A device writes only its tx
# topic and reads only its ack topic (acks and NACKs) and its segment's
# filter (retained); only node accounts write acks, NACKs and filters.
TOPIC_TX = "ln/%s/%s/tx"  # % (segment, device hex)
TOPIC_ACK = "ln/%s/%s/ack"  # % (segment, device hex)
TOPIC_FILTER = "ln/%s/filter"  # % segment

# The full node's keys have separate roles; every object a node signs is a
# COSE_Sign1 whose protected header also names its kind in label 3 (content
# type), so that a signed object of one kind can never pass for another.
ROLE_CHECKPOINT = "checkpoint"
ROLE_ACK = "ack"  # acks and NACKs
ROLE_FILTER = "filter"
ROLE_REGISTRY = "registry"  # registry transactions a node signs
ROLE_UPDATE = "update"  # firmware bundles
NODE_ROLES = (ROLE_CHECKPOINT, ROLE_ACK, ROLE_FILTER, ROLE_REGISTRY, ROLE_UPDATE)
CTY_FILTER = "application/lightnode-filter+cbor"
CTY_CHECKPOINT = "application/lightnode-checkpoint+cbor"
CTY_ACK = "application/lightnode-ack+cbor"
CTY_NACK = "application/lightnode-nack+cbor"
CTY_UPDATE = "application/lightnode-update+cbor"

# A checkpoint (block header) payload: deterministic CBOR map with these
# keys (docs/verification.md); devices check them in block acks.
CP_VERSION = const(0)
CP_CHAIN = const(1)
CP_SIZE = const(2)
CP_ROOT = const(3)
CP_KEYS = (0, 1, 2, 3, 4, 5, 6)
CHECKPOINT_VERSION = const(1)
