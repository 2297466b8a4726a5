"""RFC 9162 trees and proofs (lightnode.ledger.merkle).

Vectors: transparency-dev/merkle ``testdata`` (commit 417fb0c3), copied
into tests/data/rfc9162-merkle/ (its README cites the source). Every happy
path must verify and every ``wantErr`` case must be refused with
``ProofError``. Then hypothesis: for random sizes, every inclusion proof
and every consistency proof verifies, and any one flipped bit in a proof,
a root or a leaf hash is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightnode.ledger import merkle
from lightnode.ledger.errors import ProofError

DATA = Path(__file__).parent / "data" / "rfc9162-merkle"


def _b64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _proof(p: list[str] | None) -> list[bytes]:
    return [_b64(x) for x in p or []]


def _cases(kind: str) -> list[Path]:
    return sorted((DATA / kind).rglob("*.json"))


INCLUSION = _cases("inclusion")
CONSISTENCY = _cases("consistency")


def test_vector_counts() -> None:
    # the whole testdata tree, not a subset
    assert len(INCLUSION) == 98
    assert len(CONSISTENCY) == 98
    assert sum(json.loads(p.read_text())["wantErr"] is False for p in INCLUSION + CONSISTENCY) > 10


@pytest.mark.parametrize("path", INCLUSION, ids=lambda p: str(p.relative_to(DATA)))
def test_inclusion_vectors(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=lambda p: str(p.relative_to(DATA)))
def test_consistency_vectors(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _proof(v["proof"]), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


# The vectors' trees are RFC 6962's example: eight leaves, these inputs.
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]


def test_empty_tree_and_empty_leaf() -> None:
    assert (
        merkle.EMPTY_ROOT.hex()
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert merkle.root([]) == merkle.EMPTY_ROOT
    assert merkle.Tree().root() == merkle.EMPTY_ROOT
    assert (
        merkle.leaf_hash(b"").hex()
        == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_rfc6962_roots_match_the_vectors() -> None:
    # The happy-path roots of the vectors are the roots of the example tree's prefixes.
    leaves = [merkle.leaf_hash(x) for x in RFC6962_LEAVES]
    roots = {}
    for p in CONSISTENCY:
        v = json.loads(p.read_text())
        if not v["wantErr"] and v["size1"] > 0:
            roots[v["size1"]] = _b64(v["root1"])
            roots[v["size2"]] = _b64(v["root2"])
    assert roots
    t = merkle.Tree()
    for h in leaves:
        t.append(h)
    for size, r in roots.items():
        if r and len(r) == 32:
            assert merkle.root(leaves[:size]) == r
            assert t.root(size) == r
    assert t.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def test_proofs_match_the_vectors() -> None:
    # Our proofs are the vectors' proofs, hash for hash.
    t = merkle.Tree()
    for x in RFC6962_LEAVES:
        t.append(merkle.leaf_hash(x))
    n_incl = n_cons = 0
    for p in INCLUSION:
        v = json.loads(p.read_text())
        if (
            not v["wantErr"]
            and v["treeSize"] <= 8
            and _b64(v["leafHash"]) == t.leaf_hashes(v["leafIdx"], v["leafIdx"] + 1)[0]
        ):
            assert t.inclusion_proof(v["leafIdx"], v["treeSize"]) == _proof(v["proof"])
            n_incl += 1
    for p in CONSISTENCY:
        v = json.loads(p.read_text())
        if (
            not v["wantErr"]
            and 0 < v["size1"]
            and v["size2"] <= 8
            and _b64(v["root2"]) == t.root(v["size2"])
        ):
            assert t.consistency_proof(v["size1"], v["size2"]) == _proof(v["proof"])
            n_cons += 1
    assert n_incl >= 4 and n_cons >= 4


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _recursive_root(hs: list[bytes]) -> bytes:
    # RFC 9162 2.1.1 written as it reads, to hold the iterative code to it
    if not hs:
        return hashlib.sha256(b"").digest()
    if len(hs) == 1:
        return hs[0]
    k = 1 << ((len(hs) - 1).bit_length() - 1)
    return merkle.node_hash(_recursive_root(hs[:k]), _recursive_root(hs[k:]))


def test_roots_against_the_definition() -> None:
    hs = _leaves(600)  # past the batch size and through the cached levels
    t = merkle.Tree()
    for n in range(0, 600):
        if n in (0, 1, 2, 3, 5, 8, 255, 256, 257, 300, 511, 512, 513, 599):
            assert t.root() == merkle.root(hs[:n]) == _recursive_root(hs[:n])
        t.append(hs[n])
    assert t.root(300) == _recursive_root(hs[:300])


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 700), st.data())
def test_every_inclusion_proof_verifies_and_one_bit_breaks_it(n: int, data: st.DataObject) -> None:
    hs = _leaves(n)
    t = merkle.Tree()
    for h in hs:
        t.append(h)
    r = t.root()
    for i in sorted({0, n - 1, data.draw(st.integers(0, n - 1))}):
        proof = t.inclusion_proof(i)
        merkle.verify_inclusion(hs[i], i, n, proof, r)
        bit = data.draw(st.integers(0, 255))
        with pytest.raises(ProofError):
            merkle.verify_inclusion(hs[i], i, n, proof, _flip(r, bit))
        with pytest.raises(ProofError):
            merkle.verify_inclusion(_flip(hs[i], bit), i, n, proof, r)
        if proof:
            j = data.draw(st.integers(0, len(proof) - 1))
            bad = list(proof)
            bad[j] = _flip(bad[j], bit)
            with pytest.raises(ProofError):
                merkle.verify_inclusion(hs[i], i, n, bad, r)
            with pytest.raises(ProofError):
                merkle.verify_inclusion(hs[i], i, n, proof[:-1], r)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(hs[i], i, n, proof + [r], r)
        if n > 1:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(hs[i], (i + 1) % n, n, proof, r)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 700), st.data())
def test_every_consistency_proof_verifies_and_one_bit_breaks_it(
    n: int, data: st.DataObject
) -> None:
    hs = _leaves(n)
    t = merkle.Tree()
    for h in hs:
        t.append(h)
    r2 = t.root()
    for m in sorted({1, n, data.draw(st.integers(1, n))}):
        r1 = t.root(m)
        assert r1 == merkle.root(hs[:m])
        proof = t.consistency_proof(m, n)
        merkle.verify_consistency(m, n, proof, r1, r2)
        bit = data.draw(st.integers(0, 255))
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, proof, _flip(r1, bit), r2)
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, proof, r1, _flip(r2, bit))
        if proof:
            j = data.draw(st.integers(0, len(proof) - 1))
            bad = list(proof)
            bad[j] = _flip(bad[j], bit)
            with pytest.raises(ProofError):
                merkle.verify_consistency(m, n, bad, r1, r2)


def test_every_proof_of_small_trees() -> None:
    # exhaustive for small sizes: every index, every prefix
    for n in range(1, 34):
        hs = _leaves(n)
        t = merkle.Tree()
        for h in hs:
            t.append(h)
        for i in range(n):
            merkle.verify_inclusion(hs[i], i, n, t.inclusion_proof(i), t.root())
        for m in range(1, n + 1):
            merkle.verify_consistency(m, n, t.consistency_proof(m), t.root(m), t.root())
            for size in range(m, n + 1):
                if size != n:
                    with pytest.raises(ProofError):
                        merkle.verify_consistency(
                            m, n, t.consistency_proof(m, size), t.root(m), t.root()
                        )


def test_tree_backed_by_a_store_and_restarted_from_its_frontier() -> None:
    hs = _leaves(1500)
    reads: list[tuple[int, int]] = []

    def read(start: int, end: int) -> list[bytes]:
        reads.append((start, end))
        return hs[start:end]

    full = merkle.Tree()
    for h in hs:
        full.append(h)
    # restart: the frontier of the stored size, no leaf read to get the root
    t = merkle.Tree(read, 1000, full_frontier(hs[:1000]))
    assert reads == [] and t.root() == merkle.root(hs[:1000])
    for h in hs[1000:]:
        t.append(h)
    assert t.root() == full.root()
    assert t.inclusion_proof(3, 1200) == full.inclusion_proof(3, 1200)
    assert t.consistency_proof(700) == full.consistency_proof(700)
    t.mark_stored(1400)
    assert t.inclusion_proof(1450) == full.inclusion_proof(1450)
    # an aborted block: back to what the store holds
    t.truncate(1400)
    assert t.root() == merkle.root(hs[:1400]) and t.size == 1400
    # a restart without a frontier reads the leaves once
    assert merkle.Tree(read, 1400).root() == merkle.root(hs[:1400])
    with pytest.raises(ValueError):
        merkle.Tree(read, 1000, full_frontier(hs[:999]))


def full_frontier(hs: list[bytes]) -> list[bytes]:
    t = merkle.Tree()
    for h in hs:
        t.append(h)
    return t.frontier


def test_callers_mistakes_are_value_and_type_errors() -> None:
    t = merkle.Tree()
    with pytest.raises(ValueError):
        t.append(b"short")
    with pytest.raises(ValueError):
        t.inclusion_proof(0)
    with pytest.raises(TypeError):
        merkle.verify_inclusion("x", 0, 1, [], bytes(32))  # type: ignore[arg-type]
    with pytest.raises(ProofError):
        merkle.verify_inclusion(bytes(32), 0, 1, [b"short"], bytes(32))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(bytes(32), -1, 1, [], bytes(32))
