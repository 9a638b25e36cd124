"""`flowguard registry | consent | subject | guardianship`: the consent registry from the
command line, a thin shell over `flowguard.store`."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import yaml
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from flowguard._cli_common import (
    audit_options,
    close_trail,
    err,
    fail_input,
    open_trail,
    out,
    report_pending,
    report_reconciled,
)
from flowguard._plain import counted
from flowguard._source import SourceError, load_documents
from flowguard._terminal import cell, safe, safe_json, safe_lines
from flowguard.consents import STATUSES, ConsentStatus, write_problems
from flowguard.engine import Engine
from flowguard.errors import Diagnostic, FlowguardError, InputError, RegistryError
from flowguard.model import Bound, Consent, Evidence, Guardianship, Policy
from flowguard.policy import load_policy
from flowguard.registry import InMemoryRegistry, SubjectRecords, load_registry, validate_records
from flowguard.store import (
    Event,
    RegistryStore,
    init_database,
    is_database_url,
    open_store,
    redact_url,
)

if TYPE_CHECKING:
    from flowguard.fhir import FhirMapping
    from flowguard.fhir._common import FhirVersion

DEFAULT_REGISTRY = "sqlite:///flowguard.db"
_F = TypeVar("_F", bound=Callable[..., Any])


def registry_option(func: _F) -> _F:
    return click.option(
        "--registry", "-r", "registry_url", envvar="FLOWGUARD_REGISTRY",
        default=DEFAULT_REGISTRY, show_default=True,
        help="Registry database URL (sqlite:///path.db or postgresql://...); "
             "env FLOWGUARD_REGISTRY.")(func)


def policy_option(func: _F) -> _F:
    return click.option(
        "--policy", "-p", "policy_path", envvar="FLOWGUARD_POLICY",
        help="Required: check every id written against this policy (env "
             "FLOWGUARD_POLICY).")(func)


def strict_option(func: _F) -> _F:
    return click.option(
        "--strict", is_flag=True,
        help="Refuse a consent whose status would not be active: an unknown grantor, one "
             "without authority when it was given, special data without --explicit.")(func)


def require_policy(policy_path: str | None, what: str) -> str:
    """The policy a write that adds or widens something validates against; without one,
    exit 2: the registry's history is append-only, so an unknown id written once stays."""
    if policy_path:
        return policy_path
    fail_input(InputError([Diagnostic(
        f"{what} needs the policy to check every id it writes against", "<options>",
        code="missing",
        hint="pass --policy POLICY.yaml (or set FLOWGUARD_POLICY); the registry's history "
             "is append-only, so an unknown id written once can never be removed. "
             "A withdrawal needs no policy")]))


def by_option(func: _F) -> _F:
    return click.option(
        "--by", "by", envvar="FLOWGUARD_ACTOR",
        help="Who records the change (default: env FLOWGUARD_ACTOR, else the login name).")(func)


def json_option(func: _F) -> _F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_BOUND: TypeAdapter[datetime] = TypeAdapter(Bound)


def parse_time(value: str | None, option: str) -> datetime | None:
    """An option's RFC 3339 time with a zone, or a date (00:00 UTC)."""
    if value is None:
        return None
    try:
        return _BOUND.validate_python(value)
    except ValidationError:
        raise InputError([Diagnostic(f"{option}: expected an RFC 3339 time with a zone "
                                     "(2026-05-01T09:00:00Z) or a date (2026-05-01)",
                                     "<options>", code="type")]) from None


@contextmanager
def _store(url: str, policy_path: str | None = None,
           audit: tuple[str | None, str | None, str | None] = (None, None, None),
           *, writes: str | None = None) -> Iterator[RegistryStore]:
    """Open the store, turning every bad-input error into diagnostics and exit 2.
    `writes`: what the command writes, when it adds or widens something (needs the
    policy)."""
    if writes is not None:
        require_policy(policy_path, writes)
    try:
        if not is_database_url(url):
            raise InputError([Diagnostic(
                "expected a database URL", "<options>", code="type",
                hint="sqlite:///path.db or postgresql://...; files are imported with "
                     "`flowguard registry import`")])
        policy: Policy | None = load_policy(policy_path) if policy_path else None
        store = open_store(url, policy, audit=open_trail(*audit))
    except InputError as exc:
        fail_input(exc)
    report_reconciled(store)
    try:
        yield store
    except InputError as exc:
        fail_input(exc)
    except FlowguardError as exc:  # a change that stands without its audit entry (yet)
        report_pending(exc)
    finally:
        close_trail(store.audit)
        store.close()


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _echo_json(value: Any) -> None:
    click.echo(safe_json(json.dumps(value, indent=2, ensure_ascii=False, default=str)))


