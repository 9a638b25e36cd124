"""`flowguard serve --witness URL=VKEY ... --witness-quorum N`: the server submits every new
checkpoint of its audit log to the witnesses in the background (whoever signed it: the
server's group commits or `audit checkpoint --sign`), and with a quorum serves as the log's
checkpoint only the latest one that at least N of those witnesses cosigned, as a Sigsum or
sumdb log publishes only witnessed tree heads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from flowguard.audit.cosigned import quorum_problem, with_cosignatures
from flowguard.audit.log import AuditLog
from flowguard.errors import Diagnostic, InputError
from flowguard.witness.client import WitnessTarget, collect_cosignatures, parse_witness

log = logging.getLogger("flowguard.witness")


class WitnessCollector:
    def __init__(self, audit_log: AuditLog, witnesses: Sequence[str], quorum: int,
                 interval: float = 1.0, timeout: float = 10.0) -> None:
        targets: list[WitnessTarget] = []
        for value in witnesses:
            try:
                targets.append(parse_witness(value))
            except ValueError as exc:
                raise InputError([Diagnostic(str(exc), "--witness", code="witness")]) from None
        if not 0 <= quorum <= len({t.verifier.vkey for t in targets}):
            raise InputError([Diagnostic(
                f"--witness-quorum {quorum} needs at least {quorum} distinct --witness keys",
                "--witness-quorum", code="quorum")])
        self.log, self.targets, self.quorum = audit_log, targets, quorum
        self.interval, self.timeout = interval, timeout
        self.submitted = 0

    def submit_new(self) -> None:
        """Submit the latest checkpoint once (when it is newer than the last submitted)."""
        note = self.log.latest_checkpoint()
        if note is None:
            return
        size = int(note.split("\n", 2)[1])
        if size <= self.submitted:
            return
        _, results = collect_cosignatures(self.log, self.targets, self.timeout, sign=False)
        for result in results:
            if not result.cosigned:
                log.warning("witness %s refused the checkpoint of %d entries: %s",
                            result.target.name, size, result.reason)
        self.submitted = size

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.submit_new)
            except Exception as exc:  # keep collecting; never take the server down
                log.error("collecting cosignatures failed (%s)", type(exc).__name__)
            await asyncio.sleep(self.interval)

    def latest(self) -> str | None:
        """The latest checkpoint with its cosignatures that meets the quorum (any latest
        one when the quorum is 0)."""
        verifiers = [t.verifier for t in self.targets]
        for _, note in reversed(self.log.checkpoints()):
            full = with_cosignatures(self.log, note)
            if self.quorum == 0 or quorum_problem(full, verifiers, self.quorum) is None:
                return full
        return None
