"""The `flowguard` command: a thin shell over the library. Exit codes: 0 ok / permit,
1 deny / failures found, 2 bad input. Never a traceback."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from flowguard import _cli_citizen  # noqa: F401  (adds `subject link`)
from flowguard._cli_audit import audit, keys
from flowguard._cli_common import (
    EXIT_DENY,
    EXIT_INPUT,
    EXIT_OK,
    audit_options,
    close_trail,
    err,
    fail_input,
    open_trail,
    out,
)
from flowguard._cli_design import COMMANDS as DESIGN_COMMANDS
from flowguard._cli_registry import consent, guardianship, parse_time, registry, subject
from flowguard._cli_serve import serve, token
from flowguard._cli_witness import audit_witness, witness
from flowguard._loading import Collector
from flowguard._source import SourceError, parse_documents, read_text
from flowguard._terminal import cell, cell_lines, safe
from flowguard._wording import counted
from flowguard.engine import Engine, as_flow, explain
from flowguard.errors import Diagnostic, FlowError, InputError, RegistryError
from flowguard.lint import lint
from flowguard.model import Decision, Flow
from flowguard.policy import load_policy
from flowguard.registry import Registry, load_registry
from flowguard.schema import SCHEMAS, json_schema
from flowguard.store import RegistryStore, init_database, open_registry, open_store, redact_url
from flowguard.testing import SuiteResult, load_suite, run_suites

if TYPE_CHECKING:
    from flowguard.audit.trail import AuditTrail

MAX_FLOW_BYTES = 1024 * 1024
MAX_FLOW_FILE_BYTES = 64 * MAX_FLOW_BYTES



def _engine(policy_path: str, registry_location: str | None,
            as_of: datetime | None = None, audit: AuditTrail | None = None) -> Engine:
    try:
        policy = load_policy(policy_path)
        registry: Registry | None = None
        if registry_location is not None:
            registry = open_registry(registry_location, policy)
            if as_of is not None:
                if not isinstance(registry, RegistryStore):
                    raise RegistryError([Diagnostic(
                        "--as-of needs a registry database: a file has no history",
                        "<options>")])
                registry = registry.as_of(as_of)
        elif as_of is not None:
            raise RegistryError([Diagnostic("--as-of needs --registry", "<options>")])
    except InputError as exc:
        fail_input(exc)
    return Engine(policy, registry, audit=audit)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowguard")
def cli() -> None:
    """Consent-aware information-flow checker for co-produced public services."""


# --------------------------------------------------------------------------- check

def _read_flows(source: str) -> tuple[list[Flow], bool]:
    """Flows from a JSON (or YAML) file or `-` for stdin: one object, or a list of them."""
    name = "<stdin>" if source == "-" else source
    try:
        if source == "-":
            text = sys.stdin.read(MAX_FLOW_BYTES + 1)
            if len(text) > MAX_FLOW_BYTES:
                raise FlowError([Diagnostic(f"input is larger than {MAX_FLOW_BYTES // 1024} "
                                            "KiB", name, code="too-large")])
        else:
            text = read_text(Path(source), max_bytes=MAX_FLOW_FILE_BYTES)
        docs = list(parse_documents(text, name,
                                    as_json=not name.endswith((".yaml", ".yml"))))
    except SourceError as exc:
        raise FlowError([exc.diagnostic]) from None
    if len(docs) != 1 or docs[0].data is None:
        raise FlowError([Diagnostic("expected one flow object or a list of flows", name)])
    doc = docs[0]
    many = isinstance(doc.data, list)
    if many and not doc.data:
        raise FlowError([Diagnostic("the list of flows is empty", name, code="empty")])
    items = doc.data if many else [doc.data]
    collector = Collector()
    flows = []
    for index, item in enumerate(items):
        path: tuple[str | int, ...] = (index,) if many else ()
        flow = collector.validate(doc, path, Flow, item, f"flow #{index + 1}" if many else "flow")
        if flow is not None:
            flows.append(flow)
    if collector.has_errors:
        raise FlowError(collector.diagnostics)
    return flows, many


def _print_decision(decision: Decision) -> None:
    f = decision.flow
    colour = "green" if decision.permit else "red"
    out.print(f"[bold {colour}]{decision.decision.upper()}[/] "
              f"{f.sender} → {f.recipient}  purpose {f.purpose} at {f.subprocess}  "
              f"({f.at.isoformat().replace('+00:00', 'Z') if f.at else ''})")
    for line in explain(decision):
        out.print("  " + line, markup=False)
    if not decision.permit and decision.permitted:
        out.print("  would be permitted alone: " + ", ".join(decision.permitted), markup=False)
    if decision.obligations:
        out.print("  obligations: " + "; ".join(decision.obligations), markup=False)
    out.print(f"  [dim]decision {decision.decision_id} · policy {decision.policy_digest}[/]")


@cli.command()
@click.argument("flow_file", required=False)
@click.option("--policy", "-p", "policy_path", required=True, help="Policy directory or file.")
@click.option("--registry", "-r", "registry_path", envvar="FLOWGUARD_REGISTRY",
              help="Consent registry: a database URL (sqlite:///path.db, postgresql://...) or "
                   "a YAML/JSON file; env FLOWGUARD_REGISTRY.")
@click.option("--as-of", "as_of", help="Decide with the registry as recorded at this time "
              "(and at that time, unless the flow says `at`).")
@click.option("--sender")
@click.option("--recipient")
@click.option("--subject")
@click.option("--data", multiple=True, help="A data category; repeat or comma-separate.")
@click.option("--purpose")
@click.option("--subprocess")
@click.option("--at", help="RFC 3339 time with a zone (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print the decision JSON (SPEC §6).")
@audit_options
def check(flow_file: str | None, policy_path: str, registry_path: str | None,
          as_of: str | None, audit_url: str | None, log_key: str | None,
          pseudonym_key: str | None, sender: str | None, recipient: str | None, subject: str | None,
          data: Sequence[str], purpose: str | None, subprocess: str | None, at: str | None,
          as_json: bool) -> None:
    """Decide a flow: FLOW_FILE (JSON, `-` for stdin) or the flow options.

    Exit 0 when permitted, 1 when denied, 2 on bad input."""
    options: dict[str, Any] = {"sender": sender, "recipient": recipient, "subject": subject,
               "purpose": purpose, "subprocess": subprocess, "at": at}
    given: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if data:
        given["data"] = [c.strip() for item in data for c in item.split(",") if c.strip()]
    try:
        if flow_file is not None:
            if given:
                raise FlowError([Diagnostic("give the flow as a file or as options, not both",
                                            "<options>")])
            flows, many = _read_flows(flow_file)
        else:
            flows, many = [as_flow(given, "<options>")], False
    except InputError as exc:
        fail_input(exc)
    try:
        when = parse_time(as_of, "--as-of")
    except InputError as exc:
        fail_input(exc)
    if when is not None:
        flows = [f if f.at is not None else f.model_copy(update={"at": when}) for f in flows]
    engine = _engine(policy_path, registry_path, when,
                     open_trail(audit_url, log_key, pseudonym_key))
    decisions = engine.check_many(flows)
    close_trail(engine.audit)  # signs a checkpoint over its entries (with --log-key)
    if as_json:
        payload: Any = [d.model_dump(mode="json") for d in decisions]
        click.echo(json.dumps(payload if many else payload[0], indent=2, ensure_ascii=False))
    else:
        for decision in decisions:
            _print_decision(decision)
    sys.exit(EXIT_OK if all(d.permit for d in decisions) else EXIT_DENY)


# --------------------------------------------------------------------------- test

def _print_suite(result: SuiteResult, verbose: bool) -> None:
    """A failing case: its file and line, number (from 1) and name, expected vs actual,
    and the decision explained."""
    for r in result.results:
        where = f"{result.file}:{r.line}" if r.line is not None else result.file
        name = escape(safe(r.case.name))
        if r.passed:
            if verbose:
                out.print(f"[green]PASS[/] {escape(where)}: case {r.number} {name}")
        else:
            out.print(f"[red]FAIL[/] {escape(where)}: case {r.number} {name}: "
                      + escape(safe("; ".join(r.problems))))
            for line in r.explanation:
                out.print(f"       {safe(line)}", markup=False)


@cli.command("test")
@click.argument("files", nargs=-1, required=True)
@click.option("--verbose", "-v", is_flag=True, help="Also list the cases that pass.")
@click.option("--registry", "-r", "registry_location",
              help="Decide against this registry (database URL or file) instead of the "
                   "files' own `consents`.")
def test_command(files: Sequence[str], verbose: bool, registry_location: str | None) -> None:
    """Run table-driven policy test files (SPEC §7)."""
    results, errors = run_suites(list(files), registry_location)
    for result in results:
        _print_suite(result, verbose)
    for error in errors:
        for diagnostic in error.diagnostics:
            err.print(safe(diagnostic.render()), markup=False)
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    click.echo(f"{passed} passed, {failed} failed")
    if errors:
        sys.exit(EXIT_INPUT)
    sys.exit(EXIT_OK if failed == 0 else EXIT_DENY)


# --------------------------------------------------------------------------- lint

@cli.command("lint")
@click.argument("policy_path")
@click.option("--registry", "-r", "registry_path",
              help="Also check a consent registry (a file or a database URL): consents that "
                   "would not count when given, and consents no rule can use.")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option("--json", "as_json", is_flag=True, help="Print diagnostics as JSON.")
def lint_command(policy_path: str, registry_path: str | None, strict: bool,
                 as_json: bool) -> None:
    """Check a policy: errors (unresolved references, missing `law` or `art9`, ...) and
    warnings (shadowed rules, rules that never apply, unused entities)."""
    diagnostics = lint(policy_path, registry_path)
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    if as_json:
        click.echo(json.dumps([{"severity": d.severity, "code": d.code, "message": d.message,
                                "file": d.file, "line": d.line, "column": d.column,
                                "hint": d.hint} for d in diagnostics], indent=2))
    else:
        for d in diagnostics:
            (err if d.severity == "error" else out).print(safe(d.render()), markup=False)
        click.echo(f"{counted(errors, 'error')}, {counted(warnings, 'warning')}")
    sys.exit(EXIT_DENY if errors or (strict and warnings) else EXIT_OK)


# --------------------------------------------------------------------------- schema

@cli.command("schema")
@click.argument("kind", type=click.Choice(sorted(SCHEMAS)), default="policy")
def schema_command(kind: str) -> None:
    """Print the JSON Schema of a file format (for editors and the YAML language server)."""
    click.echo(json.dumps(json_schema(kind), indent=2, sort_keys=True))


# --------------------------------------------------------------------------- demo

@cli.command("demo")
@click.option("--examples", default="policies", show_default=True,
              help="Folder holding the shipped examples.")
def demo(examples: str) -> None:
    """Check every flow of the shipped examples' test files against their registries in an
    embedded SQLite store, explain each decision, then show a withdrawal taking effect."""
    suites = sorted(Path(examples).glob("*/tests.yaml"))
    if not suites:
        err.print(f"no examples found under {examples}/ (run from the project's root)")
        sys.exit(EXIT_INPUT)
    with tempfile.TemporaryDirectory(prefix="flowguard-demo-") as folder:
        results = []
        stores = {}
        for suite in suites:
            url = f"sqlite:///{Path(folder) / (suite.parent.name + '.db')}"
            try:
                _import_example(suite.parent, url)
                results.append(load_suite(suite, registry=url).run())
            except InputError as exc:
                fail_input(exc)
            stores[suite.parent.name] = url
        for result in results:
            table = Table(title=result.file, show_lines=False, expand=True)
            table.add_column("case", ratio=3)
            table.add_column("decision", ratio=1)
            table.add_column("why, and what would make it lawful", ratio=5)
            for r in result.results:
                d = r.decision
                colour = "green" if d.permit else "red"
                table.add_row(cell(r.case.name), f"[{colour}]{d.decision}[/] {d.reason}",
                              cell_lines("\n".join(explain(d))))
            out.print(table)
        if "aalborg-aktiv" in stores:
            _demo_withdrawal(Path(examples) / "aalborg-aktiv", stores["aalborg-aktiv"])
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(EXIT_OK if failed == 0 else EXIT_DENY)


def _import_example(example: Path, url: str) -> None:
    init_database(url)
    policy = load_policy(example)
    with open_store(url, policy) as store:
        store.import_records(load_registry(example / "consents.yaml", policy), by="demo")


def _demo_withdrawal(example: Path, url: str) -> None:
    """A citizen consents, then withdraws; the very next check of the same flow denies."""
    flow = as_flow({"sender": "job-consultant", "recipient": "cafe-manager",
                    "subject": "citizen-0609", "data": ["identity.name"],
                    "purpose": "job-matching.employer-contact", "subprocess": "co-delivery"})
    with open_store(url) as store:
        engine = Engine(load_policy(example), store)
        out.print(f"\n[bold]Consent and withdrawal[/] (registry {redact_url(url)})")
        store.grant({"id": "k-demo", "subject": "citizen-0609", "given_by": "citizen-0609",
                     "given_at": datetime.now(UTC).isoformat(),
                     "recipients": [{"organization": "cafe-solsikke"}],
                     "data": ["identity.name"], "purposes": ["job-matching"],
                     "evidence": {"method": "signed-form"}}, by="demo")
        out.print("$ flowguard consent grant --id k-demo --subject citizen-0609 "
                  "--recipient cafe-solsikke --data identity.name --purpose job-matching",
                  markup=False)
        _print_decision(engine.check(flow))
        store.withdraw("k-demo", by="demo")
        out.print("$ flowguard consent withdraw k-demo", markup=False)
        _print_decision(engine.check(flow))


for _group in (registry, consent, subject, guardianship, serve, token, keys, audit,
               *DESIGN_COMMANDS):
    cli.add_command(_group)
cli.add_command(witness)
audit.add_command(audit_witness)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # never a traceback; name no input values
        err.print(f"flowguard: internal error ({type(exc).__name__}); nothing was changed")
        sys.exit(EXIT_INPUT)
