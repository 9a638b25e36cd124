"""`flowguard keys` and `flowguard audit`: the audit log's keys, and the auditor's and the
citizen's view of the log (SPEC §9). A thin shell over `flowguard.audit`.

Exit codes: 0 ok; 1 the log, a receipt or a replay does not verify; 2 bad input. No output
ever holds a raw subject id: entries carry pseudonyms, and `--subject` ids are only ever
turned into pseudonyms.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flowguard._cli_common import EXIT_DENY, err, fail_input, out
from flowguard._cli_registry import parse_time
from flowguard._cli_witness import witness_quorum_options
from flowguard._plain import counted
from flowguard._terminal import cell, safe, safe_json, safe_lines
from flowguard.errors import Diagnostic, InputError
from flowguard.store._db import redact_url

_F = TypeVar("_F", bound=Callable[..., Any])

MAX_NOTE_BYTES = 64 * 1024
MAX_ENTRY_BYTES = 16 * 1024 * 1024
MAX_EXPORT_BYTES = 4 * 1024 * 1024 * 1024
PROGRESS_FROM = 50_000
"""Logs with at least this many entries get a progress bar (on a terminal)."""


def _bad(message: str, place: str = "<options>", code: str = "invalid",
         hint: str | None = None) -> NoReturn:
    fail_input(InputError([Diagnostic(message, place, code=code, hint=hint)]))


def _failed(diagnostics: Sequence[Diagnostic], summary: str) -> NoReturn:
    for diagnostic in diagnostics:
        err.print(safe(diagnostic.render()), markup=False)
    err.print(summary, markup=False)
    sys.exit(EXIT_DENY)


def _db_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # pragma: no cover - a declared dependency
        pass
    return tuple(errors)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _log(url: str, log_key: str | None = None) -> Iterator[Any]:
    """The audit log at `url` (never created here), closed afterwards; bad input exits 2."""
    from flowguard.audit.trail import open_audit_log

    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            _bad("no audit log here: the database file does not exist", url, code="store",
                 hint="an audit log is created by the first `flowguard check --audit URL`")
    try:
        log = open_audit_log(url, log_key=log_key, create=False)
    except InputError as exc:
        fail_input(exc)
    except _db_errors() as exc:
        _bad(f"cannot read the audit log: {_first_line(exc)}", redact_url(url), code="store")
    try:
        yield log
    except InputError as exc:
        fail_input(exc)
    except _db_errors() as exc:
        _bad(f"cannot read the audit log: {_first_line(exc)}", redact_url(url), code="store")
    finally:
        log.close()


def audit_url_option(func: _F) -> _F:
    return click.option("--audit", "audit_url", envvar="FLOWGUARD_AUDIT", required=True,
                        help="The audit log (sqlite:///path.db or postgresql://...; "
                             "env FLOWGUARD_AUDIT).")(func)


def _read_text(path: str, what: str, limit: int = MAX_NOTE_BYTES) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        _bad(f"cannot read the {what}: {exc.strerror}", path, code="file")
    if len(data) > limit:
        _bad(f"the {what} is larger than {limit // 1024} KiB", path, code="too-large")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        _bad(f"the {what} is not UTF-8 text", path, code="file")


def _verifiers(values: Sequence[str]) -> list[Any]:
    """Verifier keys from `--vkey` values: a key (`name+hexid+base64`) or a file of keys,
    one a line."""
    from flowguard.audit.note import KeyFormatError, Verifier

    verifiers = []
    for value in values:
        candidates = [value]
        place = "--vkey"
        if "+" not in value and Path(value).is_file():
            place = value
            candidates = [line.strip() for line in _read_text(value, "verifier key file")
                          .splitlines() if line.strip()]
            if not candidates:
                _bad("the verifier key file holds no key", place, code="key")
        for candidate in candidates:
            try:
                verifiers.append(Verifier(candidate))
            except KeyFormatError as exc:
                _bad(f"not a verifier key ({exc})", place, code="key",
                     hint="give the name+hexid+base64 key that `flowguard keys generate` "
                          "printed, or a file holding it")
    return verifiers


def _pseudonymizer(path: str) -> Any:
    from flowguard.audit.entries import load_pseudonym_key

    try:
        return load_pseudonym_key(path)
    except InputError as exc:
        fail_input(exc)


def _non_negative(value: int | None, option: str) -> None:
    if value is not None and value < 0:
        _bad(f"{option} must be 0 or more", code="range")


@contextmanager
def _progress(enabled: bool | None, total: int, what: str
              ) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr for long jobs (on a terminal, unless told otherwise)."""
    show = enabled if enabled is not None else (err.is_terminal and total >= PROGRESS_FROM)
    if not show:
        yield None
        return
    with Progress(TextColumn(f"{what}"), BarColumn(), TextColumn("{task.completed:,}/"
                  "{task.total:,}"), TimeRemainingColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task(what, total=total)

        def update(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield update


# --------------------------------------------------------------------------- keys


@click.group()
def keys() -> None:
    """Create the audit log's signing key and the pseudonym key."""


@keys.command("generate")
@click.option("--name", required=True,
              help="The log's origin, which names the key (e.g. audit.example.org/flowguard).")
@click.option("--out", "out_file", required=True,
              help="Write the private key here (mode 0600; never overwritten).")
def keys_generate(name: str, out_file: str) -> None:
    """Create an Ed25519 note signing key for the audit log and print its verifier key
    (`name+hexid+base64`), which auditors pass to `flowguard audit verify --vkey`.

    To rotate keys, generate a new key with the same name: checkpoints signed from then on
    use it, and auditors verify with both verifier keys."""
    from flowguard.audit.note import generate_key

    write_new_key(generate_key, name, out_file)


def write_new_key(generate: Callable[[str], tuple[str, str]], name: str,
                  out_file: str) -> None:
    """Generate a key pair named `name`, write the private key (mode 0600, never over an
    existing file) and print the verifier key."""
    from flowguard.audit.entries import write_secret
    from flowguard.audit.note import KeyFormatError

    try:
        skey, vkey = generate(name)
    except KeyFormatError as exc:
        _bad(str(exc), "--name", code="key")
    try:
        write_secret(Path(out_file), skey + "\n")
    except InputError as exc:
        fail_input(exc)
    except OSError as exc:
        _bad(f"cannot write the key file: {exc.strerror}", out_file, code="file")
    click.echo(vkey)


@keys.command("pseudonym")
@click.option("--out", "out_file", required=True,
              help="Write the key here (mode 0600; never overwritten).")
def keys_pseudonym(out_file: str) -> None:
    """Create a pseudonym key: 32 random bytes (hex) that turn subject ids into the
    pseudonyms the audit log records. Keep it secret: with it, a subject's entries can be
    found."""
    from flowguard.audit.entries import generate_pseudonym_key

    try:
        generate_pseudonym_key(Path(out_file))
    except InputError as exc:
        fail_input(exc)
    except OSError as exc:
        _bad(f"cannot write the key file: {exc.strerror}", out_file, code="file")
    out.print(f"pseudonym key written to {out_file}", markup=False)


@keys.command("vkey")
@click.argument("key_file")
def keys_vkey(key_file: str) -> None:
    """Print the verifier key of a private signing key file."""
    from flowguard.audit.trail import load_signer

    try:
        signer = load_signer(key_file)
    except InputError as exc:
        fail_input(exc)
    click.echo(signer.vkey)


# --------------------------------------------------------------------------- audit


@click.group()
def audit() -> None:
    """Inspect, verify and prove the audit log; report to citizens."""


@audit.command("checkpoint")
@audit_url_option
@click.option("--sign", is_flag=True, help="Sign a checkpoint of the log as it is now.")
@click.option("--log-key", "log_key", envvar="FLOWGUARD_LOG_KEY",
              help="The log's signing key file, for --sign (env FLOWGUARD_LOG_KEY).")
def audit_checkpoint(audit_url: str, sign: bool, log_key: str | None) -> None:
    """Print the latest signed checkpoint (a C2SP tlog-checkpoint note); keep it to check
    later, with `audit verify --since`, that the log still extends it."""
    from flowguard.audit.checkpoint import Checkpoint, CheckpointError

    if sign and log_key is None:
        _bad("--sign needs --log-key (the log's signing key file)", code="missing")
    with _log(audit_url, log_key if sign else None) as log:
        latest = log.latest_checkpoint()
        if sign:
            if latest is not None:
                try:
                    origin = Checkpoint.parse(latest[:latest.rfind("\n\n") + 1]).origin
                except CheckpointError:
                    origin = None
                if origin is not None and origin != log.signer.name:
                    _bad(f"the key is named {log.signer.name!r} but the log's origin is "
                         f"{origin!r}", log_key or "--log-key", code="key",
                         hint="a log keeps its origin: a new key must have the same name")
            latest = log.checkpoint()
        if latest is None:
            err.print("the log has no checkpoint yet; sign one with `flowguard audit "
                      "checkpoint --sign --log-key FILE`", markup=False)
            sys.exit(EXIT_DENY)
        from flowguard.audit.cosigned import with_cosignatures

        click.echo(with_cosignatures(log, latest), nl=False)


@audit.command("export")
@audit_url_option
@click.option("--start", type=int, default=0, show_default=True, help="First entry index.")
@click.option("--end", type=int, help="Stop before this index (default: the log's size).")
def audit_export(audit_url: str, start: int, end: int | None) -> None:
    """Write the entries, one per line: exactly the bytes that were hashed into the tree
    (canonical JSON), each followed by a newline."""
    _non_negative(start, "--start")
    _non_negative(end, "--end")
    if end is not None and end < start:
        _bad(f"--end {end} is before --start {start}", "--end", code="range",
             hint="give --end greater than or equal to --start")
    stream = sys.stdout.buffer
    with _log(audit_url) as log:
        size = log.size
        if start > size:
            _bad(f"--start {start} is past the end of the log "
                 f"({counted(size, 'entry', 'entries')})", "--start",
                 code="range", hint=f"give an index from 0 to {size}")
        stop = size if end is None else min(end, size)
        for _, data in log.entries(start, stop):
            stream.write(data + b"\n")
        stream.flush()


@audit.command("verify")
@click.option("--audit", "audit_url", envvar="FLOWGUARD_AUDIT",
              help="The audit log (sqlite:///path.db or postgresql://...; env "
                   "FLOWGUARD_AUDIT).")
@click.option("--vkey", "vkeys", multiple=True, required=True,
              help="The log's verifier key, or a file holding it; repeat for every key the "
                   "log has used (key rotation).")
@click.option("--since", "since_file",
              help="A signed checkpoint kept earlier: prove the log still extends it.")
@click.option("--entries", "entries_file",
              help="Verify an exported copy instead of a database: the output of "
                   "`audit export`, with --checkpoint.")
@click.option("--checkpoint", "checkpoint_files", multiple=True,
              help="With --entries: a signed checkpoint file (repeatable).")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="Show a progress bar on stderr (default: on a terminal, for long logs).")
@click.option("--check-entries/--no-check-entries", default=False, show_default=True,
              help="Also check that every entry is canonical JSON naming its subject only "
                   "by pseudonym: a check of the writer, not of tampering (which the tree "
                   "catches); about a third of the speed.")
@witness_quorum_options("the latest checkpoint")
@click.option("--all-checkpoints", is_flag=True,
              help="With --quorum: require the quorum on every checkpoint from the first one "
                   "a given witness cosigned on (earlier ones predate the witnesses), not "
                   "only the latest.")
def audit_verify(audit_url: str | None, vkeys: Sequence[str], since_file: str | None,
                 entries_file: str | None, checkpoint_files: Sequence[str],
                 show_progress: bool | None, check_entries: bool,
                 witness_vkeys: Sequence[str] = (), quorum: int = 0,
                 all_checkpoints: bool = False) -> None:
    """Recompute the whole tree from the entries and check every checkpoint's signature
    and root, their consistency, the stored tree and the entries' form.

    Exit 0 when the log verifies, 1 naming the first bad entry or checkpoint."""
    from flowguard.audit.verify import AuditVerifyError, VerifyReport, verify_entries, verify_log

    verifiers = _verifiers(vkeys)
    from flowguard._cli_witness import witness_quorum

    require_quorum = witness_quorum(witness_vkeys, quorum, all_checkpoints)
    since = _read_text(since_file, "kept checkpoint") if since_file else None
    report: VerifyReport
    if entries_file is not None:
        if checkpoint_files == () and since is None:
            _bad("--entries needs --checkpoint (or --since): nothing signed covers the "
                 "entries otherwise", code="missing")
        notes = [_read_text(path, "checkpoint") for path in checkpoint_files]
        lines = _export_lines(entries_file)
        try:
            with _progress(show_progress, len(lines), "verifying") as progress:
                report = verify_entries(lines, notes, verifiers, since=since,
                                        source=entries_file, progress=progress,
                                        check_entries=check_entries)
        except AuditVerifyError as exc:
            _failed(exc.diagnostics, "FAILED: the export does not verify")
        quorum_line = require_quorum([(i, note) for i, note in enumerate(notes)],
                                     entries_file)
    else:
        if audit_url is None:
            _bad("give the log with --audit URL (or an export with --entries)",
                 code="missing")
        with _log(audit_url) as log:
            try:
                with _progress(show_progress, log.size, "verifying") as progress:
                    report = verify_log(log, verifiers, since=since, progress=progress,
                                        check_entries=check_entries)
                from flowguard.audit.cosigned import cosigned_checkpoints

                quorum_line = require_quorum(cosigned_checkpoints(log), redact_url(audit_url))
            except AuditVerifyError as exc:
                _failed(exc.diagnostics, "FAILED: the audit log does not verify")
            except _db_errors() as exc:
                _failed([Diagnostic(f"the log cannot be read: {_first_line(exc)}",
                                    redact_url(audit_url), code="store")],
                        "FAILED: the audit log does not verify")
    _print_verified(report)
    if quorum_line:
        out.print(quorum_line, markup=False)


def _export_lines(path: str) -> list[bytes]:
    try:
        size = os.path.getsize(path)
        if size > MAX_EXPORT_BYTES:
            _bad(f"the export is larger than {MAX_EXPORT_BYTES >> 30} GiB", path,
                 code="too-large")
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        _bad(f"cannot read the export: {exc.strerror}", path, code="file")
    if data and not data.endswith(b"\n"):
        _bad("the export does not end with a newline (cut short?)", path, code="format")
    return data.split(b"\n")[:-1] if data else []


def _print_verified(report: Any) -> None:
    out.print(f"OK: {counted(report.size, 'entry')} verified, root {report.root_base64}",
              markup=False)
    if report.checkpoints:
        out.print(f"  {counted(report.checkpoints, 'checkpoint')} of {report.origin} verified "
                  f"(latest at {counted(report.latest_checkpoint, 'entry', 'entries')}; "
                  f"signed by {', '.join(report.keys)}); "
                  f"{counted(report.consistency_proofs, 'consistency proof')} checked",
                  markup=False)
    else:
        out.print("  the log has no signed checkpoint yet", markup=False)
    if report.unsigned:
        out.print(f"  {counted(report.unsigned, 'entry')} after the latest checkpoint "
                  f"{'is' if report.unsigned == 1 else 'are'} not signed for yet", markup=False)
    if report.since is not None:
        out.print(f"  the log extends the kept checkpoint of {report.since} entries",
                  markup=False)
    out.print(f"  {report.seconds:.2f}s, {report.entries_per_second:,.0f} entries/s",
              markup=False)


@audit.command("prove")
@audit_url_option
@click.argument("index", type=int)
@click.option("--size", type=int,
              help="Prove against the checkpoint of this size (default: the latest).")
def audit_prove(audit_url: str, index: int, size: int | None) -> None:
    """Print a `c2sp.org/tlog-proof@v1` receipt proving that entry INDEX is in the log:
    its inclusion proof and the signed checkpoint it leads to. The receipt is checked
    offline with `audit verify-receipt`."""
    from flowguard.audit.merkle import ProofError
    from flowguard.audit.receipt import make_receipt

    if index < 0:
        _bad("INDEX must be 0 or more", "INDEX", code="range")
    _non_negative(size, "--size")
    with _log(audit_url) as log:
        checkpoints = [(s, note) for s, note in log.checkpoints() if s > index]
        if size is not None:
            checkpoints = [(s, note) for s, note in checkpoints if s == size]
            if not checkpoints:
                _bad(f"the log has no checkpoint of size {size} covering entry {index}",
                     "--size", code="range")
        if not checkpoints:
            _bad(f"no signed checkpoint covers entry {index} yet", "INDEX", code="range",
                 hint="sign one with `flowguard audit checkpoint --sign --log-key FILE`")
        covering, note = checkpoints[-1]
        from flowguard.audit.cosigned import with_cosignatures

        note = with_cosignatures(log, note)
        entry = log.entry(index)
        proof = log.inclusion_proof(index, covering)
        try:
            receipt = make_receipt(index, entry, proof, note)
        except (ProofError, ValueError) as exc:
            _failed([Diagnostic(f"entry {index} cannot be proven against the checkpoint of "
                                f"size {covering}: {exc}", redact_url(audit_url),
                                code="proof", hint="run `flowguard audit verify`")],
                    "FAILED: the log does not prove the entry")
    click.echo(receipt, nl=False)


@audit.command("verify-receipt")
@click.argument("receipt_file")
@click.option("--vkey", "vkeys", multiple=True, required=True,
              help="The log's verifier key, or a file holding it (repeatable).")
@click.option("--entry", "entry_file",
              help="The entry, as `audit export` writes it (one line). Without it the entry "
                   "is read from --audit.")
@click.option("--audit", "audit_url", envvar="FLOWGUARD_AUDIT",
              help="Read the entry from this log when --entry is not given.")
@witness_quorum_options("the receipt's checkpoint")
def audit_verify_receipt(receipt_file: str, vkeys: Sequence[str], entry_file: str | None,
                         audit_url: str | None, witness_vkeys: Sequence[str] = (),
                         quorum: int = 0) -> None:
    """Check a receipt offline: the checkpoint's signature and the entry's inclusion
    proof. Exit 0 when it proves the entry, 1 when it does not."""
    from flowguard._cli_witness import witness_quorum
    from flowguard.audit.checkpoint import CheckpointError
    from flowguard.audit.merkle import MerkleError
    from flowguard.audit.note import NoteError
    from flowguard.audit.receipt import ReceiptError, parse_receipt, verify_receipt

    verifiers = _verifiers(vkeys)
    require_quorum = witness_quorum(witness_vkeys, quorum, False)
    text = _read_text(receipt_file, "receipt")
    try:
        receipt = parse_receipt(text)
    except ReceiptError as exc:
        _bad(str(exc), receipt_file, code="format")
    if entry_file is not None:
        data = _read_text(entry_file, "entry", MAX_ENTRY_BYTES).encode("utf-8")
        if data.endswith(b"\n"):
            data = data[:-1]
        if b"\n" in data:
            _bad("the entry file holds more than one line", entry_file, code="format",
                 hint="give one line of `flowguard audit export`")
    elif audit_url is not None:
        with _log(audit_url) as log:
            data = log.entry(receipt.index)
    else:
        _bad("give the entry with --entry FILE, or the log with --audit URL", code="missing")
    try:
        verified = verify_receipt(text, verifiers, entry=data)
    except (ReceiptError, NoteError, CheckpointError, MerkleError, ValueError) as exc:
        _failed([Diagnostic(f"the receipt does not prove the entry: {exc}", receipt_file,
                            code="receipt")], "FAILED: the receipt does not verify")
    quorum_line = require_quorum([(0, receipt.checkpoint_note)], receipt_file)
    checkpoint = verified.checkpoint
    out.print(f"OK: entry {verified.index} is in the log {checkpoint.origin} of "
              f"{counted(checkpoint.size, 'entry', 'entries')} (signed checkpoint, root "
              f"{_b64(checkpoint.root_hash)})", markup=False)
    if quorum_line:
        out.print(quorum_line, markup=False)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


@audit.command("consistency")
@audit_url_option
@click.argument("old", type=int)
@click.argument("new", type=int)
def audit_consistency(audit_url: str, old: int, new: int) -> None:
    """Print the RFC 6962 consistency proof from the tree of OLD entries to the tree of NEW
    entries: base64 hashes, one a line (none when OLD = NEW)."""
    if old < 1:
        _bad("OLD must be 1 or more: every tree extends the empty tree", "OLD", code="range")
    if new < old:
        _bad("NEW must not be smaller than OLD", "NEW", code="range")
    with _log(audit_url) as log:
        proof = log.consistency_proof(old, new)
    for digest in proof:
        click.echo(_b64(digest))


# --------------------------------------------------------------------------- show


def _subject_filter(subject: str | None, pseudonym_key: str | None) -> Any:
    """The pseudonymizer `--subject` needs (None without --subject)."""
    if subject is None:
        return None
    if pseudonym_key is None:
        _bad("--subject needs --pseudonym-key: the log knows subjects only by pseudonym",
             code="missing")
    return _pseudonymizer(pseudonym_key)


def _check_key(log: Any, pseudonymizer: Any, pseudonym_key: str) -> None:
    """Refuse a pseudonym key that is not the log's (exit 2); warn when the log records no
    fingerprint to check it against."""
    from flowguard.audit.trail import check_pseudonym_key

    warning = check_pseudonym_key(log, pseudonymizer, pseudonym_key)
    if warning is not None:
        err.print(f"{pseudonym_key}: warning: {warning}", markup=False)


def _check_category(log: Any, category: str) -> None:
    """Refuse a --category that no policy the log keeps declares (exit 2)."""
    known: set[str] = set()
    for text in log.policy_texts():
        try:
            declared = json.loads(text).get("data_categories") or {}
        except (ValueError, AttributeError):
            continue
        for name in declared:
            parts = str(name).split(".")
            known.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    if known and category not in known:
        names = sorted(known)
        shown = ", ".join(names[:40]) + (f" and {len(names) - 40} more" if len(names) > 40
                                         else "")
        _bad(f"unknown data category {category!r}; the log's policies know {shown}",
             "--category", code="unknown-reference")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _short(pseudonym: Any) -> str:
    if isinstance(pseudonym, str) and ":" in pseudonym:
        return pseudonym.split(":", 1)[1][:12]
    return ""


@audit.command("show")
@audit_url_option
@click.option("--since", "since", help="Entries recorded at or after this time (RFC 3339 "
              "with a zone, or a date).")
@click.option("--until", "until", help="Entries recorded before this time.")
@click.option("--outcome", type=click.Choice(["permit", "deny"]))
@click.option("--recipient", help="The receiving actor's id.")
@click.option("--organization", help="The receiving organization's id.")
@click.option("--category", help="A data category (and everything under it).")
@click.option("--kind", type=click.Choice(["decision", "registry", "policy"]))
@click.option("--subject", help="Only this citizen's entries (needs --pseudonym-key).")
@click.option("--pseudonym-key", "pseudonym_key", envvar="FLOWGUARD_PSEUDONYM_KEY",
              help="The pseudonym key file (env FLOWGUARD_PSEUDONYM_KEY).")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def audit_show(audit_url: str, since: str | None, until: str | None, outcome: str | None,
               recipient: str | None, organization: str | None, category: str | None,
               kind: str | None, subject: str | None, pseudonym_key: str | None,
               as_json: bool) -> None:
    """List entries, filtered. Subjects appear only as pseudonyms."""
    from flowguard.audit.report import EntryFilter, filtered_entries

    pseudonymizer = _subject_filter(subject, pseudonym_key)
    try:
        where = EntryFilter(since=parse_time(since, "--since"),
                            until=parse_time(until, "--until"), outcome=outcome,
                            recipient=recipient, organization=organization,
                            category=category, kind=kind,
                            subject=None if pseudonymizer is None else pseudonymizer(subject))
    except InputError as exc:
        fail_input(exc)
    with _log(audit_url) as log:
        if pseudonymizer is not None and pseudonym_key is not None:
            _check_key(log, pseudonymizer, pseudonym_key)
        if category is not None:
            _check_category(log, category)
        found = filtered_entries(log, where, end=log.size)
        if as_json:
            _show_json(found)
            return
        table = Table(show_lines=False, expand=True)
        for column in ("#", "recorded", "kind", "outcome", "sender → recipient",
                       "organization", "data", "purpose", "why", "subject"):
            table.add_column(column, overflow="fold")
        count = 0
        for index, entry in found:
            count += 1
            table.add_row(*(cell(value) for value in _row(index, entry)))
        out.print(table)
        out.print(counted(count, "entry"), markup=False)


def _show_json(found: Iterator[tuple[int, dict[str, Any]]]) -> None:
    click.echo("[", nl=False)
    first = True
    for index, entry in found:
        click.echo(("\n" if first else ",\n") + safe_json(json.dumps(
            {"index": index, "entry": entry}, ensure_ascii=False)), nl=False)
        first = False
    click.echo("\n]" if not first else "]")


def _row(index: int, entry: dict[str, Any]) -> tuple[str, ...]:
    kind = _cell(entry.get("kind"))
    if kind == "decision":
        categories = entry.get("categories") or []
        why = "; ".join(
            f"{c.get('category')}: {c.get('basis') or c.get('reason')}"
            + (f" ({c.get('consent')})" if c.get("consent") else "")
            for c in categories if isinstance(c, dict))
        return (str(index), _cell(entry.get("time")), kind, _cell(entry.get("outcome")),
                f"{_cell(entry.get('sender'))} → {_cell(entry.get('recipient'))}",
                _cell(entry.get("organization")), _cell(entry.get("data")),
                f"{_cell(entry.get('purpose'))} @ {_cell(entry.get('subprocess'))}", why,
                _short(entry.get("subject")))
    if kind == "registry":
        return (str(index), _cell(entry.get("time")), kind, _cell(entry.get("event")),
                f"by {_cell(entry.get('by'))}", "", _cell(entry.get("record")), "", "",
                _short(entry.get("subject")))
    return (str(index), _cell(entry.get("time")), kind, "", "", "", "", "",
            f"{_cell(entry.get('service'))} {_cell(entry.get('policy_digest'))[:19]}", "")


# --------------------------------------------------------------------------- replay


@audit.command("replay")
@audit_url_option
@click.option("--registry", "-r", "registry_url", envvar="FLOWGUARD_REGISTRY", required=True,
              help="The registry database the decisions were taken against (env "
                   "FLOWGUARD_REGISTRY).")
@click.option("--pseudonym-key", "pseudonym_key", envvar="FLOWGUARD_PSEUDONYM_KEY",
              required=True, help="The pseudonym key file (env FLOWGUARD_PSEUDONYM_KEY).")
@click.option("--policy-dir", "policy_dirs", multiple=True,
              help="A policy to use where the log keeps no text for a digest (repeatable).")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="Show a progress bar on stderr (default: on a terminal, for long logs).")
