"""`flowguard witness` (a partner's witness: keygen, serve) and `flowguard audit witness`
(the log collects cosignatures). A thin shell over `flowguard.witness`.

Exit codes: 0 ok; 1 a witness refused (or, without --log-key, the latest checkpoint does not
cover the whole log); 2 bad input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from flowguard._cli_common import EXIT_DENY, err, fail_input, out
from flowguard._plain import counted
from flowguard.errors import Diagnostic, InputError

_F = TypeVar("_F", bound=Callable[..., Any])


def _bad(message: str, place: str = "<options>", code: str = "invalid",
         hint: str | None = None) -> NoReturn:
    fail_input(InputError([Diagnostic(message, place, code=code, hint=hint)]))


def load_cosigner(path: str) -> Any:
    """The witness's key from its file (mode 0600, as `witness keygen` writes)."""
    from flowguard.audit.cosignature import Cosigner
    from flowguard.audit.entries import read_secret
    from flowguard.audit.note import KeyFormatError

    try:
        text = read_secret(Path(path), "witness key").strip()
    except InputError as exc:
        fail_input(exc)
    try:
        return Cosigner(text)
    except KeyFormatError as exc:
        _bad(f"not a witness key ({exc})", path, code="key",
             hint="give the file `flowguard witness keygen --out FILE` wrote")


def parse_witnesses(values: Sequence[str], option: str = "--witness") -> list[Any]:
    from flowguard.witness.client import parse_witness

    targets = []
    for value in values:
        try:
            targets.append(parse_witness(value))
        except ValueError as exc:
            _bad(str(exc), option, code="witness",
                 hint="write URL=VKEY, e.g. https://witness.example/=name+1234abcd+BASE64")
    if len({t.verifier.vkey for t in targets}) < len(targets):
        _bad("the same witness key is given twice", option, code="witness")
    return targets


@click.group("witness")
def witness() -> None:
    """Run a witness (C2SP tlog-witness) that cosigns another organization's audit log."""


@witness.command("keygen")
@click.option("--name", required=True,
              help="The witness's name, e.g. witness.carehome.example/flowguard.")
@click.option("--out", "out_file", required=True,
              help="Write the private key here (mode 0600; never overwritten).")
def witness_keygen(name: str, out_file: str) -> None:
    """Create an Ed25519 witness key and print its verifier key (C2SP tlog-cosignature,
    type 0x04), which the log and its auditors pass as --witness URL=VKEY and
    --witness-vkey."""
    from flowguard._cli_audit import write_new_key
    from flowguard.audit.cosignature import generate_cosigner_key

    write_new_key(generate_cosigner_key, name, out_file)


def _logs(values: Sequence[str]) -> dict[str, list[Any]]:
    from flowguard.audit.note import KeyFormatError, Verifier

    logs: dict[str, list[Any]] = {}
    for value in values:
        origin, sep, vkey = value.partition("=")
        if not sep or not origin or not vkey:
            _bad("expected ORIGIN=VKEY", "--log", code="log",
                 hint="the log's origin, '=', and the verifier key `flowguard keys "
                      "generate` printed")
        try:
            verifier = Verifier(vkey)
        except KeyFormatError as exc:
            _bad(f"not a log verifier key ({exc})", "--log", code="key")
        logs.setdefault(origin, []).append(verifier)
    return logs


@witness.command("serve")
@click.option("--key", "key_file", required=True, envvar="FLOWGUARD_WITNESS_KEY",
              help="The witness key file (env FLOWGUARD_WITNESS_KEY).")
@click.option("--log", "logs", multiple=True, required=True,
              help="A log to witness: ORIGIN=VKEY (repeat for more logs, or for a log's "
                   "rotated keys).")
@click.option("--state", "state_url", required=True, envvar="FLOWGUARD_WITNESS_STATE",
              help="Where the witness keeps what it cosigned: sqlite:///path.db or "
                   "postgresql://... (env FLOWGUARD_WITNESS_STATE).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=int)
def witness_serve(key_file: str, logs: Sequence[str], state_url: str, host: str,
                  port: int) -> None:
    """Serve `POST /add-checkpoint` (C2SP tlog-witness): cosign a log's checkpoint only
    when its signature verifies and it extends the last one cosigned for that log."""
    import uvicorn

    from flowguard.witness.app import create_witness_app
    from flowguard.witness.service import Witness
    from flowguard.witness.state import WitnessState

    cosigner = load_cosigner(key_file)
    verifiers = _logs(logs)
    try:
        state = WitnessState.open(state_url)
    except InputError as exc:
        fail_input(exc)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("flowguard.witness").info(
        "witness %s for %d log(s) on %s:%d", cosigner.name, len(verifiers), host, port)
    app = create_witness_app(Witness(cosigner, verifiers, state))
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


@click.command("witness")
@click.option("--audit", "audit_url", envvar="FLOWGUARD_AUDIT", required=True,
              help="The audit log (sqlite:///path.db or postgresql://...; env "
                   "FLOWGUARD_AUDIT).")
@click.option("--witness", "witnesses", multiple=True, required=True,
              help="A witness: URL=VKEY, URL its submission prefix (/add-checkpoint is "
                   "appended). Repeat for each.")
@click.option("--log-key", "log_key", envvar="FLOWGUARD_LOG_KEY",
              help="The log's signing key, to sign a checkpoint covering the whole log "
                   "first (env FLOWGUARD_LOG_KEY).")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 300),
              help="Seconds to wait for each witness.")
