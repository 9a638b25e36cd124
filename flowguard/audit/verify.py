"""Verifying an audit log without trusting its operator (SPEC §9).

:func:`verify_log` recomputes the whole RFC 6962 tree from the entry bytes alone and checks,
in log order, that

* the entries are numbered ``0 .. n-1`` without gaps, and each is canonical JSON (re-encoding
  it gives the same bytes) naming its subject only by an ``hmac-sha256:`` pseudonym;
* every stored tree node (the leaf hashes, which name the first altered entry, and the
  interior nodes that proofs are served from) equals the recomputed one, and the tree holds
  no node beyond the log's size;
* every checkpoint carries a valid signature by a known key named after the log's origin
  (several keys may be given: key rotation), and its root is the recomputed root at its
  size; successive checkpoints are consistent, which the recomputation implies and an
  explicit RFC 6962 consistency proof, served from the stored nodes, confirms;
* no checkpoint is larger than the log (truncation), and the log head's frontier (from
  which appends continue) is the recomputed one;
* ``since``, a signed checkpoint the auditor kept, verifies and the log still extends it.

The verdict depends on the entry bytes, the checkpoints' signatures and the verifier keys
only: stored node hashes are compared with, never used for, the recomputation.  The first
problem in log order raises :class:`AuditVerifyError`, naming the entry index or the
checkpoint size.  :func:`verify_entries` is the same check on an exported copy (entry lines
and checkpoint notes), without a database.

Entries are read in batches of ``2**batch_bits`` and hashed with :mod:`hashlib`; the JSON
check uses ``orjson`` when it is installed (several times faster) and falls back to the
standard library, whose verdict is authoritative whenever the two could differ.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, cast

from flowguard._loading import gc_paused
from flowguard._plain import counted
from flowguard.audit.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from flowguard.audit.entries import PSEUDONYM_PREFIX
from flowguard.audit.log import AuditLog
from flowguard.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleError,
    NodeKey,
    consistency_proof,
    frontier_keys,
    verify_consistency,
)
from flowguard.audit.note import NoteError, Verifier, _b64encode, parse_note
from flowguard.errors import Diagnostic, InputError
from flowguard.store._db import redact_url

_orjson: Any
try:  # an optional accelerator: the standard library decides whenever the two could differ
    import orjson  # type: ignore[import-not-found, unused-ignore]

    _orjson = orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

__all__ = [
    "AuditVerifyError",
    "VerifyReport",
    "entry_problem",
    "verify_entries",
    "verify_log",
]

Progress = Callable[[int, int], None]

_PSEUDONYM = re.compile(re.escape(PSEUDONYM_PREFIX) + r"[0-9a-f]{64}")
_SUBJECT_KINDS = frozenset({"decision", "registry"})
# Every number with a fraction or an exponent, as orjson writes it in an entry it accepts
# (not alone at the top level): a batch holding one is checked by the standard library,
# which rejects such numbers. False hits merely cost time. Two searches with a literal first
# character are several times faster than one with a character class.
_FRACTION = re.compile(rb"\.[0-9]+[,\]}eE]")
_EXPONENT = re.compile(rb"e-?[0-9]+[,\]}]")
_GOOD_SUBJECTS_LIMIT = 100_000
DEFAULT_BATCH_BITS = 14


class AuditVerifyError(InputError):
    """The log (or a checkpoint) is not what its signed checkpoints and entries say.

    ``index`` is the first bad entry's index, ``checkpoint`` the size of the bad checkpoint,
    when the problem has one; ``problem`` is a short code (``altered``, ``missing``,
    ``format``, ``subject``, ``node``, ``signature``, ``root``, ``truncated``, ``since``...).
    """

    def __init__(self, message: str, *, source: str, problem: str,
                 index: int | None = None, checkpoint: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__([Diagnostic(message, source, code=problem, hint=hint)])
        self.problem = problem
        self.index = index
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class VerifyReport:
    """What a successful verification established."""

    size: int
    """Entries in the log, all verified."""
    root: bytes
    """The recomputed RFC 6962 root of all entries."""
    checkpoints: int
    """Signed checkpoints verified (signature, root and consistency)."""
    latest_checkpoint: int | None
    """Size of the largest checkpoint, or None when the log has none."""
    origin: str | None
    """The log's origin (its checkpoints' first line)."""
    keys: tuple[str, ...] = ()
    """The verifier keys (``name+hexid``) that signed at least one checkpoint."""
    since: int | None = None
    """Size of the kept checkpoint the log was shown to extend."""
    seconds: float = 0.0
    consistency_proofs: int = 0
    """Explicit consistency proofs between successive checkpoints checked."""
    policies: int = 0
    """Policy texts found intact under their digests (log verification only)."""

    @property
    def unsigned(self) -> int:
        """Entries after the latest checkpoint: intact, but not yet signed for."""
        return self.size - (self.latest_checkpoint or 0)

    @property
    def root_base64(self) -> str:
        return _b64encode(self.root)

    @property
    def entries_per_second(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else float("inf")


# --------------------------------------------------------------------------- entries


def _reject_number(text: str) -> Any:
    raise ValueError("a fractional or non-finite number")


def entry_problem(data: bytes) -> str | None:
    """Why ``data`` is not a well-formed log entry (None when it is one).

    The entry must be UTF-8 canonical JSON as flowguard writes it (sorted keys, no
    whitespace, re-encoding gives the same bytes, no fractional numbers), an object, and
    name its subject, if any, only by an ``hmac-sha256:`` pseudonym.  The message never
    repeats the entry's content.
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    try:
        value = json.loads(text, parse_float=_reject_number, parse_constant=_reject_number)
    except ValueError as exc:
        reason = str(exc) if "fractional" in str(exc) else "it does not parse"
        return f"is not JSON as flowguard writes it: {reason}"
    try:
        again = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return "is not canonical JSON: it holds an unpaired surrogate"
    if again != data:
        return "is not canonical JSON: re-encoding it gives different bytes"
    return _subject_problem(value)


