"""Offline-verifiable receipts in the ``c2sp.org/tlog-proof@v1`` format.

A receipt (https://c2sp.org/tlog-proof) proves that an entry is in the log::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>          (optional, NOT authenticated)
    index <zero-based leaf index>
    <base64 inclusion proof hash>       (zero or more, leaf's sibling first)

    <signed checkpoint note, verbatim>

:func:`verify_receipt` needs only the receipt, the entry (or its leaf hash) and the
log's verifier key: it opens the checkpoint and checks the RFC 6962 inclusion proof
against the checkpoint's size and root.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flowguard.audit import merkle
from flowguard.audit.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from flowguard.audit.merkle import HASH_SIZE, MAX_TREE_SIZE, verify_inclusion
from flowguard.audit.note import Verifier, _b64decode, _b64encode, parse_note
from flowguard.errors import FlowguardError

__all__ = [
    "TLOG_PROOF_HEADER",
    "Receipt",
    "ReceiptError",
    "VerifiedReceipt",
    "make_receipt",
    "parse_receipt",
    "verify_receipt",
]

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
"""First line of every receipt."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class ReceiptError(FlowguardError, ValueError):
    """A receipt is not a well-formed ``c2sp.org/tlog-proof@v1`` text."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parsed receipt.  Nothing in it is trusted until :func:`verify_receipt`."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise ReceiptError("receipt index must be an integer")
        if not 0 <= self.index <= MAX_TREE_SIZE:
            raise ReceiptError(f"receipt index {self.index} is out of range")
        if not isinstance(self.proof, tuple):
            object.__setattr__(self, "proof", tuple(self.proof))
        for i, h in enumerate(self.proof):
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise ReceiptError(f"receipt proof hash {i} is not {HASH_SIZE} bytes")
        if self.extra is not None and not isinstance(self.extra, bytes):
            raise ReceiptError("receipt extra data must be bytes")
        if not isinstance(self.checkpoint_note, str) or not self.checkpoint_note:
            raise ReceiptError("receipt has no checkpoint")

    @property
    def checkpoint(self) -> Checkpoint:
        """The checkpoint body, parsed but NOT verified."""
        return _checkpoint_body(self.checkpoint_note)

    def to_text(self) -> str:
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {_b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(_b64encode(h) for h in self.proof)
        return "".join(line + "\n" for line in lines) + "\n" + self.checkpoint_note


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a successfully verified receipt proves."""

    index: int
    leaf_hash: bytes
    checkpoint: Checkpoint
    extra: bytes | None
    """Opaque and unauthenticated: never trust it implicitly."""


def _checkpoint_body(note_text: str) -> Checkpoint:
    split = note_text.rfind("\n\n")
    if split < 0:
        raise ReceiptError("receipt checkpoint is not a signed note (no blank line)")
    try:
        return Checkpoint.parse(note_text[: split + 1])
    except CheckpointError as exc:
        raise ReceiptError(f"receipt checkpoint: {exc}") from None