def audit_replay(audit_url: str, registry_url: str, pseudonym_key: str,
                 policy_dirs: Sequence[str], show_progress: bool | None) -> None:
    """Decide every logged decision again, with its recorded policy and the registry at
    its recorded revision, and report each one that now comes out differently.

    Exit 0 when every decision is reproduced, 1 otherwise."""
    from flowguard.audit.replay import replay_log
    from flowguard.policy import load_policy
    from flowguard.store import is_database_url, open_store

    pseudonym = _pseudonymizer(pseudonym_key)
    if not is_database_url(registry_url):
        _bad("expected a registry database URL: a file has no history to replay against",
             "--registry", code="type")
    policies = {}
    for folder in policy_dirs:
        try:
            policy = load_policy(folder)
        except InputError as exc:
            fail_input(exc)
        policies[policy.digest] = policy
    try:
        store = open_store(registry_url)
    except InputError as exc:
        fail_input(exc)
    try:
        with _log(audit_url) as log, _progress(show_progress, log.size,
                                               "replaying") as progress:
            _check_key(log, pseudonym, pseudonym_key)
            report = replay_log(log, store, pseudonym, policies=policies, progress=progress)
    finally:
        store.close()
    for problem in report.problems:
        err.print(f"{redact_url(audit_url)}: error: {safe(problem.message)}", markup=False)
    for difference in report.differences:
        out.print(f"DIFFERS {safe(difference.summary)}", markup=False)
        for name in difference.fields:
            out.print(f"  {name}: recorded {json.dumps(difference.recorded[name])}",
                      markup=False)
            out.print(f"  {' ' * len(name)}  now      {json.dumps(difference.replayed[name])}",
                      markup=False)
    summary = (f"{report.replayed} of {counted(report.decisions, 'decision')} replayed, "
               f"{len(report.differences)} differ")
    if report.problems:
        summary += f", {counted(len(report.problems), 'problem')}"
    if report.unknown_subjects:
        summary += (f"; {report.unknown_subjects} name a subject the registry never knew "
                    "(replayed as having no records)")
    out.print(summary, markup=False)
    if not report.ok:
        sys.exit(EXIT_DENY)


