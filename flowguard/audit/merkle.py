"""RFC 6962 / RFC 9162 §2.1 Merkle tree hashing, proofs and proof verification.

Everything here is pure and storage-independent.  A log stores the hash of every
*complete* subtree: node ``(level, index)`` covers leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes.  Hashes
of incomplete ("ephemeral") subtrees are never stored: they are recomputed from the
complete sub-parts that cover them, so a root or a proof costs one batched
:meth:`NodeReader.nodes` call of O(log n) keys.

* Producing: :class:`CompactRange` (the writer's frontier), :func:`root`,
  :func:`inclusion_proof`, :func:`consistency_proof`.  Proofs are exactly RFC 6962
  §2.1.1 ``PATH(m, D[n])`` and §2.1.2 ``PROOF(m, D[n])``, ordered from the leaf (or
  from the old tree's subtree) up to the root.
* Verifying: :func:`verify_inclusion` (RFC 9162 §2.1.3.2) and
  :func:`verify_consistency` (RFC 9162 §2.1.4.2) raise :class:`ProofError` with a
  message naming what is wrong; they return ``None`` on success.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol

from flowguard.errors import FlowguardError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "CompactRange",
    "MemoryNodeStore",
    "MerkleError",
    "MissingNodeError",
    "NodeKey",
    "NodeReader",
    "ProofError",
    "TreeRangeError",
    "consistency_proof",
    "consistency_proof_keys",
    "frontier_keys",
    "inclusion_proof",
    "inclusion_proof_keys",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

MAX_TREE_SIZE = 2**64 - 1
"""Largest tree size or leaf index accepted (tree sizes are uint64 in RFC 9162)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""``MTH({}) = SHA-256()``, the root hash of the empty tree."""

NodeKey = tuple[int, int]
"""``(level, index)`` of a complete subtree: leaves ``[index << level, (index + 1) << level)``."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleError(FlowguardError):
    """Base class of the errors raised by :mod:`flowguard.audit.merkle`."""


class ProofError(MerkleError):
    """An inclusion or consistency proof (or the data it is checked against) is invalid."""


class TreeRangeError(MerkleError, ValueError):
    """A tree size, leaf index or node key is out of range for the requested operation."""


class MissingNodeError(MerkleError, LookupError):
    """A node that a complete tree of the given size must have is not stored."""


def leaf_hash(entry: bytes) -> bytes:
    """``MTH({d}) = SHA-256(0x00 || d)`` for one log entry ``d``."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` for an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


class NodeReader(Protocol):
    """Read access to the stored complete-subtree hashes of a log."""

    def nodes(self, keys: Sequence[NodeKey]) -> Sequence[bytes]:
        """Return the hash of each ``(level, index)`` in ``keys``, in the same order.

        Called once per root or proof with O(log n) keys, so a database can answer
        it in one query.  Must raise (e.g. :class:`MissingNodeError`) rather than
        return fewer hashes when a node is absent.
        """
        ...


class MemoryNodeStore:
    """In-memory :class:`NodeReader` (and node sink) for tests and tools.

    ``calls`` and ``keys_read`` count the lookups, so tests can check that a proof
    costs one batched call of O(log n) keys.
    """

    def __init__(self, nodes: Iterable[tuple[int, int, bytes]] = ()) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self.calls = 0
        self.keys_read = 0
        self.store(nodes)

    def store(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Store ``(level, index, hash)`` triples, e.g. from :meth:`CompactRange.append`."""
        for level, index, digest in nodes:
            if len(digest) != HASH_SIZE:
                raise ValueError(f"node ({level}, {index}) hash is {len(digest)} bytes, not 32")
            self._nodes[(level, index)] = digest

    def nodes(self, keys: Sequence[NodeKey]) -> list[bytes]:
        self.calls += 1
        self.keys_read += len(keys)
        out: list[bytes] = []
        for key in keys:
            try:
                out.append(self._nodes[key])
            except KeyError:
                raise MissingNodeError(
                    f"node (level {key[0]}, index {key[1]}) is not stored"
                ) from None
        return out

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes


# --------------------------------------------------------------------------- helpers