def _subject_problem(value: Any) -> str | None:
    if type(value) is not dict:
        return "is not a JSON object"
    subject = value.get("subject")
    if subject is None:
        if "subject" in value or value.get("kind") in _SUBJECT_KINDS:
            return "has no pseudonymised subject"
        return None
    if type(subject) is not str or not _PSEUDONYM.fullmatch(subject):
        return (f"names its subject without a pseudonym (the subject field must be "
                f"{PSEUDONYM_PREFIX}<64 hex digits>)")
    return None


class _EntryChecker:
    """The format check of a batch of entries, fast when every entry is fine."""

    def __init__(self) -> None:
        self._good_subjects: set[str] = set()

    def first_bad(self, entries: Sequence[bytes]) -> tuple[int, str] | None:
        values = self._fast_values(entries)
        if values is None:  # the authoritative, slower check, entry by entry
            for offset, data in enumerate(entries):
                problem = entry_problem(data)
                if problem is not None:
                    return offset, problem
            return None
        good = self._good_subjects
        for offset, value in enumerate(values):
            if type(value) is dict:
                subject = value.get("subject")
                if subject in good:
                    continue
            problem = _subject_problem(value)
            if problem is not None:
                return offset, problem
            if type(subject) is str:
                if len(good) >= _GOOD_SUBJECTS_LIMIT:
                    good.clear()
                good.add(subject)
        return None

    @staticmethod
    def _fast_values(entries: Sequence[bytes]) -> list[Any] | None:
        """The parsed entries when orjson finds every one canonical and none holds a
        number the two encoders could spell differently; otherwise None."""
        if _orjson is None:
            return None
        try:
            loads, dumps, sort = _orjson.loads, _orjson.dumps, _orjson.OPT_SORT_KEYS
            values = [loads(data) for data in entries]
            # each entry parsed alone, so the array of their encodings equals the array of
            # the entries only if each encoding equals its entry (JSON parses one way)
            joined = b",".join(entries)
            if memoryview(dumps(values, option=sort))[1:-1] != joined:
                return None
        except Exception:  # malformed JSON, integers beyond 64 bits...
            return None
        if _FRACTION.search(joined) is not None or _EXPONENT.search(joined) is not None:
            return None
        return values


# --------------------------------------------------------------------------- the tree


def _fold(hashes: Sequence[bytes]) -> bytes:
    acc = hashes[-1]
    sha = hashlib.sha256
    for left in reversed(hashes[:-1]):
        acc = sha(b"\x01" + left + acc).digest()
    return acc