def _print_event(event: Event) -> None:
    evidence = ""
    if event.evidence is not None:
        evidence = f"  evidence: {safe(event.evidence.method)}" + (
            f" {safe(event.evidence.reference)}" if event.evidence.reference else "")
    out.print(f"#{event.seq} {_iso(event.recorded_at)} {event.kind} "
              f"{safe(event.record or '')} by {safe(event.by)}{evidence}", markup=False)


def _engine(store: RegistryStore) -> Engine:
    """The engine whose reading of SPEC §5 gives a consent's status."""
    if store.policy is None:
        fail_input(InputError([Diagnostic(
            "a consent's status is its lawful status under the policy", "<options>",
            code="missing", hint="pass --policy POLICY.yaml (or set FLOWGUARD_POLICY)")]))
    return Engine(store.policy, store)


def warn_consents(engine: Engine, consents: Sequence[Consent],
                  records: Callable[[Consent], SubjectRecords] | None, strict: bool,
                  source: str) -> None:
    """Warn of consents that would not count when given (unknown grantor, no authority at
    `given_at`, special data without `explicit`); with `strict`, refuse them (exit 2)."""
    diagnostics = []
    for k in consents:
        status = engine.consent_status(k, k.given_at,
                                       records=None if records is None else records(k))
        for problem in write_problems(status):
            diagnostics.append(Diagnostic(
                f"consent `{k.id}` would be {problem.status}: {problem.reason}", source,
                severity="error" if strict else "warning", code=problem.status,
                hint="record the guardianship first, or mark it --explicit, or correct the "
                     "consent" if strict else None))
    if strict and diagnostics:
        fail_input(InputError(diagnostics))
    for diagnostic in diagnostics:
        err.print(safe(diagnostic.render()), markup=False)


# --------------------------------------------------------------------------- registry

@click.group()
def registry() -> None:
    """Create, import and export a registry database."""


@registry.command("init")
@click.argument("url", default=DEFAULT_REGISTRY, envvar="FLOWGUARD_REGISTRY")
def registry_init(url: str) -> None:
    """Create the registry schema at URL, or migrate it to this version."""
    try:
        applied = init_database(url)
    except InputError as exc:
        fail_input(exc)
    if applied:
        for m in applied:
            out.print(f"applied migration {m.version}: {m.description}", markup=False)
    else:
        out.print("registry schema is up to date", markup=False)
    out.print(f"registry ready at {redact_url(url)}", markup=False)


@registry.command("import")
@click.argument("file")
@registry_option
@policy_option
@by_option
@click.option("--fhir-map", help="Import FHIR Consent JSON (a resource, a Bundle, or a "
              "folder of them) with this mapping file.")
@strict_option
@audit_options
def registry_import(file: str, registry_url: str, policy_path: str | None, by: str | None,
                    fhir_map: str | None, strict: bool = False,
                    audit_url: str | None = None, log_key: str | None = None,
                    pseudonym_key: str | None = None) -> None:
    """Import FILE (a registry YAML/JSON file, or FHIR with --fhir-map) in one transaction.

    Records already stored unchanged are skipped; the schema is created if missing."""
    require_policy(policy_path, "`registry import`")
    try:
        init_database(registry_url)
    except InputError as exc:
        fail_input(exc)
    with _store(registry_url, policy_path, (audit_url, log_key, pseudonym_key),
                writes="`registry import`") as store:
        records = _read_import(file, store.policy, fhir_map)
        _warn_import(store, records, strict, file)
        summary = store.import_records(records, by=_who(by), source=file)
        out.print(f"imported {counted(summary.subjects, 'subject')}, "
                  f"{counted(summary.guardianships, 'guardianship')}, "
                  f"{counted(summary.consents, 'consent')} "
                  f"({summary.unchanged} already stored unchanged)", markup=False)