def _check_uint(value: int, what: str, error: type[MerkleError]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what} must be an integer, not {type(value).__name__}")
    if value < 0 or value > MAX_TREE_SIZE:
        raise error(f"{what} {value} is out of range [0, 2**64 - 1]")


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray):
        raise ProofError(f"{what} must be bytes, not {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _range_keys(begin: int, end: int) -> list[NodeKey]:
    """Complete subtrees covering leaves ``[begin, end)``, left to right (the compact range)."""
    keys: list[NodeKey] = []
    while begin < end:
        # The largest subtree starting at ``begin`` is bounded by begin's alignment...
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        # ...and by the remaining width.
        while begin + (1 << level) > end:
            level -= 1
        keys.append((level, begin >> level))
        begin += 1 << level
    return keys


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a range from its compact-range hashes (left to right): fold from the right."""
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def frontier_keys(size: int) -> list[NodeKey]:
    """Keys of the complete subtrees covering ``[0, size)``: one per set bit, largest first."""
    _check_uint(size, "tree size", TreeRangeError)
    return _range_keys(0, size)


class _Path:
    """Sibling hashes from node ``(level, index)`` up to the root of a tree of ``size`` leaves.

    Bottom-up: ``keys`` are the complete siblings below the fork, where the path
    parts from the path to the tree's last leaf; ``ephemeral`` is the compact range
    covering the (possibly incomplete) right sibling at the fork, folded into a single
    proof element; ``border`` are the complete left siblings above the fork.
    """

    def __init__(self, level: int, index: int, size: int) -> None:
        last = (size - 1) >> level
        inner = (index ^ last).bit_length()
        self.keys: list[NodeKey] = [(level + i, (index >> i) ^ 1) for i in range(inner - 1)]
        self.ephemeral: list[NodeKey] = []
        if inner:
            begin = ((index >> (inner - 1)) ^ 1) << (inner - 1 + level)
            self.ephemeral = _range_keys(begin, size)
        self.border: list[NodeKey] = [
            (level + i, (index >> i) ^ 1)
            for i in range(inner, (index >> inner).bit_length() + inner)
            if (index >> i) & 1
        ]

    def all_keys(self) -> list[NodeKey]:
        return self.keys + self.ephemeral + self.border

    def assemble(self, hashes: Sequence[bytes]) -> list[bytes]:
        n_inner, n_eph = len(self.keys), len(self.ephemeral)
        out = list(hashes[:n_inner])
        if n_eph:
            out.append(_fold(hashes[n_inner : n_inner + n_eph]))
        out.extend(hashes[n_inner + n_eph :])
        return out


def _read(reader: NodeReader, keys: Sequence[NodeKey]) -> Sequence[bytes]:
    if not keys:
        return []
    hashes = reader.nodes(keys)
    if len(hashes) != len(keys):
        raise MissingNodeError(f"node reader returned {len(hashes)} hashes for {len(keys)} keys")
    for key, digest in zip(keys, hashes, strict=True):
        if len(digest) != HASH_SIZE:
            raise MissingNodeError(
                f"stored node {key} is {len(digest)} bytes, expected {HASH_SIZE}"
            )
    return hashes


# --------------------------------------------------------------------------- producing


class CompactRange:
    """The frontier of a growing tree: the complete-subtree hashes covering ``[0, size)``.

    ``hashes`` has one entry per set bit of ``size``, from the largest (leftmost)
    subtree to the smallest, i.e. the nodes of :func:`frontier_keys`.  A writer keeps
    this in memory, appends leaf hashes, and stores the nodes that :meth:`append`
    returns; after a restart it resumes with ``CompactRange(size, hashes)`` or
    :meth:`from_reader`.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_uint(size, "tree size", TreeRangeError)
        hashes = list(hashes)
        if len(hashes) != size.bit_count():
            raise TreeRangeError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, got {len(hashes)}"
            )
        for i, digest in enumerate(hashes):
            if not isinstance(digest, bytes) or len(digest) != HASH_SIZE:
                raise TreeRangeError(f"frontier hash {i} is not {HASH_SIZE} bytes")
        self._size = size
        self._hashes = hashes

    @classmethod
    def from_reader(cls, size: int, reader: NodeReader) -> CompactRange:
        """Rebuild the frontier of a tree of ``size`` leaves from stored nodes (one lookup)."""
        return cls(size, _read(reader, frontier_keys(size)))

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Frontier hashes, largest subtree first (see :func:`frontier_keys`)."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash; return the newly complete nodes ``(level, index, hash)``.

        The leaf itself is the first node returned.  Amortised O(1): on average one
        interior node completes per append.
        """
        if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
            raise TreeRangeError(f"leaf hash must be {HASH_SIZE} bytes")
        if self._size == MAX_TREE_SIZE:
            raise TreeRangeError("tree is full")
        index, level, digest = self._size, 0, leaf
        created = [(0, index, digest)]
        while index & 1:
            digest = node_hash(self._hashes.pop(), digest)
            index >>= 1
            level += 1
            created.append((level, index, digest))
        self._hashes.append(digest)
        self._size += 1
        return created

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """Append several leaf hashes; return all newly complete nodes."""
        created: list[tuple[int, int, bytes]] = []
        for leaf in leaves:
            created.extend(self.append(leaf))
        return created

    def root(self) -> bytes:
        """``MTH(D[0:size])``; :data:`EMPTY_ROOT` for the empty tree."""
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()[:16]}...)"


def root(size: int, reader: NodeReader) -> bytes:
    """``MTH(D[0:size])`` from the stored nodes (one lookup of ``popcount(size)`` keys)."""
    _check_uint(size, "tree size", TreeRangeError)
    if size == 0:
        return EMPTY_ROOT
    return _fold(_read(reader, frontier_keys(size)))


def inclusion_proof_keys(index: int, size: int) -> list[NodeKey]:
    """The stored nodes that :func:`inclusion_proof` reads (for callers that prefetch)."""
    _check_uint(index, "leaf index", TreeRangeError)
    _check_uint(size, "tree size", TreeRangeError)
    if index >= size:
        raise TreeRangeError(f"leaf index {index} is not in a tree of size {size}")
    return _Path(0, index, size).all_keys()


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """RFC 6962 ``PATH(index, D[0:size])``: sibling hashes from the leaf up to the root."""
    _check_uint(index, "leaf index", TreeRangeError)
    _check_uint(size, "tree size", TreeRangeError)
    if index >= size:
        raise TreeRangeError(f"leaf index {index} is not in a tree of size {size}")
    path = _Path(0, index, size)
    return path.assemble(_read(reader, path.all_keys()))


def _consistency_parts(old: int, new: int) -> tuple[NodeKey | None, _Path | None]:
    _check_uint(old, "old tree size", TreeRangeError)
    _check_uint(new, "new tree size", TreeRangeError)
    if old > new:
        raise TreeRangeError(f"old tree size {old} is larger than new tree size {new}")
    if old == 0 and new > 0:
        raise TreeRangeError(
            "RFC 6962 defines consistency proofs only for 0 < old size: "
            "every tree trivially extends the empty tree"
        )
    if old == new:
        return None, None
    # The largest complete subtree ending at ``old``: the old tree's rightmost part.
    level = (old & -old).bit_length() - 1
    index = (old - 1) >> level
    first: NodeKey | None = (level, index) if index else None  # omitted when old is 2**k
    return first, _Path(level, index, new)


def consistency_proof_keys(old: int, new: int) -> list[NodeKey]:
    """The stored nodes that :func:`consistency_proof` reads."""
    first, path = _consistency_parts(old, new)
    if path is None:
        return []
    return ([first] if first else []) + path.all_keys()


def consistency_proof(old: int, new: int, reader: NodeReader) -> list[bytes]:
    """RFC 6962 ``PROOF(old, D[0:new])``; empty when ``old == new``.

    Raises :class:`TreeRangeError` for ``old > new`` and for ``old == 0 < new`` (no
    proof is defined or needed: every tree extends the empty tree).
    """
    first, path = _consistency_parts(old, new)
    if path is None:
        return []
    keys = ([first] if first else []) + path.all_keys()
    hashes = _read(reader, keys)
    head = [hashes[0]] if first else []
    return head + path.assemble(hashes[len(head) :])


# --------------------------------------------------------------------------- verifying


def _inclusion_proof_size(index: int, size: int) -> int:
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_size(old: int, new: int) -> int:
    shift = (old & -old).bit_length() - 1
    inner = ((old - 1) ^ (new - 1)).bit_length() - shift
    border = ((old - 1) >> (inner + shift)).bit_count()
    return (0 if old == 1 << shift else 1) + inner + border


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``index`` in the tree ``(size, root_hash)``.

    RFC 9162 §2.1.3.2.  Raises :class:`ProofError` on any failure; returns ``None``.
    """
    _check_uint(index, "leaf index", ProofError)
    _check_uint(size, "tree size", ProofError)
    if index >= size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    _check_hash(root_hash, "root hash")
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof element {i}")
    want = _inclusion_proof_size(index, size)
    if len(proof) != want:
        raise ProofError(
            f"inclusion proof for leaf {index} in a tree of size {size} must have "
            f"{want} hashes, got {len(proof)}"
        )
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
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
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if not hmac.compare_digest(r, root_hash):
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root hash of the "
            f"tree of size {size}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``.  For ``old_size == new_size``
    the proof must be empty and the roots equal.  ``old_size == 0 < new_size`` is
    rejected: RFC 6962 defines no such proof (every tree extends the empty tree, so a
    caller holding an empty checkpoint has nothing to check).  Raises
    :class:`ProofError` on any failure; returns ``None``.
    """
    _check_uint(old_size, "old tree size", ProofError)
    _check_uint(new_size, "new tree size", ProofError)
    if old_size > new_size:
        raise ProofError(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError(f"both trees have size {old_size}: the proof must be empty")
        if not hmac.compare_digest(bytes(old_root), bytes(new_root)):
            raise ProofError(f"two different root hashes for the same tree size {old_size}")
        return
    if old_size == 0:
        raise ProofError(
            "no consistency proof exists from the empty tree (old size 0); "
            "every tree extends the empty tree"
        )
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    if not proof:
        raise ProofError("consistency proof is empty")
    for i, p in enumerate(proof):
        _check_hash(p, f"consistency proof element {i}")
    want = _consistency_proof_size(old_size, new_size)
    if len(proof) != want:
        raise ProofError(
            f"consistency proof from size {old_size} to {new_size} must have {want} "
            f"hashes, got {len(proof)}"
        )
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = bytes(path[0])
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
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
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if not hmac.compare_digest(fr, old_root):
        raise ProofError(f"consistency proof does not lead to the old root (size {old_size})")
    if not hmac.compare_digest(sr, new_root):
        raise ProofError(f"consistency proof does not lead to the new root (size {new_size})")
