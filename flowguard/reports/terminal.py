"""Terminal reports with rich: tables for the design's flows, the consent plan and the
findings; a diff as grouped statements; reach answers as a table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape as escape_markup

from flowguard._plain import counted
from flowguard._terminal import safe
from flowguard.analysis import (
    CHANGE_KINDS,
    CHANGE_TEXT,
    PolicyDiff,
    ReachAnswer,
    Vocabulary,
    purposes_text,
    status_text,
    subprocesses_text,
)
from flowguard.design import OUTCOMES, DesignReport
from flowguard.reports._common import (
    LABEL,
    RICH_STYLE,
    SYMBOL,
    flow_lines,
    grantors_line,
    service_title,
)
from flowguard.reports._fit import fitted_table
from flowguard.reports.forms import consent_forms, form_paragraphs


def escape(text: str) -> str:
    """Text from a policy or design file for a rich string: inert (`flowguard._terminal`)
    and never read as markup."""
    return escape_markup(safe(text))


def _outcome(outcome: str) -> str:
    return f"[{RICH_STYLE[outcome]}]{SYMBOL[outcome]} {LABEL[outcome]}[/]"


def print_design(report: DesignReport, console: Console, *, verbose: bool = False,
                 language: str | None = None) -> None:
    # wrapped here at spaces, ids whole, rather than cut by the terminal mid-word (issue 16)
    soft_wrap = console.soft_wrap
    console.soft_wrap = False
    try:
        _print_design(report, console, verbose=verbose, language=language)
    finally:
        console.soft_wrap = soft_wrap


def _print_design(report: DesignReport, console: Console, *, verbose: bool,
                  language: str | None) -> None:
    policy = report.policy
    header = report.design.design
    name = header.name or header.service or "flow design"
    console.print(f"[bold]Flow design[/] {escape(name)} · policy {escape(service_title(policy))}"
                  f" [dim]{policy.digest}[/]")
    # ids are never broken: a table that fits the terminal, or a block per flow (issue 16)
    console.print(fitted_table(
        console, ("flow", "step", "from → to", "data", "purpose", "outcome"),
        [(escape(f.id), escape(f.subprocess), escape(f"{f.sender} → {f.recipient}"),
          escape(", ".join(f.data)), escape(f.purpose), _outcome(r.outcome))
         for r in report.flows for f in (r.flow,)]))
    console.print("[bold]Why[/]" + ("" if verbose else " (lawful flows: --verbose)"))
    for r in report.flows:
        if r.outcome == "lawful" and not verbose:
            continue
        for outcome, categories, text in flow_lines(r, policy):
            console.print(f"  {escape(r.flow.id)} [{RICH_STYLE[outcome]}]{SYMBOL[outcome]}[/] "
                          f"{escape(', '.join(categories))}: {escape(text)}")
    if report.plan:
        console.print("  " + escape(grantors_line(report)))
    if report.findings:
        console.print(fitted_table(
            console, ("check", "flow", "line", "finding"),
            [(f"[yellow]⚠ {escape(x.check)}[/]", escape(x.flow or ""),
              str(x.position[0] or ""), escape(x.message)) for x in report.findings],
            title="Design checks", ratios=(1, 1, 1, 4)))
    forms = consent_forms(report, language)
    if forms:
        console.print(f"[bold]Consent plan[/]: {counted(len(forms), 'consent')} to ask each "
                      "citizen for")
        for form in forms:
            lines = form_paragraphs(form)
            console.print(f"\n[bold]{escape(lines[0])}[/]")
            for line in lines[1:]:
                console.print("  " + escape(line))
    counts = ", ".join(f"{report.counts.get(o, 0)} {LABEL[o]}" for o in OUTCOMES
                       if report.counts.get(o, 0))
    verdict = "[red]FAIL[/]" if report.failed else "[green]PASS[/]"
    console.print(f"\n{verdict} {len(report.flows)} flows: {counts}; "
                  f"{counted(len(report.plan), 'consent')} to collect; "
                  f"{counted(len(report.findings), 'design finding')}")


def print_diff(diff: PolicyDiff, console: Console) -> None:
    console.print(f"[bold]Policy change[/] {escape(diff.old_label)} → {escape(diff.new_label)}")
    if not diff.changes:
        console.print("no change in what is lawful")
    for kind in CHANGE_KINDS:
        changes = [c for c in diff.changes if c.kind == kind]
        if not changes:
            continue
        style = {"widen": "yellow", "narrow": "cyan", "basis": "blue",
                 "deny-reason": "dim"}[kind]
        console.print(f"\n[bold {style}]{kind}[/] ({len(changes)}): {CHANGE_TEXT[kind]}")
        for c in changes:
            console.print(f"  • {escape(c.text)}")
    if diff.vocabulary:
        console.print("\n[bold]Declarations[/]")
        for v in diff.vocabulary:
            parts = [f"{label} {', '.join(values)}" for label, values in
                     (("added", v.added), ("removed", v.removed), ("changed", v.changed))
                     if values]
            console.print(f"  {escape(v.section)}: {escape('; '.join(parts))}")
    counts = diff.counts
    console.print(f"\n{counted(len(diff.changes), 'statement')}; tuples widened "
                  f"{counts.get('widen', 0)}, "
                  f"narrowed {counts.get('narrow', 0)}, basis changed {counts.get('basis', 0)}"
                  f", deny reason changed {counts.get('deny-reason', 0)}")


def print_reach(answer: ReachAnswer, console: Console) -> None:
    policy = answer.policy
    vocabulary = Vocabulary(policy)
    filters = " ".join(f"{k} {v}" for k, v in answer.filters)
    if answer.query == "who-can-receive":
        console.print(f"[bold]Who can receive[/] {escape(answer.subject)}"
                      + (f" ({escape(filters)})" if filters else ""))
    else:
        console.print(f"[bold]What can[/] {escape(answer.subject)} [bold]receive[/]"
                      + (f" ({escape(filters)})" if filters else ""))
    if not answer.rows:
        console.print("nothing: no rule lets it through for any consent")
        return
    order = list(policy.subprocesses)
    console.print(fitted_table(
        console, ("recipient", "categories", "purposes", "sub-processes", "from", "how"),
        [(escape(r.recipient), escape(", ".join(r.categories)),
          escape(purposes_text(r.purposes, policy).removeprefix("for ")),
          escape(subprocesses_text(r.subprocesses, order).removeprefix("at ")),
          escape(vocabulary.actors_text(r.senders, everyone="anyone")),
          escape(status_text(r.status))) for r in answer.rows]))
    console.print(f"{counted(len(answer.recipients), 'recipient')}, "
                  f"{counted(len(answer.rows), 'row')}")