class _Tree:
    """The tree recomputed batch by batch: batches of ``2**bits`` leaves aligned on their
    size, each hashed up to its root, whose roots feed a compact range above them."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.width = 1 << bits
        self.upper = CompactRange()
        self.upper_nodes: dict[NodeKey, bytes] = {}
        self.start = 0
        self.levels: list[list[bytes]] = [[]]

    def add(self, start: int, leaves: list[bytes]) -> list[list[bytes]]:
        """Hash a batch; returns its complete nodes, level by level (level 0: leaves)."""
        sha = hashlib.sha256
        levels = [leaves]
        current = leaves
        while len(current) >= 2:
            current = [sha(b"\x01" + left + right).digest()
                       for left, right in zip(current[0::2], current[1::2], strict=False)]
            levels.append(current)
        if len(leaves) == self.width:
            for level, index, digest in self.upper.append(levels[self.bits][0]):
                self.upper_nodes[(level + self.bits, index)] = digest
        self.start = start
        self.levels = levels
        return levels

    def frontier(self, size: int) -> list[bytes]:
        """The complete-subtree hashes covering ``[0, size)``, for a size within the
        current batch (or at its end)."""
        out = []
        start, levels = self.start, self.levels
        for level, index in frontier_keys(size):
            if index << level >= start:
                out.append(levels[level][index - (start >> level)])
            else:
                out.append(self.upper_nodes[(level, index)])
        return out

    def root(self, size: int) -> bytes:
        return _fold(self.frontier(size)) if size else EMPTY_ROOT

    def upper_levels(self) -> dict[int, list[tuple[int, bytes]]]:
        """The recomputed nodes above the batches, by level, in index order."""
        by_level: dict[int, list[tuple[int, bytes]]] = {}
        for (level, index), digest in sorted(self.upper_nodes.items()):
            if level > self.bits:
                by_level.setdefault(level, []).append((index, digest))
        return by_level


# --------------------------------------------------------------------------- checkpoints


@dataclass
class _Checkpoint:
    """A stored checkpoint: its table size, its note, and what opening it gave."""

    stored_size: int
    note: str
    checkpoint: Checkpoint | None = None
    error: str | None = None
    keys: tuple[str, ...] = ()


def _open(note: str, verifiers: Sequence[Verifier]) -> tuple[Checkpoint | None, str | None,
                                                            tuple[str, ...]]:
    try:
        checkpoint = open_checkpoint(note, verifiers)
    except (NoteError, CheckpointError, ValueError) as exc:
        return None, str(exc), ()
    known = {(v.name, v.key_id) for v in verifiers}
    try:
        keys = tuple(sorted(f"{s.name}+{s.key_id:08x}" for s in parse_note(note).signatures
                            if (s.name, s.key_id) in known))
    except NoteError:  # pragma: no cover - it opened
        keys = ()
    return checkpoint, None, keys


@dataclass
class _Run:
    """One verification: its sources and what has been established so far."""

    source: str
    size: int
    verifiers: Sequence[Verifier]
    checkpoints: list[_Checkpoint]
    since_note: str | None
    progress: Progress | None
    bits: int
    stored_nodes: Callable[[int, int, int], list[tuple[int, bytes]]] | None = None
    origin: str | None = None
    since: Checkpoint | None = None
    roots: dict[int, bytes] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    check_entries: bool = True

    def fail(self, message: str, problem: str, *, index: int | None = None,
             checkpoint: int | None = None, hint: str | None = None) -> AuditVerifyError:
        return AuditVerifyError(message, source=self.source, problem=problem, index=index,
                                checkpoint=checkpoint, hint=hint)

    # ------------------------------------------------------------------ before the entries

    def open_since(self) -> None:
        if self.since_note is None:
            return
        checkpoint, error, _ = _open(self.since_note, self.verifiers)
        if checkpoint is None:
            raise self.fail(f"the kept checkpoint does not verify with the given keys: {error}",
                            "since", hint="give the log's verifier keys with --vkey")
        self.since = checkpoint

    def open_checkpoints(self) -> None:
        for cp in self.checkpoints:
            cp.checkpoint, cp.error, cp.keys = _open(cp.note, self.verifiers)
            if cp.checkpoint is not None and self.origin is None:
                self.origin = cp.checkpoint.origin
        if self.since is not None:
            if self.origin is not None and self.since.origin != self.origin:
                raise self.fail(f"the kept checkpoint is for the log {self.since.origin!r}, "
                                f"not {self.origin!r}", "since")
            self.origin = self.origin or self.since.origin
            if self.since.size > self.size:
                raise self.fail(
                    f"the log has {counted(self.size, 'entry', 'entries')} but the kept "
                    "checkpoint covers "
                    f"{self.since.size}: the log was truncated", "truncated",
                    checkpoint=self.since.size)

    def check_checkpoint(self, cp: _Checkpoint, tree: _Tree) -> None:
        size = cp.stored_size
        if cp.checkpoint is None:
            raise self.fail(f"checkpoint at size {size}: {cp.error}", "signature",
                            checkpoint=size,
                            hint="no valid signature by a known key: forged, or signed by a "
                                 "key not given with --vkey")
        checkpoint = cp.checkpoint
        if checkpoint.size != size:
            raise self.fail(f"checkpoint stored at size {size} says size {checkpoint.size}",
                            "checkpoint", checkpoint=size)
        if checkpoint.origin != self.origin:
            raise self.fail(f"checkpoint at size {size} is for the log {checkpoint.origin!r}, "
                            f"not {self.origin!r}", "origin", checkpoint=size)
        root = tree.root(size)
        if checkpoint.root_hash != root:
            previous = max((s for s in self.roots if s < size), default=0)
            raise self.fail(
                f"checkpoint at size {size} does not match the entries: an entry between "
                f"{previous} and {size - 1} was altered, or the log was rewritten",
                "root", checkpoint=size, index=previous)
        self.roots[size] = root
        self.keys.update(cp.keys)

    def check_since(self, tree: _Tree) -> None:
        assert self.since is not None
        if tree.root(self.since.size) != self.since.root_hash:
            raise self.fail(
                f"the log no longer extends the kept checkpoint: its first "
                f"{self.since.size} entries hash to a different root (the log was rewritten "
                "or forked)", "since", checkpoint=self.since.size)

    # ------------------------------------------------------------------ the entries

    def run(self, batches: Iterator[tuple[int, list[tuple[int, bytes]]]]) -> _Tree:
        tree = _Tree(self.bits)
        checker = _EntryChecker()
        pending = [cp for cp in self.checkpoints if cp.stored_size <= self.size]
        pending.sort(key=lambda cp: cp.stored_size)
        for cp in pending:  # size 0 needs no entries
            if cp.stored_size == 0:
                self.check_checkpoint(cp, tree)
        pending = [cp for cp in pending if cp.stored_size > 0]
        since_size = self.since.size if self.since is not None and self.since.size else None
        position = 0
        sha = hashlib.sha256
        for start, rows in batches:
            end = min(start + tree.width, self.size)
            first_bad: tuple[int, str, str] | None = None  # (index, problem code, message)
            if len(rows) != end - start or (rows and (rows[0][0] != start
                                                       or rows[-1][0] != end - 1)):
                missing = next((start + i for i, (index, _) in enumerate(rows)
                                if index != start + i), start + len(rows))
                first_bad = (missing, "missing",
                             f"entry {missing} is missing (the entries are not numbered "
                             f"0 to {self.size - 1} without gaps)")
                rows = rows[:missing - start]
            entries = [row[1] for row in rows]
            leaves = [sha(b"\x00" + data).digest() for data in entries]
            if self.stored_nodes is not None:
                offset = _mismatch(self.stored_nodes(0, start, start + len(leaves)), start,
                                   leaves)
                if offset is not None:
                    index = start + offset
                    if first_bad is None or index < first_bad[0]:
                        first_bad = (index, "altered",
                                     f"entry {index} does not hash to the tree's leaf {index}: "
                                     "the entry (or the stored leaf hash) was altered")
            bad_format = checker.first_bad(entries) if self.check_entries else None
            if bad_format is not None:
                index = start + bad_format[0]
                if first_bad is None or index < first_bad[0]:
                    code = "subject" if "subject" in bad_format[1] else "format"
                    first_bad = (index, code, f"entry {index} {bad_format[1]}")
            limit = first_bad[0] if first_bad is not None else end
            if first_bad is not None:
                leaves = leaves[:limit - start]
            levels = tree.add(start, leaves)
            while pending and pending[0].stored_size <= limit:
                self.check_checkpoint(pending.pop(0), tree)
            if since_size is not None and since_size <= limit:
                self.check_since(tree)
                since_size = None
            if first_bad is not None:
                raise self.fail(first_bad[2], first_bad[1], index=first_bad[0])
            if self.stored_nodes is not None:
                self._check_levels(levels, start)
            position = end
            if self.progress is not None:
                self.progress(position, self.size)
        if position != self.size:  # pragma: no cover - batches always reach the size
            raise self.fail(f"entry {position} is missing", "missing", index=position)
        if pending:
            cp = pending[0]
            raise self.fail(f"checkpoint at size {cp.stored_size} lies beyond the log's "
                            f"{counted(self.size, 'entry', 'entries')}", "truncated",
                            checkpoint=cp.stored_size)
        for cp in self.checkpoints:
            if cp.stored_size > self.size:
                raise self.fail(
                    f"checkpoint at size {cp.stored_size} is larger than the log, which has "
                    f"{counted(self.size, 'entry', 'entries')}: the log was truncated", "truncated",
                    checkpoint=cp.stored_size)
        if since_size is not None:  # pragma: no cover - reached within the batches
            self.check_since(tree)
        return tree

    def _check_levels(self, levels: list[list[bytes]], start: int) -> None:
        assert self.stored_nodes is not None
        for level in range(1, len(levels)):
            first = start >> level
            hashes = levels[level]
            offset = _mismatch(self.stored_nodes(level, first, first + len(hashes)), first,
                               hashes)
            if offset is not None:
                self._node_error(level, first + offset)

    def _node_error(self, level: int, index: int) -> None:
        begin, end = index << level, ((index + 1) << level) - 1
        raise self.fail(
            f"the stored tree node at level {level}, index {index} (over entries {begin} to "
            f"{end}) differs from the one recomputed from the entries: proofs served from it "
            "would be wrong", "node", index=begin)

    # ------------------------------------------------------------------ after the entries

    def check_upper(self, tree: _Tree) -> None:
        assert self.stored_nodes is not None
        for level, expected in sorted(tree.upper_levels().items()):
            hashes = [digest for _, digest in expected]
            offset = _mismatch(self.stored_nodes(level, 0, len(hashes)), 0, hashes)
            if offset is not None:
                self._node_error(level, offset)

    def check_consistency(self, reader: Any) -> int:
        sizes = sorted(s for s in self.roots if s > 0)
        checked = 0
        for old, new in pairwise(sizes):
            try:
                proof = consistency_proof(old, new, reader)
                verify_consistency(old, new, self.roots[old], self.roots[new], proof)
            except (MerkleError, InputError) as exc:
                raise self.fail(f"checkpoints at sizes {old} and {new}: the consistency proof "
                                f"served from the stored tree fails: {exc}", "consistency",
                                checkpoint=new) from None
            checked += 1
        return checked

    def report(self, tree: _Tree, started: float, consistency: int = 0,
               policies: int = 0) -> VerifyReport:
        stored = [cp.stored_size for cp in self.checkpoints]
        return VerifyReport(
            size=self.size, root=tree.root(self.size) if self.size else EMPTY_ROOT,
            checkpoints=len(self.checkpoints), latest_checkpoint=max(stored, default=None),
            origin=self.origin, keys=tuple(sorted(self.keys)),
            since=self.since.size if self.since is not None else None,
            seconds=time.perf_counter() - started, consistency_proofs=consistency,
            policies=policies)


def _mismatch(rows: Sequence[tuple[int, bytes]], first: int,
              hashes: Sequence[bytes]) -> int | None:
    """The offset of the first stored node ``(index, hash)`` that is not the recomputed
    ``hashes[offset]`` at index ``first + offset`` (or is missing); None when all match."""
    count = len(hashes)
    if (len(rows) == count and (not count or (rows[0][0] == first
                                              and rows[-1][0] == first + count - 1))
            and [row[1] for row in rows] == hashes):
        return None
    for offset, (index, digest) in enumerate(rows[:count]):
        if index != first + offset or digest != hashes[offset]:
            return offset
    return min(len(rows), count - 1)


# --------------------------------------------------------------------------- a database


def _check_bits(batch_bits: int) -> None:
    if not 1 <= batch_bits <= 24:
        raise ValueError("batch_bits must be between 1 and 24")


def verify_log(log: AuditLog, verifiers: Sequence[Verifier], *, since: str | None = None,
               progress: Progress | None = None, batch_bits: int = DEFAULT_BATCH_BITS,
               check_entries: bool = True) -> VerifyReport:
    """Verify a whole audit log (see the module's documentation); raises
    :class:`AuditVerifyError` naming the first problem, in log order.

    ``verifiers`` are the log's keys (all of them, after a rotation); ``since`` is the text
    of a signed checkpoint kept from an earlier look at the log; ``progress(done, total)``
    is called after each batch of entries. ``check_entries=False`` skips the check that each
    entry is canonical JSON naming its subject by pseudonym (about three times faster; the
    tree, signatures and stored nodes are checked all the same).
    """
    _check_bits(batch_bits)
    started = time.perf_counter()
    db = log.db
    blob = bytes if db.dialect == "sqlite" else _pg_bytes
    source = redact_url(log.url)
    # checkpoints before the size: a checkpoint is committed with the head it signs, so
    # none read here can be larger than the size read next (concurrent appends are fine)
    checkpoints = [_Checkpoint(size, note) for size, note in log.checkpoints()]
    head = db.read_one("SELECT size, frontier FROM audit_head WHERE id = 1")
    if head is None:
        raise AuditVerifyError("the log has no head row", source=source, problem="head")
    size = int(head[0])
    run = _Run(source, size, verifiers, checkpoints, since, progress, batch_bits)
    run.check_entries = check_entries

    def stored_nodes(level: int, lo: int, hi: int) -> list[tuple[int, bytes]]:
        rows = db.read("SELECT idx, hash FROM audit_nodes WHERE level = ? AND idx >= ? AND "
                       "idx < ? ORDER BY idx", (level, lo, hi))
        if blob is bytes:
            return cast(list[tuple[int, bytes]], rows)  # (int, bytes) rows from SQLite
        return [(int(i), blob(h)) for i, h in rows]

    def batches() -> Iterator[tuple[int, list[tuple[int, bytes]]]]:
        width = 1 << batch_bits
        for start in range(0, size, width):
            rows = db.read("SELECT idx, entry FROM audit_entries WHERE idx >= ? AND idx < ? "
                           "ORDER BY idx", (start, min(start + width, size)))
            if blob is not bytes:
                rows = [(int(i), blob(e)) for i, e in rows]
            yield start, cast(list[tuple[int, bytes]], rows)

    run.stored_nodes = stored_nodes
    run.open_since()
    run.open_checkpoints()
    with gc_paused():  # millions of short-lived, acyclic objects
        tree = run.run(batches())
    _check_extras(run, db, size)
    run.check_upper(tree)
    frontier = [bytes.fromhex(h) for h in str(head[1]).split(",") if h]
    if frontier != (tree.frontier(size) if size else []):
        raise run.fail("the log head's frontier does not match the entries: appends would "
                       "extend a different tree", "head")
    consistency = run.check_consistency(log)
    policies = _check_policies(run, log)
    return run.report(tree, started, consistency, policies)


def _pg_bytes(value: Any) -> bytes:
    return bytes(value)


def _check_extras(run: _Run, db: Any, size: int) -> None:
    """No entry or node outside the tree (index lookups only). Appends may have committed
    meanwhile: each commits its rows with the head that covers them, so the head is read
    again after the rows, and anything it does not cover was not appended."""
    low = db.read_one("SELECT min(idx) FROM audit_entries")
    high = db.read_one("SELECT max(idx) FROM audit_entries")
    top = db.read_one("SELECT max(level) FROM audit_nodes")
    bounds = []
    for level in range(64):
        lo = db.read_one("SELECT min(idx) FROM audit_nodes WHERE level = ?", (level,))
        hi = db.read_one("SELECT max(idx) FROM audit_nodes WHERE level = ?", (level,))
        if (lo is None or lo[0] is None) and (top is None or top[0] is None
                                              or level > int(top[0])):
            break
        bounds.append((level, lo, hi))
    head = db.read_one("SELECT size FROM audit_head WHERE id = 1")
    now = max(size, int(head[0])) if head is not None else size
    if low and low[0] is not None and int(low[0]) < 0:
        raise run.fail(f"entry {int(low[0])} has a negative index", "extra", index=0)
    if high and high[0] is not None and int(high[0]) >= now:
        raise run.fail(f"entry {now} exists beyond the log head's size {now}: it is not "
                       "part of the tree (inserted, or the head was rolled back)", "extra",
                       index=now)
    if top and top[0] is not None and int(top[0]) >= now.bit_length():
        raise run.fail(f"the tree holds nodes at level {int(top[0])}, above the top of a "
                       f"tree of {now} entries", "node")
    for level, lo, hi in bounds:
        if (lo and lo[0] is not None and int(lo[0]) < 0) or \
                (hi and hi[0] is not None and int(hi[0]) >= now >> level):
            raise run.fail(f"the tree holds a node at level {level} beyond the log's "
                           f"{now} entries (left behind by a truncation?)", "node",
                           index=now)


def _check_policies(run: _Run, log: AuditLog) -> int:
    """Every stored policy text hashes to the digest it is stored under."""
    from flowguard.canonical import sha256_digest

    checked = 0
    for digest, text in log.db.read("SELECT digest, canonical FROM audit_policies "
                                    "ORDER BY digest"):
        if sha256_digest(bytes(text)) != digest:
            raise run.fail(f"the policy text stored under {digest} does not hash to it: "
                           "the text was altered, so decisions under it cannot be replayed",
                           "policy")
        checked += 1
    return checked


# --------------------------------------------------------------------------- an export


def verify_entries(entries: Iterable[bytes], checkpoints: Sequence[str],
                   verifiers: Sequence[Verifier], *, since: str | None = None,
                   source: str = "<export>", progress: Progress | None = None,
                   batch_bits: int = DEFAULT_BATCH_BITS,
                   check_entries: bool = True) -> VerifyReport:
    """Verify an exported copy of a log: its entries in order (each exactly the stored
    bytes, e.g. the lines of ``flowguard audit export`` without their newline) and signed
    checkpoint notes.  The checks are those of :func:`verify_log` that need no database.
    Entries past the largest checkpoint are checked for format only: nothing signed covers
    them."""
    _check_bits(batch_bits)
    started = time.perf_counter()
    listed = list(entries)
    size = len(listed)
    parsed: list[_Checkpoint] = []
    for note in checkpoints:
        checkpoint, error, keys = _open(note, verifiers)
        stored = checkpoint.size if checkpoint is not None else _claimed_size(note)
        parsed.append(_Checkpoint(stored, note, checkpoint, error, keys))
    parsed.sort(key=lambda cp: cp.stored_size)
    run = _Run(source, size, verifiers, parsed, since, progress, batch_bits)
    run.check_entries = check_entries
    run.open_since()
    for cp in parsed:
        if cp.checkpoint is not None and run.origin is None:
            run.origin = cp.checkpoint.origin
    if run.since is not None:
        if run.origin is not None and run.since.origin != run.origin:
            raise run.fail(f"the kept checkpoint is for the log {run.since.origin!r}, not "
                           f"{run.origin!r}", "since")
        run.origin = run.origin or run.since.origin
        if run.since.size > size:
            raise run.fail(f"the export has {counted(size, 'entry', 'entries')} but the "
                           "kept checkpoint covers "
                           f"{run.since.size}: entries are missing", "truncated",
                           checkpoint=run.since.size)

    def batches() -> Iterator[tuple[int, list[tuple[int, bytes]]]]:
        width = 1 << batch_bits
        for start in range(0, size, width):
            yield start, list(enumerate(listed[start:start + width], start))

    with gc_paused():
        tree = run.run(batches())
    return run.report(tree, started)


def _claimed_size(note: str) -> int:
    """The size an unverifiable checkpoint claims (to report it in order), else 0."""
    lines = note.split("\n")
    try:
        return int(lines[1]) if len(lines) > 1 else 0
    except ValueError:
        return 0