# --------------------------------------------------------------------------- reconcile


@audit.command("reconcile")
@audit_url_option
@click.option("--registry", "-r", "registry_url", envvar="FLOWGUARD_REGISTRY", required=True,
              help="The registry database whose changes the log audits (env "
                   "FLOWGUARD_REGISTRY).")
@click.option("--pseudonym-key", "pseudonym_key", envvar="FLOWGUARD_PSEUDONYM_KEY",
              required=True, help="The log's pseudonym key file (env "
                                  "FLOWGUARD_PSEUDONYM_KEY).")
@click.option("--log-key", "log_key", envvar="FLOWGUARD_LOG_KEY",
              help="The log's signing key file: sign a checkpoint over what is appended "
                   "(env FLOWGUARD_LOG_KEY).")
@click.option("--history", is_flag=True,
              help="Also append the registry's events from before the log first met it.")
def audit_reconcile(audit_url: str, registry_url: str, pseudonym_key: str,
                    log_key: str | None, history: bool) -> None:
    """Append the audit entries of registry changes the log lacks (a change whose entry
    could not be written, e.g. after a crash), each exactly once, and say which.

    Exit 0 when the log is up to date afterwards (also when nothing was missing)."""
    from flowguard._cli_common import close_trail, open_trail
    from flowguard.audit.outbox import RegistryOutbox
    from flowguard.store import is_database_url, open_store

    if not is_database_url(registry_url):
        _bad("expected a registry database URL: a file records no changes to audit",
             "--registry", code="type")
    with _log(audit_url):
        pass  # an existing audit log (reconcile creates none)
    trail = open_trail(audit_url, log_key, pseudonym_key)
    assert trail is not None
    try:
        store = open_store(registry_url)
    except InputError as exc:
        close_trail(trail)
        fail_input(exc)
    try:
        result = RegistryOutbox(store.db, trail).reconcile(history=history)
    except InputError as exc:
        fail_input(exc)
    except _db_errors() as exc:
        _bad(f"cannot bring the audit log up to date ({_first_line(exc)}); nothing was "
             "appended", redact_url(audit_url), code="store")
    finally:
        store.close()
        close_trail(trail)
    _print_reconciled(result, history)


