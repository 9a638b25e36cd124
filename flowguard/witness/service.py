"""The C2SP tlog-witness `add-checkpoint` rules, independent of HTTP.

The body is ``old <size>\\n``, up to 63 base64 consistency-proof lines, an empty line, and a
signed checkpoint note. In the order of the spec (https://c2sp.org/tlog-witness):

* malformed body → 400; unknown origin → 404; no valid signature by the log's key (or a bad
  one by it) → 403; ``old`` larger than the checkpoint's size → 400;
* ``old`` not the size the witness last cosigned (0 if none) → 409 with
  ``Content-Type: text/x.tlog.size`` and that size; the same size with another root → 409;
* a consistency proof that does not verify (a fork, a rewrite) → 422;
* otherwise the new head is persisted (check and update in one locked transaction) and the
  cosignature line is returned (200). A resubmission of the head it holds is cosigned again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flowguard.audit.checkpoint import Checkpoint, CheckpointError
from flowguard.audit.cosignature import Cosigner
from flowguard.audit.merkle import ProofError, verify_consistency
from flowguard.audit.note import NoteError, Verifier, _b64decode, open_note, parse_note
from flowguard.witness.state import StaleSizeError, TreeHead, WitnessState

MAX_BODY_BYTES = 64 * 1024
MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True)
class Outcome:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


def parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """Split an add-checkpoint body into old size, proof hashes and the note (400 if not)."""
    if len(body) > MAX_BODY_BYTES:
        raise _Refused(400, f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "the body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise _Refused(400, "no empty line between the old size and proof lines and the "
                            "checkpoint")
    lines = head.split("\n")
    match = _OLD.fullmatch(lines[0])
    if match is None:
        raise _Refused(400, "the first line must be `old <size>` (decimal, no leading zeroes)")
    old = int(match.group(1))
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise _Refused(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for number, line in enumerate(lines[1:], 2):
        try:
            value = _b64decode(line)
        except ValueError:
            value = b""
        if len(value) != 32:
            raise _Refused(400, f"line {number} is not a base64 SHA-256 hash")
        proof.append(value)
    if old == 0 and proof:
        raise _Refused(400, "the proof must be empty when the old size is 0")
    return old, proof, note


class Witness:
    """Cosigns checkpoints of the configured logs that extend what it cosigned before."""

    def __init__(self, cosigner: Cosigner, logs: Mapping[str, Sequence[Verifier]],
                 state: WitnessState) -> None:
        self.cosigner = cosigner
        self.logs = {origin: list(keys) for origin, keys in logs.items()}
        self.state = state

    def add_checkpoint(self, body: bytes) -> Outcome:
        try:
            line = self._add(body)
        except StaleSizeError as exc:
            return Outcome(409, f"{exc.size}\n", SIZE_CONTENT_TYPE)
        except _Refused as exc:
            return Outcome(exc.status, f"{exc}\n")
        return Outcome(200, line)

    def _add(self, body: bytes) -> str:
        old, proof, note = parse_request(body)
        try:
            parsed = parse_note(note)
            checkpoint = Checkpoint.parse(parsed.text)
        except (NoteError, CheckpointError) as exc:
            raise _Refused(400, f"not a signed checkpoint: {exc}") from None
        verifiers = self.logs.get(checkpoint.origin)
        if verifiers is None:
            raise _Refused(404, "unknown log origin")
        try:
            _, signatures = open_note(note, verifiers)
        except NoteError:
            raise _Refused(403, "the checkpoint is not signed by the log's key") from None
        if not signatures:  # pragma: no cover - open_note raises instead
            raise _Refused(403, "the checkpoint is not signed by the log's key")
        if old > checkpoint.size:
            raise _Refused(400, f"old size {old} is larger than the checkpoint's size "
                                f"{checkpoint.size}")
        new = TreeHead(checkpoint.size, checkpoint.root_hash)

        def check(stored: TreeHead | None) -> None:
            if stored is None or stored.size == 0:
                return  # nothing (or the empty tree) cosigned before: nothing to check
            try:
                verify_consistency(stored.size, new.size, stored.root, new.root, proof)
            except ProofError:
                raise _Refused(422, "the consistency proof does not verify: the checkpoint "
                                    "does not extend the one cosigned before") from None

        self.state.advance(checkpoint.origin, old, new, check)
        return self.cosigner.cosign(parsed.text).line