def _warn_import(store: RegistryStore, records: InMemoryRegistry, strict: bool,
                 source: str) -> None:
    """Judge each imported consent with the import's records of its subject, and the
    registry's where the import has none."""
    engine = _engine(store)

    def records_of(k: Consent) -> SubjectRecords:
        stored = store.records_of(k.subject)
        subject = records.subjects.get(k.subject) or stored.subject
        ids = {g.id for g in records.guardianships_of(k.subject)}
        guardianships = [*records.guardianships_of(k.subject),
                         *(g for g in stored.guardianships if g.id not in ids)]
        return SubjectRecords(subject, (), guardianships)

    warn_consents(engine, sorted(records.all_consents(), key=_by_id), records_of, strict,
                  source)


def _read_import(file: str, policy: Policy | None, fhir_map: str | None) -> InMemoryRegistry:
    if fhir_map is None:
        return load_registry(file, policy)
    from flowguard.fhir import consents_from_fhir_path, load_fhir_mapping

    result = consents_from_fhir_path(file, load_fhir_mapping(fhir_map), policy)
    for diagnostic in result.unmapped:
        out.print(safe(diagnostic.render()), markup=False)
    return InMemoryRegistry({}, (), result.consents)


def fhir_export_options(command: Callable[..., None]) -> Callable[..., None]:
    """`--fhir-map` and `--fhir-version` of the FHIR exports."""
    command = click.option("--fhir-version", "fhir_version", default="5.0.0",
                           show_default=True, type=click.Choice(["5.0.0", "4.0.1"]),
                           help="With --fhir: the FHIR version to write (R5 or R4).")(command)
    return click.option("--fhir-map", help="With --fhir: map ids back to FHIR references "
                        "and codes.")(command)


def _fhir_map(path: str | None) -> FhirMapping | None:
    from flowguard.fhir import load_fhir_mapping

    return load_fhir_mapping(path) if path else None


def _fhir_version(text: str) -> FhirVersion:
    return "4.0.1" if text == "4.0.1" else "5.0.0"


@registry.command("export")
@registry_option
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
@click.option("--history", is_flag=True, help="Every event instead, one JSON object a line.")
@click.option("--as-of", "as_of", help="The registry as recorded at this time.")
@click.option("--fhir", is_flag=True, help="Print the consents as a FHIR Bundle of Consent "
              "resources instead.")
@fhir_export_options
def registry_export(registry_url: str, fmt: str, history: bool, as_of: str | None,
                    fhir: bool = False, fhir_map: str | None = None,
                    fhir_version: str = "5.0.0") -> None:
    """Print the registry in the file format of SPEC §4 (or its event history)."""
    with _store(registry_url) as store:
        view = _view(store, as_of)
        if fhir:
            from flowguard.fhir import consents_to_fhir_bundle

            consents = sorted(view.snapshot().all_consents(), key=_by_id)
            _echo_json(consents_to_fhir_bundle(consents, _fhir_map(fhir_map),
                                               _fhir_version(fhir_version)))
            return
        if history:
            for event in view.events():
                click.echo(safe_json(json.dumps(event.model_dump(mode="json",
                                                                 exclude_none=True),
                                                ensure_ascii=False, sort_keys=True)))
            return
        snapshot = view.snapshot()
        data = {
            "subjects": {s: v.model_dump(mode="json", exclude_none=True)
                         for s, v in sorted(snapshot.subjects.items())},
            "guardianships": [g.model_dump(mode="json", exclude_none=True)
                              for g in sorted(snapshot.all_guardianships(), key=_by_id)],
            "consents": [k.model_dump(mode="json", exclude_none=True)
                         for k in sorted(snapshot.all_consents(), key=_by_id)],
        }
        if fmt == "json":
            _echo_json(data)
        else:
            click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def _by_id(record: Consent | Guardianship) -> str:
    return record.id


def _view(store: RegistryStore, as_of: str | None) -> RegistryStore:
    when = parse_time(as_of, "--as-of")
    return store if when is None else store.as_of(when)


# --------------------------------------------------------------------------- consent

@click.group()
def consent() -> None:
    """Grant, withdraw, correct and inspect consents."""


