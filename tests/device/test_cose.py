# ln.cose: the cose-wg/Examples vectors (tests/data/cose), Ed448 refused, and the
# sign1-tests failure cases rebuilt on an Ed25519 key.
import hashlib

import _vectors
from ln import cbor, cose, ed25519, txn, wire
from ln.errors import CBORError, CoseError, WireError

try:
    from lightnode import nodewire  # CPython: the SDK's node-only wire facts
except ImportError:
    import nodewire  # MicroPython: tests/test_device_suites.py puts a copy on the path

PORTS = ("unix", "wasm")


h = _vectors.unhex
CONTENT = b"This is the content."


def _vector(name):
    return _vectors.load("cose/%s.json" % name)


def _key():
    # RFC 8032 section 7.1 TEST 1: the key of eddsa-sig-01
    v = _vector("eddsa-examples_eddsa-sig-01")
    k = v["input"]["sign0"]["key"]
    key = ed25519.SigningKey(h(k["d_hex"]))
    assert key.public == h(k["x_hex"])
    return key


def _reason(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except WireError as e:
        assert isinstance(e, ValueError) and e.reason in wire.REASONS
        return e.reason
    return None


def test_eddsa_sig_01_byte_for_byte():
    v = _vector("eddsa-examples_eddsa-sig-01")
    key = _key()
    protected = {wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: 0}
    unprotected = {wire.H_KID: b"11"}
    tbs = cose.sig_structure(cbor.dumps(protected), CONTENT)
    assert tbs == h(v["intermediates"]["ToBeSign_hex"])
    data = cose.sign1(protected, unprotected, CONTENT, key)
    assert data == h(v["output"]["cbor"])
    msg = cose.verify1(data, key.public)
    assert msg.payload == CONTENT and msg.alg == wire.ALG_EDDSA and msg.kid == b"11"
    assert msg.protected == protected and msg.unprotected == unprotected
    assert msg.protected_bytes == h("a201270300") and msg.tag == wire.COSE_SIGN1_TAG


def test_alg_minus_19_and_untagged():
    key = _key()
    data = cose.sign1({wire.H_ALG: wire.ALG_ED25519}, {}, CONTENT, key)
    assert cose.verify1(data, key.public).alg == wire.ALG_ED25519
    # untagged COSE_Sign1, for callers whose context says what it is
    bare = cose.sign1({wire.H_ALG: wire.ALG_EDDSA}, {}, CONTENT, key, tag=False)
    assert bare[0] == 0x84
    assert cose.verify1(bare, key.public, tag=False).payload == CONTENT
    assert _reason(cose.verify1, bare, key.public) == wire.R_TAG
    assert _reason(cose.verify1, data, key.public, tag=False) == wire.R_UNSUPPORTED


def test_external_aad_and_detached_payload():
    key = _key()
    data = cose.sign1({wire.H_ALG: wire.ALG_EDDSA}, {}, CONTENT, key, external_aad=b"aad")
    assert cose.verify1(data, key.public, external_aad=b"aad").payload == CONTENT
    assert _reason(cose.verify1, data, key.public) == wire.R_SIGNATURE
    # detached: the payload travels apart (nil in the object)
    pb = cbor.dumps({wire.H_ALG: wire.ALG_EDDSA})
    sig = key.sign(cose.sig_structure(pb, CONTENT))
    det = cbor.dumps(cbor.Tag(18, [pb, {}, None, sig]))
    assert cose.decode1(det).payload is None
    assert cose.verify1(det, key.public, payload=CONTENT).payload is None
    try:
        cose.verify1(det, key.public)
    except ValueError as e:
        assert not isinstance(e, WireError)
    else:
        raise AssertionError("a detached payload must be asked for")


def test_ed448_refused():
    # eddsa-sig-02: a COSE_Sign1 signed with Ed448 (alg -8, 57-byte key, 114-byte signature)
    v = _vector("eddsa-examples_eddsa-sig-02")
    data = h(v["output"]["cbor"])
    ed448_key = h(v["input"]["sign0"]["key"]["x_hex"])
    assert len(ed448_key) == wire.ED448_KEY_BYTES
    assert _reason(cose.verify1, data, ed448_key) == wire.R_ALG
    msg = cose.decode1(data)
    assert len(msg.signature) == 114 and msg.payload == CONTENT
    # the same object against an Ed25519 key: the signature cannot hold
    assert _reason(cose.verify1, data, _key().public) == wire.R_SIGNATURE
    # eddsa-02: a COSE_Sign (tag 98) whose one signer is Ed448
    v = _vector("eddsa-examples_eddsa-02")
    sign = h(v["output"]["cbor"])
    assert _reason(cose.verify1, sign, ed448_key) == wire.R_STRUCTURE
    body = cbor.loads(sign, tag_depth=0)
    assert body.tag == 98
    prot, unprot, sig = body.value[3][0]
    assert cose.sig_structure(prot, CONTENT)[:3] == h("846a53")  # Signature1, not Signature
    one = cbor.dumps(cbor.Tag(18, [prot, unprot, CONTENT, sig]))
    assert _reason(cose.verify1, one, ed448_key) == wire.R_ALG
    # alg -53 (Ed448, RFC 9864) in the protected header
    key = _key()
    data = cose.sign1({wire.H_ALG: nodewire.ALG_ED448}, {}, CONTENT, key)
    assert _reason(cose.verify1, data, key.public) == wire.R_ALG


def _rebuilt(protected, mutate):
    """An Ed25519 COSE_Sign1 of CONTENT, kid '11' unprotected, as a list to mutate."""
    key = _key()
    data = cose.sign1(protected, {wire.H_KID: b"11"}, CONTENT, key)
    obj = cbor.loads(data, tag_depth=0)
    mutate(obj)
    return cbor.dumps(obj), key.public


def _same_shape(ours, theirs_hex, same_alg=False):
    # our rebuilt object has the vector's mutation: same tag, headers, payload;
    # only the algorithm (ES256 there, EdDSA here) and so the signature differ
    a = cbor.loads(ours, tag_depth=0)
    b = cbor.loads(h(theirs_hex), tag_depth=0)
    assert a.tag == b.tag
    pa = cbor.loads(a.value[0]) if a.value[0] else {}
    pb = cbor.loads(b.value[0]) if b.value[0] else {}
    if not same_alg:
        assert pa.pop(wire.H_ALG) == wire.ALG_EDDSA and pb.pop(wire.H_ALG) == -7  # ES256
    assert pa == pb and a.value[1] == b.value[1] and a.value[2] == b.value[2]


def _fail(name):
    v = _vector("sign1-tests_sign-fail-%s" % name)
    assert v["fail"]
    return v["output"]["cbor"]


def test_sign_fail_01_wrong_tag():
    def mutate(obj):
        obj.tag = 998

    data, pub = _rebuilt({wire.H_ALG: wire.ALG_EDDSA}, mutate)
    _same_shape(data, _fail("01"))
    assert _reason(cose.verify1, data, pub) == wire.R_TAG


def test_sign_fail_02_changed_content():
    def mutate(obj):
        obj.value[2] = CONTENT[:-1] + b"/"

    data, pub = _rebuilt({wire.H_ALG: wire.ALG_EDDSA}, mutate)
    _same_shape(data, _fail("02"))
    assert _reason(cose.verify1, data, pub) == wire.R_SIGNATURE


def test_sign_fail_02_changed_signature():
    def mutate(obj):
        s = obj.value[3]
        obj.value[3] = s[:10] + bytes([s[10] ^ 1]) + s[11:]

    data, pub = _rebuilt({wire.H_ALG: wire.ALG_EDDSA}, mutate)
    assert _reason(cose.verify1, data, pub) == wire.R_SIGNATURE


def test_sign_fail_03_04_changed_alg():
    for name, alg in (("03", -999), ("04", "unknown")):

        def mutate(obj, alg=alg):
            obj.value[0] = cbor.dumps({wire.H_ALG: alg})

        data, pub = _rebuilt({wire.H_ALG: wire.ALG_EDDSA}, mutate)
        _same_shape(data, _fail(name), same_alg=True)
        assert _reason(cose.verify1, data, pub) == wire.R_ALG, name


def test_sign_fail_06_added_protected_attribute():
    def mutate(obj):
        obj.value[0] = cbor.dumps({wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: 0})

    data, pub = _rebuilt({wire.H_ALG: wire.ALG_EDDSA}, mutate)
    _same_shape(data, _fail("06"))
    assert _reason(cose.verify1, data, pub) == wire.R_SIGNATURE


def test_sign_fail_07_removed_protected_attribute():
    def mutate(obj):
        obj.value[0] = cbor.dumps({wire.H_ALG: wire.ALG_EDDSA})

    data, pub = _rebuilt({wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: 0}, mutate)
    _same_shape(data, _fail("07"))
    assert _reason(cose.verify1, data, pub) == wire.R_SIGNATURE


def test_structure_and_header_refusals():
    key = _key()
    pb = cbor.dumps({wire.H_ALG: wire.ALG_EDDSA})
    sig = bytes(64)
    cases = (
        (cbor.Tag(18, [pb, {}, CONTENT]), wire.R_STRUCTURE),
        (cbor.Tag(18, [pb, {}, CONTENT, sig, 0]), wire.R_STRUCTURE),
        (cbor.Tag(18, [{1: -8}, {}, CONTENT, sig]), wire.R_STRUCTURE),
        (cbor.Tag(18, [pb, [], CONTENT, sig]), wire.R_STRUCTURE),
        (cbor.Tag(18, [pb, {}, "text", sig]), wire.R_STRUCTURE),
        (cbor.Tag(18, [pb, {}, CONTENT, None]), wire.R_STRUCTURE),
        (cbor.Tag(18, {0: pb}), wire.R_STRUCTURE),
        (cbor.Tag(17, [pb, {}, CONTENT, sig]), wire.R_TAG),
        (cbor.Tag(18, [cbor.dumps([1, -8]), {}, CONTENT, sig]), wire.R_PROTECTED),
        (cbor.Tag(18, [b"", {1: -8}, CONTENT, sig]), wire.R_ALG),  # alg only unprotected
        (cbor.Tag(18, [cbor.dumps({4: b"k"}), {}, CONTENT, sig]), wire.R_ALG),
        (cbor.Tag(18, [cbor.dumps({1: -7}), {}, CONTENT, sig]), wire.R_ALG),
        (cbor.Tag(18, [cbor.dumps({1: True}), {}, CONTENT, sig]), wire.R_ALG),
        (cbor.Tag(18, [pb, {}, CONTENT, sig[:63]]), wire.R_SIGNATURE),
        (cbor.Tag(18, [pb, {}, CONTENT, sig]), wire.R_SIGNATURE),
        (cbor.Tag(18, [b"\xa1\x01\x38\x07", {}, CONTENT, sig]), wire.R_NON_CANONICAL),
        (cbor.Tag(18, [b"\xa1\x01", {}, CONTENT, sig]), wire.R_MALFORMED),
    )
    for obj, reason in cases:
        assert _reason(cose.verify1, cbor.dumps(obj), key.public) == reason, (obj, reason)
    # a wrong-length key is the caller's mistake, not the remote side's
    data = cose.sign1({1: -8}, {}, CONTENT, key)
    for bad in (b"", bytes(31), bytes(33)):
        try:
            cose.verify1(data, bad)
        except WireError:
            raise AssertionError("a key of %d bytes is a caller error" % len(bad)) from None
        except ValueError:
            pass
    try:
        cose.verify1(data, "key")
    except TypeError:
        pass
    # anything else in the bytes is refused by the CBOR layer
    assert isinstance(_catch(cose.verify1, data + b"\x00", key.public), CBORError)


def _catch(fn, *args):
    try:
        fn(*args)
    except Exception as e:
        return e
    return None


def test_envelope_profile():
    key = _key()
    kid = h("4c4e0001a5c3e701")
    pb = cose.envelope_header(kid)
    assert pb == h("a4012704484c4e0001a5c3e7011901022f190103183c")
    payload = cbor.dumps({0: 1})
    env = cose.sign_envelope(payload, key, kid)
    msg = cose.verify1(env, key.public)
    assert msg.payload == hashlib.sha256(payload).digest()
    assert cose.check_envelope_header(msg.protected, msg.unprotected) == kid
    # the Sig_structure Ed25519 signs is 70 bytes with an 8-byte device id
    assert len(cose.sig_structure(pb, msg.payload)) == 70
    for bad in (b"", bytes(33)):
        try:
            cose.envelope_header(bad)
        except ValueError:
            continue
        raise AssertionError("kid of %d bytes made" % len(bad))


def test_transaction_unprotected_header_used():
    # a relay adds the kid to the unprotected header of a signed transaction
    key = _key()
    kid = b"\x01\x02"
    data, _ = txn.make(key, kid, "feeder-7", 1, bytes(32), (1, 1, 1), nodewire.KIND_SUMMARY, {})
    top = cbor.loads(data, tag_depth=1)
    top[0].value[1] = {wire.H_KID: kid}
    bad = cbor.dumps(top)
    e = _catch(txn.check, bad, key.public)
    assert isinstance(e, CoseError) and e.reason == wire.R_UNPROTECTED
    # any label at all, even one the protected header has too
    top[0].value[1] = {wire.H_ALG: wire.ALG_EDDSA}
    assert _reason(txn.check, cbor.dumps(top), key.public) == wire.R_UNPROTECTED
    top[0].value[1] = {"x": b""}
    assert _reason(txn.check, cbor.dumps(top), key.public) == wire.R_UNPROTECTED
