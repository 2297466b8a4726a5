"""RFC 9162 Merkle trees: hashes, roots, inclusion and consistency proofs, and a growing tree.

Every chain of the ledger is one append-only tree of this kind
(docs/verification.md). The hashes are RFC 9162 section 2.1.1's:

- a leaf: ``SHA-256(0x00 || leaf bytes)``
- an inner node: ``SHA-256(0x01 || left || right)``
- the empty tree: ``SHA-256("")``

``Tree`` grows by appends (O(log n) each: it keeps the roots of the full
subtrees on its right edge) and answers proofs by computing subtree roots
from the leaf hashes, which it reads through a callable from storage, with a
bounded cache of the roots of full subtrees. The ``verify_*`` functions
follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step and raise
``ProofError`` for anything that does not check out.

    >>> from lightnode.ledger import merkle
    >>> t = merkle.Tree()
    >>> for x in (b"a", b"b", b"c"):
    ...     _ = t.append(merkle.leaf_hash(x))
    >>> proof = t.inclusion_proof(2, 3)
    >>> merkle.verify_inclusion(merkle.leaf_hash(b"c"), 2, 3, proof, t.root())
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

from lightnode.ledger.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Tree",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # e3b0c442...: RFC 9162 2.1.1, MTH({})
_LEAF = b"\x00"
_NODE = b"\x01"

# Full subtrees of at least 2**_CACHE_MIN_LEVEL leaves have their roots cached;
# below that, the leaf hashes are read in one batch and hashed up, which is
# cheaper than a cache entry per small subtree.
_CACHE_MIN_LEVEL = 4
_BATCH_LEAVES = 1 << 8


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return hashlib.sha256(_LEAF + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an inner node."""
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (RFC 9162 2.1.1), any length; ``EMPTY_ROOT`` for none."""
    if not leaf_hashes:
        return EMPTY_ROOT
    # Fold full subtrees from the left, as Tree.append does: same result as the
    # recursive definition, without recursion.
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        level, node = 0, h
        while stack and stack[-1][0] == level:
            node = node_hash(stack.pop()[1], node)
            level += 1
        stack.append((level, node))
    node = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        node = node_hash(left, node)
    return node


LeafReader = Callable[[int, int], Sequence[bytes]]
"""``read(start, end)``: the leaf hashes of leaves ``start`` to ``end - 1``, in order."""


class Tree:
    """An append-only RFC 9162 tree over leaf hashes kept elsewhere (or in memory).

    ``read`` gives the hashes of the first ``stored`` leaves (from a store);
    leaves appended after that are held here until ``mark_stored``. The
    tree's right edge (the roots of its full subtrees, ``frontier``) is all
    it needs to append and to give its root; a store keeps the frontier with
    each checkpoint so a restart starts from it (``Tree(read, stored,
    frontier)``) instead of reading every leaf.
    """

    def __init__(
        self,
        read: LeafReader | None = None,
        stored: int = 0,
        frontier: Sequence[bytes] | None = None,
        cache_entries: int = 1 << 16,
    ) -> None:
        if stored < 0:
            raise ValueError("stored: a size, not %d" % stored)
        if stored and read is None:
            raise ValueError("a tree with stored leaves needs a reader")
        self._read = read
        self._stored = stored
        self._tail: list[bytes] = []
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._cache_entries = cache_entries
        if frontier is None:
            frontier = self._frontier_from_leaves(stored)
        elif len(frontier) != bin(stored).count("1"):
            raise ValueError(
                "frontier of %d hashes for %d leaves: expected %d"
                % (len(frontier), stored, bin(stored).count("1"))
            )
        self._frontier = self._levels(stored, list(frontier))

    # -- size, root, append -----------------------------------------------------------

    @property
    def size(self) -> int:
        return self._stored + len(self._tail)

    @property
    def stored(self) -> int:
        return self._stored

    @property
    def frontier(self) -> list[bytes]:
        """Roots of the full subtrees on the right edge, largest first (one per set bit of the size)."""
        return [h for _, h in self._frontier]

    @staticmethod
    def _levels(size: int, hashes: list[bytes]) -> list[tuple[int, bytes]]:
        levels = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        return list(zip(levels, hashes, strict=True))

    def _frontier_from_leaves(self, size: int) -> list[bytes]:
        out, start = [], 0
        for b in range(size.bit_length() - 1, -1, -1):
            if size >> b & 1:
                out.append(self.subtree_root(start, start + (1 << b)))
                start += 1 << b
        return out

    def append(self, leaf: bytes) -> int:
        """Add one leaf hash; returns its index. O(log n) hashing."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is %d bytes, not %d" % (HASH_SIZE, len(leaf)))
        index = self.size
        self._tail.append(bytes(leaf))
        level, node = 0, bytes(leaf)
        while self._frontier and self._frontier[-1][0] == level:
            node = node_hash(self._frontier.pop()[1], node)
            level += 1
        self._frontier.append((level, node))
        return index

    def root(self, size: int | None = None) -> bytes:
        """The root of the whole tree, or of its first ``size`` leaves."""
        if size is None or size == self.size:
            if not self._frontier:
                return EMPTY_ROOT
            node = self._frontier[-1][1]
            for _, left in reversed(self._frontier[:-1]):
                node = node_hash(left, node)
            return node
        self._check_size(size)
        return self.subtree_root(0, size) if size else EMPTY_ROOT

    def mark_stored(self, size: int | None = None) -> None:
        """The store now holds the first ``size`` leaves (default: all): stop holding them here."""
        size = self.size if size is None else size
        if not self._stored <= size <= self.size:
            raise ValueError("mark_stored(%d) outside %d..%d" % (size, self._stored, self.size))
        del self._tail[: size - self._stored]
        self._stored = size

    def truncate(self, size: int) -> None:
        """Forget leaves from ``size`` on that were never stored (an aborted block)."""
        if not self._stored <= size <= self.size:
            raise ValueError("truncate(%d) outside %d..%d" % (size, self._stored, self.size))
        del self._tail[size - self._stored :]
        for key in [k for k in self._cache if (k[1] + 1) << k[0] > size]:
            del self._cache[key]
        self._frontier = []
        rebuilt = self._frontier_from_leaves(size)
        self._frontier = self._levels(size, rebuilt)

    # -- subtree roots ----------------------------------------------------------------

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The leaf hashes of leaves ``start`` to ``end - 1``."""
        if not 0 <= start <= end <= self.size:
            raise ValueError("leaves %d..%d of a tree of %d" % (start, end, self.size))
        out: list[bytes] = []
        if start < self._stored:
            assert self._read is not None
            got = list(self._read(start, min(end, self._stored)))
            if len(got) != min(end, self._stored) - start:
                raise ValueError(
                    "the store gave %d leaf hashes for %d..%d" % (len(got), start, end)
                )
            out.extend(got)
        if end > self._stored:
            out.extend(self._tail[max(start, self._stored) - self._stored : end - self._stored])
        return out

    def subtree_root(self, start: int, end: int) -> bytes:
        """MTH of leaves ``start`` to ``end - 1`` (a non-empty range)."""
        n = end - start
        if n <= 0:
            raise ValueError("an empty range has no subtree root")
        if n <= _BATCH_LEAVES:
            return root(self.leaf_hashes(start, end))
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            key = (level, start >> level)
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            half = n >> 1
            h = node_hash(
                self.subtree_root(start, start + half), self.subtree_root(start + half, end)
            )
            if level >= _CACHE_MIN_LEVEL:
                self._cache[key] = h
                if len(self._cache) > self._cache_entries:
                    self._cache.popitem(last=False)
            return h
        k = _split(n)
        return node_hash(self.subtree_root(start, start + k), self.subtree_root(start + k, end))

    # -- proofs -----------------------------------------------------------------------

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError("size %d of a tree of %d leaves" % (size, self.size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 2.1.3.1: the audit path of leaf ``index``, leaf end first."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError("leaf %d is not in a tree of %d leaves" % (index, size))
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self.subtree_root(start + k, end))
                end = start + k
            else:
                path.append(self.subtree_root(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) of RFC 9162 2.1.4.1 (empty when the sizes are equal)."""
        size2 = self.size if size2 is None else size2
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise ValueError(
                "a consistency proof needs 0 < size1 <= size2, not %d, %d" % (size1, size2)
            )
        path: list[bytes] = []
        start, end, m, complete = 0, size2, size1, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                path.append(self.subtree_root(start + k, end))
                end = start + k
            else:
                path.append(self.subtree_root(start, start + k))
                start, m, complete = start + k, m - k, False
        if not complete:
            path.append(self.subtree_root(start, end))
        path.reverse()
        return path


