"""The log's side of C2SP tlog-witness: submit the latest checkpoint to each witness with the
consistency proof it needs, learn a witness's size from a 409, verify the cosignature it
returns and keep it with the checkpoint (:mod:`flowguard.audit.cosigned`)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from flowguard._plain import counted
from flowguard.audit.checkpoint import Checkpoint, CheckpointError
from flowguard.audit.cosignature import CosignatureVerifier, verify_cosignatures
from flowguard.audit.cosigned import store_cosignature, witnessed_size
from flowguard.audit.log import AuditLog
from flowguard.audit.note import KeyFormatError, NoteError, _b64encode, parse_note
from flowguard.witness.service import SIZE_CONTENT_TYPE

MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class WitnessTarget:
    """A witness: its submission prefix and its cosignature verifier key."""

    url: str
    verifier: CosignatureVerifier

    @property
    def name(self) -> str:
        return self.verifier.name


def parse_witness(value: str) -> WitnessTarget:
    """`URL=VKEY` (URL is the submission prefix). Raises ValueError naming what is wrong."""
    url, sep, vkey = value.rpartition("=")  # an Ed25519 vkey's base64 has no padding
    if not sep or not url or not vkey:
        raise ValueError("expected URL=VKEY (the witness's submission prefix, '=', and its "
                         "verifier key)")
    if not url.startswith(("http://", "https://")):
        raise ValueError("the witness URL must start with http:// or https://")
    try:
        verifier = CosignatureVerifier(vkey)
    except KeyFormatError as exc:
        raise ValueError(f"not a witness verifier key ({exc})") from None
    return WitnessTarget(url.rstrip("/"), verifier)


@dataclass(frozen=True)
class WitnessResult:
    target: WitnessTarget
    cosigned: bool
    reason: str = ""


def _post(url: str, body: bytes, timeout: float) -> tuple[int, str, str]:
    request = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(MAX_RESPONSE_BYTES)
            return response.status, response.headers.get("Content-Type", ""), \
                data.decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        data = exc.read(MAX_RESPONSE_BYTES)
        return exc.code, exc.headers.get("Content-Type", ""), data.decode("utf-8", "replace")


def _printable(text: str, limit: int = 200) -> str:
    """A witness's words, safe to print: first line, printable characters only, cut short."""
    first = text.strip().split("\n", 1)[0][:limit]
    return "".join(ch if ch.isprintable() else "?" for ch in first)


def request_cosignature(log: AuditLog, note: str, target: WitnessTarget,
                        timeout: float = 10.0) -> WitnessResult:
    """Submit `note` (the log's signed checkpoint) to one witness; keep its cosignature."""
    try:
        checkpoint = Checkpoint.parse(parse_note(note).text)
    except (NoteError, CheckpointError) as exc:
        return WitnessResult(target, False, f"the log's checkpoint is unreadable: {exc}")
    size = checkpoint.size
    old = witnessed_size(log, target.verifier.vkey)
    if old > size:
        old = 0
    for _attempt in range(3):
        proof = log.consistency_proof(old, size) if 0 < old < size else []
        body = (f"old {old}\n" + "".join(_b64encode(h) + "\n" for h in proof) + "\n"
                + note).encode("utf-8")
        try:
            status, content_type, text = _post(target.url, body, timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return WitnessResult(target, False, f"unreachable ({_printable(str(reason))})")
        if status == 200:
            return _accept(log, note, size, target, text)
        if status == 409 and content_type.split(";")[0].strip() == SIZE_CONTENT_TYPE:
            line = text.strip()
            if not line.isdigit():
                return WitnessResult(target, False, "409 without a tree size")
            theirs = int(line)
            if theirs > size:
                return WitnessResult(target, False, "the witness has cosigned a larger tree "
                                     f"({counted(theirs, 'entry', 'entries')}) than this "
                                     f"checkpoint ({size}): the log was rolled back, or forked")
            if theirs == old:
                return WitnessResult(target, False, f"the witness holds another root for "
                                     f"size {theirs}: the log was forked")
            old = theirs
            continue
        words = {400: "the witness found the request malformed",
                 403: "the witness does not accept the log's key",
                 404: "the witness does not know this log",
                 422: "the log does not extend what the witness cosigned (a fork or a "
                      "rewrite)"}
        detail = _printable(text)
        if status in words:
            said = f" ({detail})" if status == 400 and detail else ""
            return WitnessResult(target, False, f"HTTP {status}: {words[status]}{said}")
        return WitnessResult(target, False, f"HTTP {status}"
                             + (f" ({detail})" if detail else ""))
    return WitnessResult(target, False, "the witness's size kept changing")


def _accept(log: AuditLog, note: str, size: int, target: WitnessTarget,
            text: str) -> WitnessResult:
    lines = [line + "\n" for line in text.split("\n") if line]
    if not lines or len(text) > MAX_RESPONSE_BYTES:
        return WitnessResult(target, False, "the witness returned no cosignature")
    try:
        found = verify_cosignatures(note + "".join(lines), [target.verifier])
    except NoteError as exc:
        return WitnessResult(target, False, f"the witness returned a bad cosignature ({exc})")
    cosignature = found.get(target.verifier.vkey)
    if cosignature is None:
        return WitnessResult(target, False, "the witness returned no cosignature by its key")
    store_cosignature(log, size, target.verifier.vkey, cosignature.line)
    return WitnessResult(target, True)


def collect_cosignatures(log: AuditLog, targets: Sequence[WitnessTarget],
                         timeout: float = 10.0, *, sign: bool = True
                         ) -> tuple[str, list[WitnessResult]]:
    """Submit the latest checkpoint to every witness (signing one that covers the whole log
    first when `sign`, the log has a key and the latest does not). Returns the checkpoint
    note and each witness's outcome."""
    note = log.latest_checkpoint()
    if sign and log.signer is not None and (note is None or _size(note) < log.size):
        note = log.checkpoint()
    if note is None:
        raise ValueError("the log has no checkpoint")
    return note, [request_cosignature(log, note, target, timeout) for target in targets]


def _size(note: str) -> int:
    return Checkpoint.parse(parse_note(note).text).size