def _read_record(file: str) -> dict[str, Any]:
    try:
        docs = load_documents(Path(file))
    except SourceError as exc:
        raise RegistryError([exc.diagnostic]) from None
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise RegistryError([Diagnostic("expected one record (a mapping)", file, code="type")])
    return dict(docs[0].data)


def _warn_written(store: RegistryStore, record: dict[str, Any], strict: bool) -> None:
    """Warn of (with `strict`, refuse) a consent about to be written that would not count
    when given; a record that does not validate is left to the write to report."""
    assert store.policy is not None
    try:
        _, _, consents = validate_records({"consents": [dict(record)]}, source="<consent>",
                                          policy=store.policy, known_subject=lambda _: True)
    except InputError:
        return
    warn_consents(_engine(store), consents, None, strict, f"<consent {consents[0].id}>")


def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _selectors(values: Sequence[str]) -> list[dict[str, str]]:
    """`--recipient organization:cafe` (or `actor:…`, `kind:…`, `role:…`; a bare id is an
    organization)."""
    selectors = []
    for value in _split(values):
        key, _, name = value.partition(":") if ":" in value else ("organization", "", value)
        selectors.append({key: name})
    return selectors


@consent.command("grant")
@registry_option
@policy_option
@by_option
@click.option("--file", "file", help="The consent as a YAML/JSON record (SPEC §4).")
@click.option("--id", "consent_id")
@click.option("--subject")
@click.option("--given-by", help="The subject, or a guardian's person id (default: subject).")
@click.option("--given-at", help="When it was given (default: now).")
@click.option("--recipient", multiple=True,
              help="organization:ID, actor:ID, kind:ID or role:ID; repeat for several.")
@click.option("--data", multiple=True, help="Data categories; repeat or comma-separate.")
@click.option("--purpose", multiple=True, help="Purposes; repeat or comma-separate.")
@click.option("--subprocess", multiple=True, help="Sub-processes (default: any).")
@click.option("--explicit", is_flag=True, help="Explicit consent (needed for special data).")
@click.option("--expires", help="When it expires (time or date).")
@click.option("--evidence", help="How it was given: signed-form, digital-signature, ...")
@click.option("--reference", help="The evidence's reference (a case or document number).")
@strict_option
@click.option("--form", "form_id", help="The consent form signed (an id of `consent forms`): "
              "it gives the recipients, data, purposes and evidence; needs --design.")
@click.option("--design", help="The design whose consent plan has the form.")
@audit_options
def consent_grant(registry_url: str, policy_path: str | None, by: str | None,
                  file: str | None, consent_id: str | None, subject: str | None,
                  given_by: str | None, given_at: str | None, recipient: Sequence[str],
                  data: Sequence[str], purpose: Sequence[str], subprocess: Sequence[str],
                  explicit: bool, expires: str | None, evidence: str | None,
                  reference: str | None, strict: bool = False,
                  form_id: str | None = None, design: str | None = None,
                  audit_url: str | None = None, log_key: str | None = None,
                  pseudonym_key: str | None = None) -> None:
    """Record a consent, from --file, from a consent form (--form), or from the options."""
    with _store(registry_url, policy_path, (audit_url, log_key, pseudonym_key),
                writes="`consent grant`") as store:
        if file is not None:
            record = _read_record(file)
        elif form_id is not None:  # flowguard.forms: the form's id and digest as evidence
            from flowguard._cli_citizen import form_grant_record

            record = form_grant_record(form_id, design, policy_path, consent_id, subject,
                                       given_by, parse_time(given_at, "--given-at"),
                                       parse_time(expires, "--expires"))
        else:
            record = {"id": consent_id, "subject": subject, "given_by": given_by or subject,
                      "given_at": given_at or datetime.now(UTC).isoformat(),
                      "recipients": _selectors(recipient), "data": _split(data),
                      "purposes": _split(purpose), "explicit": explicit}
            if subprocess:
                record["subprocesses"] = _split(subprocess)
            if expires:
                record["expires_at"] = expires
            if evidence or reference:
                record["evidence"] = {"method": evidence or "unspecified", "reference": reference}
            record = {k: v for k, v in record.items() if v not in (None, [])}
        _warn_written(store, record, strict)
        event = store.grant(record, by=_who(by))
        out.print(f"granted consent {event.record} (event #{event.seq})", markup=False)