# -- verification ---------------------------------------------------------------------


def _hash_arg(name: str, h: object) -> bytes:
    if not isinstance(h, bytes | bytearray):
        raise TypeError("%s: bytes expected, not %s" % (name, type(h).__name__))
    return bytes(h)


def _proof_arg(proof: Sequence[bytes] | None) -> list[bytes]:
    if proof is None:
        return []
    out = []
    for i, p in enumerate(proof):
        p = _hash_arg("proof[%d]" % i, p)
        if len(p) != HASH_SIZE:
            raise ProofError("bad-hash", "proof[%d] is %d bytes, not %d" % (i, len(p), HASH_SIZE))
        out.append(p)
    return out


def _int_arg(name: str, x: object) -> int:
    if type(x) is not int:
        raise TypeError("%s: int expected, not %s" % (name, type(x).__name__))
    if x < 0:
        raise ProofError("bad-size", "%s is negative (%d)" % (name, x))
    return x


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes] | None, root_hash: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` leaves with ``root_hash`` (RFC 9162 2.1.3.2)."""
    leaf = _hash_arg("leaf", leaf)
    root_hash = _hash_arg("root", root_hash)
    index, size = _int_arg("index", index), _int_arg("size", size)
    path = _proof_arg(proof)
    if len(leaf) != HASH_SIZE:
        raise ProofError("bad-hash", "leaf hash of %d bytes" % len(leaf))
    if len(root_hash) != HASH_SIZE:
        raise ProofError("bad-hash", "root of %d bytes" % len(root_hash))
    # 1. leaf_index must be below tree_size (an empty tree includes nothing).
    if index >= size:
        raise ProofError("bad-index", "leaf %d in a tree of %d leaves" % (index, size))
    fn, sn, r = index, size - 1, leaf  # 2., 3.
    for p in path:  # 4.
        if sn == 0:
            raise ProofError("proof-length", "more proof hashes than the tree has levels")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # 5.
        raise ProofError("proof-length", "too few proof hashes for leaf %d of %d" % (index, size))
    if r != root_hash:
        raise ProofError("root-mismatch", "the proof leads to %s" % r.hex())


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes] | None, root1: bytes, root2: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2) (RFC 9162 2.1.4.2).

    Equal sizes need an empty proof and equal roots. A tree of size 0 has
    one root, ``EMPTY_ROOT``, and proves nothing about a larger tree: RFC
    9162 defines consistency proofs for 0 < size1 only, and an empty old
    tree is refused rather than taken as consistent with anything.
    """
    size1, size2 = _int_arg("size1", size1), _int_arg("size2", size2)
    root1, root2 = _hash_arg("root1", root1), _hash_arg("root2", root2)
    path = _proof_arg(proof)
    if size1 > size2:
        raise ProofError("bad-size", "size1 %d is larger than size2 %d" % (size1, size2))
    if size1 == 0:
        if size2 != 0:
            raise ProofError("bad-size", "consistency with an empty tree proves nothing")
        if root1 != EMPTY_ROOT or root2 != EMPTY_ROOT:
            raise ProofError("root-mismatch", "the root of an empty tree is SHA-256('')")
    if size1 == size2:
        if path:
            raise ProofError(
                "proof-length", "equal sizes need an empty proof, got %d hashes" % len(path)
            )
        if root1 != root2:
            raise ProofError("root-mismatch", "equal sizes, different roots")
        return
    if not path:  # 1.
        raise ProofError("proof-length", "empty proof for sizes %d < %d" % (size1, size2))
    if size1 & (size1 - 1) == 0:  # 2. size1 is an exact power of two
        path = [root1] + path
    fn, sn = size1 - 1, size2 - 1  # 3.
    while fn & 1:  # 4.
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # 5.
    for c in path[1:]:  # 6.
        if sn == 0:
            raise ProofError("proof-length", "more proof hashes than the tree has levels")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # 7.
        raise ProofError("proof-length", "too few proof hashes for sizes %d, %d" % (size1, size2))
    if fr != root1:
        raise ProofError("root-mismatch", "the proof does not lead to root1")
    if sr != root2:
        raise ProofError("root-mismatch", "the proof does not lead to root2")
