"""C2SP transparency-log checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint is the text of a signed note::

    <origin>
    <tree size, ASCII decimal, no leading zeroes>
    <base64 RFC 6962 root hash>
    [extension lines, each non-empty]

The log signs it with a key whose name, by the spec's convention, equals the
origin; :func:`open_checkpoint` requires a verified signature by that key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flowguard.audit.merkle import HASH_SIZE, MAX_TREE_SIZE
from flowguard.audit.note import (
    Signer,
    Verifier,
    _b64decode,
    _b64encode,
    open_note,
    sign_note,
)
from flowguard.errors import FlowguardError

__all__ = ["Checkpoint", "CheckpointError", "open_checkpoint", "sign_checkpoint"]

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class CheckpointError(FlowguardError, ValueError):
    """A checkpoint text is malformed, or is not the expected log's checkpoint."""


def _check_line(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise CheckpointError(f"{what} must be a string")
    if not value:
        raise CheckpointError(f"{what} must not be empty")
    for ch in value:
        if ord(ch) < 0x20:
            raise CheckpointError(
                f"{what} must be a single line without control characters (found U+{ord(ch):04X})"
            )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"{what} is not valid UTF-8") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size, RFC 6962 root hash, optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError("checkpoint tree size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {self.size} is out of range")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        for i, line in enumerate(self.extensions):
            _check_line(line, f"checkpoint extension line {i + 1}")

    def to_text(self) -> str:
        """The note text: origin, size, base64 root, extension lines, each ending in newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text strictly; raise :class:`CheckpointError`."""
        if not isinstance(text, str):
            raise CheckpointError("checkpoint text must be a string")
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint needs origin, size and root hash lines, got {len(lines)} line(s)"
            )
        origin, size_line, root_line, *extensions = lines
        if not origin:
            raise CheckpointError("checkpoint origin line is empty")
        if not _DECIMAL.fullmatch(size_line):
            raise CheckpointError(
                f"checkpoint tree size {size_line!r} is not a decimal without leading zeroes"
            )
        size = int(size_line)
        if size > MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {size_line} is larger than 2**64 - 1")
        try:
            root_hash = _b64decode(root_line)
        except ValueError:
            raise CheckpointError(f"checkpoint root hash {root_line!r} is not base64") from None
        if len(root_hash) != HASH_SIZE:
            raise CheckpointError(
                f"checkpoint root hash is {len(root_hash)} bytes, expected {HASH_SIZE}"
            )
        for i, line in enumerate(extensions):
            if not line:
                raise CheckpointError(f"checkpoint extension line {i + 1} is empty")
        return cls(origin, size, root_hash, tuple(extensions))


def sign_checkpoint(
    checkpoint: Checkpoint, signers: Sequence[Signer], *, log_key_name: str | None = None
) -> str:
    """Sign a checkpoint as a note.

    One signer must be the log's key, named ``log_key_name`` (default: the origin,
    per the spec's convention); further signers (e.g. witnesses) may follow.
    """
    key_name = checkpoint.origin if log_key_name is None else log_key_name
    if not any(s.name == key_name for s in signers):
        raise CheckpointError(f"no signer is the log key {key_name!r}")
    return sign_note(checkpoint.to_text(), signers)


def open_checkpoint(
    note_text: str | bytes,
    verifiers: Iterable[Verifier],
    *,
    origin: str | None = None,
    log_key_name: str | None = None,
) -> Checkpoint:
    """Verify a signed checkpoint and return it.

    The note is opened with all ``verifiers`` (a known key's bad signature rejects
    it, unknown keys are ignored), then a verified signature by the log's key is
    required: the key named ``log_key_name``, by default the checkpoint's origin (the
    spec's convention).  If ``origin`` is given the checkpoint's origin must equal it.

    Raises the :mod:`flowguard.audit.note` errors for the note and
    :class:`CheckpointError` for the checkpoint.
    """
    text, signatures = open_note(note_text, verifiers)
    try:
        checkpoint = Checkpoint.parse(text)
    except CheckpointError as exc:
        raise CheckpointError(f"signed note is not a checkpoint: {exc}") from None
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            f"checkpoint is for origin {checkpoint.origin!r}, expected {origin!r}"
        )
    key_name = checkpoint.origin if log_key_name is None else log_key_name
    if not any(sig.name == key_name for sig in signatures):
        raise CheckpointError(f"checkpoint has no verified signature by the log key {key_name!r}")
    return checkpoint