@consent.command("correct")
@click.argument("file")
@registry_option
@policy_option
@by_option
@strict_option
@audit_options
def consent_correct(file: str, registry_url: str, policy_path: str | None,
                    by: str | None, strict: bool = False,
                    audit_url: str | None = None, log_key: str | None = None,
                    pseudonym_key: str | None = None) -> None:
    """Record FILE as a new version of the consent with its id (the old one is kept in
    the history)."""
    with _store(registry_url, policy_path, (audit_url, log_key, pseudonym_key),
                writes="`consent correct`") as store:
        record = _read_record(file)
        _warn_written(store, record, strict)
        event = store.correct(record, by=_who(by))
        out.print(f"corrected consent {event.record} (event #{event.seq})", markup=False)


@consent.command("withdraw")
@click.argument("consent_id")
@registry_option
@by_option
@click.option("--at", help="When it was withdrawn (default: now).")
@audit_options
def consent_withdraw(consent_id: str, registry_url: str, by: str | None,
                     at: str | None,
                     audit_url: str | None = None, log_key: str | None = None,
                     pseudonym_key: str | None = None) -> None:
    """Withdraw a consent: its id is all it takes (GDPR Art. 7(3))."""
    with _store(registry_url, None, (audit_url, log_key, pseudonym_key)) as store:
        event = store.withdraw(consent_id, by=_who(by), at=parse_time(at, "--at"))
        out.print(f"withdrew consent {consent_id} at {event.body['withdrawn_at']} "
                  f"(event #{event.seq})", markup=False)


@consent.command("expire")
@click.argument("consent_id")
@registry_option
@by_option
@click.option("--at", help="When it ends (default: now).")
@audit_options
def consent_expire(consent_id: str, registry_url: str, by: str | None,
                   at: str | None,
                   audit_url: str | None = None, log_key: str | None = None,
                   pseudonym_key: str | None = None) -> None:
    """End a consent at an agreed time (not a withdrawal)."""
    with _store(registry_url, None, (audit_url, log_key, pseudonym_key)) as store:
        event = store.expire(consent_id, by=_who(by), at=parse_time(at, "--at"))
        out.print(f"consent {consent_id} expires at {event.body['expires_at']} "
                  f"(event #{event.seq})", markup=False)


@consent.command("show")
@click.argument("consent_id")
@registry_option
@policy_option
@json_option
@click.option("--fhir", is_flag=True, help="Print it as a FHIR Consent resource.")
@fhir_export_options
@click.option("--as-of", "as_of", help="As recorded at this time.")
def consent_show(consent_id: str, registry_url: str, policy_path: str | None, as_json: bool,
                 fhir: bool, fhir_map: str | None, as_of: str | None,
                 fhir_version: str = "5.0.0") -> None:
    """Show the current version of a consent and its lawful status now (SPEC §5: needs
    the policy)."""
    with _store(registry_url, policy_path) as store:
        view = _view(store, as_of)
        found = view.consent(consent_id)
        if found is None:
            raise RegistryError([Diagnostic(f"no consent `{safe(consent_id)}` in the "
                                            "registry", "<options>",
                                            code="unknown-reference")])
        record, version = found
        if fhir:
            from flowguard.fhir import consent_to_fhir

            _echo_json(consent_to_fhir(record, _fhir_map(fhir_map),
                                       _fhir_version(fhir_version)))
            return
        status = _engine(view).consent_status(record)
        if as_json:
            _echo_json({"version": version, **status.as_json(),
                        "consent": record.model_dump(mode="json", exclude_none=True)})
        else:
            out.print(f"consent {safe(record.id)} (version {version}): {status.status}",
                      markup=False)
            _print_reasons(status)
            click.echo(safe_lines(yaml.safe_dump(record.model_dump(mode="json",
                                                                   exclude_none=True),
                                                 sort_keys=False, allow_unicode=True)),
                       nl=False)


def _print_reasons(status: ConsentStatus) -> None:
    for problem in status.problems or ():
        out.print(f"  {problem.status}: {safe(problem.reason)}", markup=False)
    if not status.problems:
        out.print(f"  {safe(status.reason)}", markup=False)