def parse_receipt(text: str | bytes) -> Receipt:
    """Parse a receipt's structure strictly; raise :class:`ReceiptError`.

    The embedded checkpoint's body is parsed; its signatures are checked only by
    :func:`verify_receipt`.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ReceiptError("receipt is not valid UTF-8") from None
    if not isinstance(text, str):
        raise ReceiptError("receipt must be str or bytes")
    pos = 0

    def next_line() -> str:
        nonlocal pos
        end = text.find("\n", pos)
        if end < 0:
            raise ReceiptError("receipt ends before its checkpoint")
        line = text[pos:end]
        pos = end + 1
        return line

    if next_line() != TLOG_PROOF_HEADER:
        raise ReceiptError(f"receipt must start with the line {TLOG_PROOF_HEADER!r}")
    line = next_line()
    extra: bytes | None = None
    if line.startswith("extra "):
        try:
            extra = _b64decode(line[len("extra ") :])
        except ValueError:
            raise ReceiptError("receipt extra data is not base64") from None
        line = next_line()
    if not line.startswith("index "):
        raise ReceiptError("receipt is missing its 'index <n>' line")
    index_text = line[len("index ") :]
    if not _DECIMAL.fullmatch(index_text):
        raise ReceiptError(f"receipt index {index_text!r} is not a decimal without leading zeroes")
    index = int(index_text)
    if index > MAX_TREE_SIZE:
        raise ReceiptError(f"receipt index {index_text} is larger than 2**64 - 1")
    proof: list[bytes] = []
    while (line := next_line()) != "":
        try:
            digest = _b64decode(line)
        except ValueError:
            raise ReceiptError(f"receipt proof line {len(proof) + 1} is not base64") from None
        if len(digest) != HASH_SIZE:
            raise ReceiptError(
                f"receipt proof hash {len(proof) + 1} is {len(digest)} bytes, expected {HASH_SIZE}"
            )
        proof.append(digest)
    checkpoint_note = text[pos:]
    if not checkpoint_note:
        raise ReceiptError("receipt has no checkpoint")
    _checkpoint_body(checkpoint_note)
    return Receipt(index, tuple(proof), checkpoint_note, extra)


def _resolve_leaf(entry: bytes | None, leaf: bytes | None) -> bytes:
    if entry is None and leaf is None:
        raise ValueError("give the entry bytes or its leaf hash")
    computed = merkle.leaf_hash(entry) if entry is not None else None
    if leaf is not None:
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes")
        if computed is not None and computed != leaf:
            raise ValueError("leaf hash does not match the entry")
        return bytes(leaf)
    assert computed is not None
    return computed


def make_receipt(
    entry_index: int,
    entry: bytes | None,
    proof: Sequence[bytes],
    checkpoint_note: str,
    *,
    leaf_hash: bytes | None = None,
    extra: bytes | None = None,
) -> str:
    """Build a receipt for the entry at ``entry_index``.

    Give the entry bytes, or ``entry=None`` and its ``leaf_hash``.  The signed
    checkpoint is embedded verbatim.  The inclusion proof is checked against the
    checkpoint's size and root first, so an invalid receipt is never produced
    (raises :class:`~flowguard.audit.merkle.ProofError`).  ``extra`` is opaque and
    unauthenticated.
    """
    leaf = _resolve_leaf(entry, leaf_hash)
    if not isinstance(checkpoint_note, str):
        raise ReceiptError("the signed checkpoint must be a str")
    note = parse_note(checkpoint_note)
    try:
        checkpoint = Checkpoint.parse(note.text)
    except CheckpointError as exc:
        raise ReceiptError(f"not a signed checkpoint: {exc}") from None
    hashes = tuple(bytes(h) for h in proof)
    verify_inclusion(leaf, entry_index, checkpoint.size, hashes, checkpoint.root_hash)
    return Receipt(entry_index, hashes, checkpoint_note, extra).to_text()


def verify_receipt(
    text: str | bytes,
    verifiers: Iterable[Verifier],
    *,
    entry: bytes | None = None,
    leaf_hash: bytes | None = None,
    origin: str | None = None,
    log_key_name: str | None = None,
) -> VerifiedReceipt:
    """Verify a receipt for ``entry`` (or its ``leaf_hash``) against the log's key(s).

    Opens the checkpoint with :func:`~flowguard.audit.checkpoint.open_checkpoint`
    (``origin`` and ``log_key_name`` as there), then checks the inclusion proof.
    Raises :class:`ReceiptError`, the note / checkpoint errors, or
    :class:`~flowguard.audit.merkle.ProofError`.
    """
    leaf = _resolve_leaf(entry, leaf_hash)
    receipt = parse_receipt(text)
    checkpoint = open_checkpoint(
        receipt.checkpoint_note, verifiers, origin=origin, log_key_name=log_key_name
    )
    verify_inclusion(leaf, receipt.index, checkpoint.size, receipt.proof, checkpoint.root_hash)
    return VerifiedReceipt(receipt.index, leaf, checkpoint, receipt.extra)