def _print_reconciled(result: Any, history: bool) -> None:
    if result.appended:
        count = len(result.appended)
        out.print(f"appended the audit entries of {counted(count, 'registry event')}: "
                  f"{_ranges(result.appended)}", markup=False)
    elif result.joined and not history:
        out.print(f"the log had not audited this registry before: it audits it from event "
                  f"#{result.revision} on (--history appends the earlier events)",
                  markup=False)
    else:
        out.print("nothing was missing", markup=False)
    out.print(f"the log has audited every event of registry {result.registry} up to "
              f"#{result.revision}", markup=False)


def _ranges(numbers: Sequence[int]) -> str:
    """`#3, #5 to #9` for 3, 5, 6, 7, 8, 9."""
    parts: list[str] = []
    first = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(f"#{first}" if first == previous else f"#{first} to #{previous}")
        if number is not None:
            first = previous = number
    return ", ".join(parts)


# --------------------------------------------------------------------------- access report


@audit.command("access-report", short_help="A citizen's right-of-access report: who "
               "received their data, when and why.")
@audit_url_option
@click.option("--subject", required=True, help="The citizen's id (never printed).")
@click.option("--pseudonym-key", "pseudonym_key", envvar="FLOWGUARD_PSEUDONYM_KEY",
              required=True, help="The pseudonym key file (env FLOWGUARD_PSEUDONYM_KEY).")
@click.option("--html", "html_file", help="Also write the report as a self-contained HTML "
              "page to this file.")
def audit_access_report(audit_url: str, subject: str, pseudonym_key: str,
                        html_file: str | None) -> None:
    """The citizen's right of access (GDPR Art. 15): who received which of their data,
    when, for what purpose and on what basis, and which requests were refused, in plain
    language."""
    from flowguard.audit.report import access_report, render_access_html, render_access_text

    pseudonymizer = _pseudonymizer(pseudonym_key)
    with _log(audit_url) as log:
        _check_key(log, pseudonymizer, pseudonym_key)
        report = access_report(log, pseudonymizer(subject))
    if html_file is not None:
        page = render_access_html(report)
        try:
            fd = os.open(html_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(page)
        except OSError as exc:
            _bad(f"cannot write the report: {exc.strerror}", html_file, code="file")
    click.echo(safe_lines(render_access_text(report)), nl=False)


__all__ = ["audit", "keys"]