def audit_witness(audit_url: str, witnesses: Sequence[str], log_key: str | None,
                  timeout: float) -> None:
    """Submit the latest checkpoint to each witness with the consistency proof it needs and
    keep the cosignatures with the checkpoint. With --log-key, a checkpoint of the whole log
    is signed first when the latest does not cover it; without, the entries it leaves out are
    counted and the exit is 1. Exit 0 when every witness cosigned, 1 when any refused (each
    refusal is listed with its reason)."""
    from flowguard._cli_audit import _log
    from flowguard.store._db import redact_url
    from flowguard.witness.client import collect_cosignatures

    targets = parse_witnesses(witnesses)
    with _log(audit_url, log_key) as log:
        if log.signer is None and log.latest_checkpoint() is None:
            _bad("the log has no checkpoint to submit", audit_url, code="missing",
                 hint="give --log-key to sign one")
        note, results = collect_cosignatures(log, targets, timeout)
        size = note.split("\n", 2)[1]
        log_size = log.size
        uncovered = log_size - _size(note)
    refused = [r for r in results if not r.cosigned]
    for result in results:
        if result.cosigned:
            out.print(f"cosigned by {result.target.name} ({result.target.url})", markup=False)
        else:
            err.print(f"REFUSED by {result.target.name} ({result.target.url}): "
                      f"{result.reason}", markup=False)
    out.print(f"checkpoint of {counted(int(size), 'entry', 'entries')}: "
              f"{len(results) - len(refused)} of {counted(len(results), 'witness', 'witnesses')} "
              "cosigned", markup=False)
    if uncovered > 0:
        # issue 18: the checkpoint submitted must cover the whole log; without the log key
        # no fresh one can be signed, so the newest entries are not witnessed: say so
        err.print(Diagnostic(
            f"{counted(uncovered, 'entry', 'entries')} of the log "
            f"{'is' if uncovered == 1 else 'are'} not covered by the latest checkpoint "
            f"({size} of {log_size}), so the witnesses did not see "
            f"{'it' if uncovered == 1 else 'them'}", redact_url(audit_url), code="stale",
            hint="pass --log-key (or set FLOWGUARD_LOG_KEY) to sign a checkpoint of the "
                 "whole log first").render(), markup=False)
    if refused or uncovered > 0:
        sys.exit(EXIT_DENY)


def witness_quorum_options(what: str) -> Callable[[_F], _F]:
    """`--witness-vkey VKEY ... --quorum N` on a command that checks `what`."""
    def decorate(func: _F) -> _F:
        func = click.option("--quorum", type=click.IntRange(0), default=0, show_default=True,
                            help=f"Fail unless {what} carries valid cosignatures by at least "
                                 "this many distinct --witness-vkey keys.")(func)
        return click.option("--witness-vkey", "witness_vkeys", multiple=True,
                            help="A witness's verifier key (repeatable), for --quorum.")(func)
    return decorate


def witness_quorum(vkeys: Sequence[str], quorum: int, all_checkpoints: bool) -> Any:
    """The `audit verify --witness-vkey --quorum [--all-checkpoints]` check: a function of
    the (size-ordered) checkpoint notes and the place to name, exiting 1 on a shortfall."""
    from flowguard.audit.cosignature import CosignatureVerifier
    from flowguard.audit.cosigned import first_witnessed, quorum_problem
    from flowguard.audit.note import KeyFormatError

    verifiers: dict[str, CosignatureVerifier] = {}
    for vkey in vkeys:
        try:
            verifier = CosignatureVerifier(vkey)
        except KeyFormatError as exc:
            _bad(f"not a witness verifier key ({exc})", "--witness-vkey", code="key",
                 hint="give the key `flowguard witness keygen` printed")
        verifiers[verifier.vkey] = verifier
    if quorum > len(verifiers):
        _bad(f"--quorum {quorum} needs at least {quorum} distinct --witness-vkey keys "
             f"({len(verifiers)} given)", "--quorum", code="quorum")
    if all_checkpoints and quorum == 0:
        _bad("--all-checkpoints needs --quorum N", "--all-checkpoints", code="missing")

    def check(checkpoints: Sequence[tuple[int, str]], place: str) -> str | None:
        if quorum == 0:
            return None
        if not checkpoints:
            _failed(place, "no checkpoint to carry cosignatures")
        ordered = [note for _, note in sorted(checkpoints, key=lambda pair: _size(pair[1]))]
        # --all-checkpoints: every checkpoint from the first one a given witness cosigned on
        # (those signed before the log had witnesses cannot carry cosignatures); when none
        # was cosigned, the latest is checked, and fails
        first = first_witnessed(ordered, list(verifiers.values())) if all_checkpoints else None
        chosen = ordered[-1:] if first is None else ordered[first:]
        for note in chosen:
            problem = quorum_problem(note, list(verifiers.values()), quorum)
            if problem is not None:
                _failed(place, f"the checkpoint of {counted(_size(note), 'entry', 'entries')}: "
                               f"{problem}")
        if not all_checkpoints:
            return f"  the latest checkpoint cosigned by at least {quorum} of the given witnesses"
        earlier = len(ordered) - len(chosen)
        text = (f"  all {counted(len(chosen), 'checkpoint')} from the first cosigned one (at "
                f"{_size(chosen[0])} entries) on cosigned by at least {quorum} of the given "
                "witnesses")
        if earlier:
            text += (f"; {counted(earlier, 'earlier checkpoint')}, signed before the "
                     "witnesses cosigned, not checked")
        return text

    return check


def _size(note: str) -> int:
    lines = note.split("\n", 2)
    return int(lines[1]) if len(lines) > 2 and lines[1].isdigit() else -1


def _failed(place: str, message: str) -> NoReturn:
    err.print(Diagnostic(message, place, code="witness").render(), markup=False)
    err.print("FAILED: the witness quorum is not met", markup=False)
    sys.exit(EXIT_DENY)