@consent.command("list")
@registry_option
@policy_option
@click.option("--subject", help="Only this subject's consents.")
@click.option("--status", type=click.Choice(STATUSES))
@json_option
@click.option("--as-of", "as_of", help="As recorded at this time.")
def consent_list(registry_url: str, policy_path: str | None, subject: str | None,
                 status: str | None, as_json: bool, as_of: str | None) -> None:
    """List consents with their lawful status now (SPEC §5: needs the policy)."""
    with _store(registry_url, policy_path) as store:
        view = _view(store, as_of)
        engine = _engine(view)
        records = list(view.records_of(subject).consents) if subject is not None \
            else view.snapshot().all_consents()
        now = datetime.now(UTC)
        rows = [(k, engine.consent_status(k, now)) for k in sorted(records, key=_by_id)]
        rows = [(k, s) for k, s in rows if status is None or s.status == status]
        if as_json:
            _echo_json([{**s.as_json(), **k.model_dump(mode="json", exclude_none=True)}
                        for k, s in rows])
            return
        table = Table(show_lines=False)
        table.add_column("id")
        table.add_column("status", no_wrap=True)
        for column in ("given by", "recipients", "data", "purposes", "expires"):
            table.add_column(column)
        for k, s in rows:
            table.add_row(cell(k.id), cell(s.status), cell(k.given_by),
                          cell(", ".join(_selector_text(r.model_dump(exclude_none=True))
                                         for r in k.recipients)),
                          cell(", ".join(k.data)), cell(", ".join(k.purposes)),
                          cell(_iso(k.expires_at)))
        out.print(table)
        out.print(f"{counted(len(rows), 'consent')} (why: `flowguard consent show ID`)",
                  markup=False)


def _selector_text(selector: dict[str, Any]) -> str:
    return " ".join(f"{key}:{','.join(values)}" for key, values in selector.items())


@consent.command("history")
@click.argument("consent_id")
@registry_option
@json_option
def consent_history(consent_id: str, registry_url: str, as_json: bool) -> None:
    """Every recorded event of a consent, oldest first."""
    with _store(registry_url) as store:
        events = store.history(consent_id)
        events = [e for e in events if e.kind.startswith("consent.")]
        if not events:
            raise RegistryError([Diagnostic(f"no consent `{consent_id}` in the registry",
                                            "<options>", code="unknown-reference")])
        if as_json:
            _echo_json([e.model_dump(mode="json", exclude_none=True) for e in events])
            return
        for event in events:
            _print_event(event)


# --------------------------------------------------------------------------- subject

@click.group()
def subject() -> None:
    """Record and inspect citizens (subjects)."""


@subject.command("add")
@click.argument("subject_id")
@registry_option
@policy_option
@by_option
@click.option("--birth-date", help="YYYY-MM-DD (omit: counts as an adult).")
@click.option("--jurisdiction", help="Jurisdiction id (default: the policy's default).")
@audit_options
def subject_add(subject_id: str, registry_url: str, policy_path: str | None, by: str | None,
                birth_date: str | None, jurisdiction: str | None,
                audit_url: str | None = None, log_key: str | None = None,
                pseudonym_key: str | None = None) -> None:
    """Record a subject."""
    with _store(registry_url, policy_path, (audit_url, log_key, pseudonym_key),
                writes="`subject add`") as store:
        data = {k: v for k, v in (("birth_date", birth_date),
                                  ("jurisdiction", jurisdiction)) if v is not None}
        event = store.add_subject(subject_id, data, by=_who(by))
        out.print(f"recorded the subject (event #{event.seq})", markup=False)


@subject.command("show")
@click.argument("subject_id")
@registry_option
@policy_option
@json_option
@click.option("--as-of", "as_of", help="As recorded at this time.")
def subject_show(subject_id: str, registry_url: str, policy_path: str | None, as_json: bool,
                 as_of: str | None) -> None:
    """A subject's record, guardianships and consents with their lawful status (SPEC §5:
    needs the policy)."""
    with _store(registry_url, policy_path) as store:
        view = _view(store, as_of)
        records = view.records_of(subject_id)
        if records.subject is None and not records.consents:
            raise RegistryError([Diagnostic("the subject is not recorded in the registry",
                                            "<options>", code="unknown-reference")])
        engine = _engine(view)
        now = datetime.now(UTC)
        payload = {
            "subject": None if records.subject is None
            else records.subject.model_dump(mode="json", exclude_none=True),
            "guardianships": [g.model_dump(mode="json", exclude_none=True)
                              for g in sorted(records.guardianships, key=_by_id)],
            "consents": [{**engine.consent_status(k, now, records=records).as_json(),
                          **k.model_dump(mode="json", exclude_none=True)}
                         for k in sorted(records.consents, key=_by_id)],
        }
        if as_json:
            _echo_json(payload)
        else:
            click.echo(safe_lines(yaml.safe_dump(payload, sort_keys=False, allow_unicode=True)),
                       nl=False)


# --------------------------------------------------------------------------- guardianship

@click.group()
def guardianship() -> None:
    """Record, end and list guardianships."""


@guardianship.command("add")
@registry_option
@policy_option
@by_option
@click.option("--id", "guardianship_id", required=True)
@click.option("--guardian", required=True, help="The guardian's person id.")
@click.option("--subject", required=True)
@click.option("--kind", type=click.Choice(["parental", "adult"]), required=True)
@click.option("--scope", multiple=True, help="Data categories it covers (default: all).")
@click.option("--valid-from", required=True, help="Time or date.")
@click.option("--valid-until", help="Time or date (default: open).")
@click.option("--evidence", help="The decision it rests on: court-order, birth-record, ...")
@click.option("--reference", help="The evidence's reference.")
@audit_options
def guardianship_add(registry_url: str, policy_path: str | None, by: str | None,
                     guardianship_id: str, guardian: str, subject: str, kind: str,
                     scope: Sequence[str], valid_from: str, valid_until: str | None,
                     evidence: str | None, reference: str | None,
                     audit_url: str | None = None, log_key: str | None = None,
                     pseudonym_key: str | None = None) -> None:
    """Record a guardianship."""
    with _store(registry_url, policy_path, (audit_url, log_key, pseudonym_key),
                writes="`guardianship add`") as store:
        record: dict[str, Any] = {"id": guardianship_id, "guardian": guardian,
                                  "subject": subject, "kind": kind, "valid_from": valid_from}
        if scope:
            record["scope"] = _split(scope)
        if valid_until:
            record["valid_until"] = valid_until
        if evidence or reference:
            record["evidence"] = Evidence(method=evidence or "unspecified",
                                          reference=reference).model_dump(exclude_none=True)
        event = store.add_guardianship(record, by=_who(by))
        out.print(f"recorded guardianship {event.record} (event #{event.seq})", markup=False)


@guardianship.command("end")
@click.argument("guardianship_id")
@registry_option
@by_option
@click.option("--at", help="When it ends (default: now).")
@audit_options
def guardianship_end(guardianship_id: str, registry_url: str, by: str | None,
                     at: str | None,
                     audit_url: str | None = None, log_key: str | None = None,
                     pseudonym_key: str | None = None) -> None:
    """End a guardianship."""
    with _store(registry_url, None, (audit_url, log_key, pseudonym_key)) as store:
        event = store.end_guardianship(guardianship_id, by=_who(by),
                                       at=parse_time(at, "--at"))
        out.print(f"guardianship {guardianship_id} ends at {event.body['valid_until']} "
                  f"(event #{event.seq})", markup=False)


@guardianship.command("list")
@registry_option
@click.option("--subject", help="Only this subject's guardianships.")
@json_option
def guardianship_list(registry_url: str, subject: str | None, as_json: bool) -> None:
    """List guardianships."""
    with _store(registry_url) as store:
        records = list(store.records_of(subject).guardianships) if subject is not None \
            else store.snapshot().all_guardianships()
        records.sort(key=_by_id)
        if as_json:
            _echo_json([g.model_dump(mode="json", exclude_none=True) for g in records])
            return
        table = Table()
        for column in ("id", "guardian", "kind", "scope", "valid from", "valid until"):
            table.add_column(column)
        for g in records:
            table.add_row(cell(g.id), cell(g.guardian), cell(g.kind),
                          cell(", ".join(g.scope or ("all",))), cell(_iso(g.valid_from)),
                          cell(_iso(g.valid_until)))
        out.print(table)
        out.print(counted(len(records), "guardianship"), markup=False)

