"""`flowguard design | diff | ropa | who-can-receive | what-can-receive`: the privacy officer's
and the policy owner's commands, a thin shell over `flowguard.design`, `flowguard.analysis`
and `flowguard.reports`. Exit codes: 0 ok, 1 failures found, 2 bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from flowguard._cli_common import EXIT_DENY, EXIT_OK, err, fail_input, out
from flowguard._loading import did_you_mean
from flowguard.analysis import Reach, diff_policies, ropa, what_can_receive
from flowguard.analysis import who_can_receive as who_receives
from flowguard.design import DesignError, PolicyIndex, analyse_design, load_design
from flowguard.errors import Diagnostic, InputError, PolicyError
from flowguard.i18n import LANGUAGES
from flowguard.model import Policy
from flowguard.policy import LoadedPolicy, load_policy_with_sources
from flowguard.reports import (
    consent_forms_html,
    design_html,
    design_json,
    design_markdown,
    design_sarif,
    diff_json,
    diff_markdown,
    print_design,
    print_diff,
    print_reach,
    reach_json,
    ropa_html,
    ropa_json,
    ropa_markdown,
)


def _policy(path: str) -> LoadedPolicy:
    loaded = load_policy_with_sources(path)
    if loaded.policy is None:
        fail_input(PolicyError(loaded.diagnostics))
    return loaded


def _bad_option(message: str, hint: str | None = None) -> NoReturn:
    fail_input(InputError([Diagnostic(message, "<options>", hint=hint, code="invalid")]))


def _write(path: str, text: str) -> None:
    """Write a report; a file that cannot be written is bad input (exit 2)."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        _bad_option(f"cannot write {path}: {exc.strerror}")


def _emit(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        _write(output, text)


_F = TypeVar("_F", bound=Callable[..., Any])
_FORMAT_NAMES = {"json": "JSON", "sarif": "SARIF 2.1.0", "markdown": "Markdown"}


def _format_options(*formats: str) -> Callable[[_F], _F]:
    """`--json`, `--sarif`, `--markdown`: one choice of report format, in `fmt`."""
    def decorate(func: _F) -> _F:
        for name in reversed(formats):
            func = click.option(f"--{name}", "fmt", flag_value=name,
                                help=f"Print the report as {_FORMAT_NAMES[name]}.")(func)
        return func
    return decorate


# --------------------------------------------------------------------------- design


@click.command("design")
@click.argument("policy_path")
@click.argument("design_path", required=False)
@_format_options("json", "sarif", "markdown")
@click.option("--output", "-o", metavar="FILE", help="Write the JSON, SARIF or Markdown report "
              "to FILE instead of printing it.")
@click.option("--html", "html_path", metavar="FILE",
              help="Also write the self-contained HTML page (swimlane diagram, flows, consent "
                   "plan) to FILE.")
@click.option("--forms", "forms_path", metavar="FILE",
              help="Also write the consent forms alone, a page to print for citizens, to FILE.")
@click.option("--lang", "language", type=click.Choice(LANGUAGES),
              help="Language of the consent forms (default: the policy's service.language, "
                   "else en).")
@click.option("--strict", is_flag=True, help="Exit 1 on design-check findings too.")
@click.option("--verbose", "-v", is_flag=True, help="Explain the lawful flows too.")
def design_command(policy_path: str, design_path: str | None, fmt: str | None,
                   output: str | None, html_path: str | None, forms_path: str | None,
                   language: str | None, strict: bool, verbose: bool) -> None:
    """Validate a flow design (SPEC §8) against a policy: classify every flow and category for
    any citizen, plan the consents to collect, and check the design as a whole.

    DESIGN_PATH defaults to design.yaml in a POLICY_PATH directory. Exit 0 when every flow is
    lawful or needs consent, 1 when any is forbidden, has no rule or is invalid (or, with
    --strict, when a design check finds something), 2 on bad input."""
    loaded = _policy(policy_path)
    assert loaded.policy is not None
    if design_path is None:
        if not Path(policy_path).is_dir():
            _bad_option("give the design file: DESIGN_PATH defaults to design.yaml only in a "
                        "policy directory")
        design_path = str(Path(policy_path) / "design.yaml")
    try:
        design = load_design(design_path, loaded.policy)
    except DesignError as exc:
        fail_input(exc)
    report = analyse_design(loaded.policy, design)
    if fmt == "json":
        _emit(design_json(report), output)
    elif fmt == "sarif":
        rules = {rule_id: where for (section, rule_id), where in loaded.locations.items()
                 if section == "rules"}
        _emit(design_sarif(report, rules), output)
    elif fmt == "markdown":
        _emit(design_markdown(report, language), output)
    else:
        if output is not None:
            _bad_option("--output needs --json, --sarif or --markdown")
        print_design(report, out, verbose=verbose, language=language)
    if html_path is not None:
        _write(html_path, design_html(report, language))
        err.print(f"wrote {html_path}", markup=False, highlight=False)
    if forms_path is not None:
        _write(forms_path, consent_forms_html(report, language))
        err.print(f"wrote {forms_path}", markup=False, highlight=False)
    failed = report.failed or (strict and bool(report.findings))
    sys.exit(EXIT_DENY if failed else EXIT_OK)


# --------------------------------------------------------------------------- diff


@click.command("diff")
@click.argument("old_path")
@click.argument("new_path")
@_format_options("json", "markdown")
@click.option("--output", "-o", metavar="FILE",
              help="Write the JSON or Markdown report to FILE.")
@click.option("--fail-on", "fail_on", multiple=True,
              type=click.Choice(["widen", "narrow", "any"]),
              help="Exit 1 when the new policy widens (or narrows, or changes at all) what is "
                   "lawful; repeatable. For CI gates.")
def diff_command(old_path: str, new_path: str, fmt: str | None, output: str | None,
                 fail_on: Sequence[str]) -> None:
    """The exact change in what is lawful between two versions of a policy, over every
    sender, recipient, leaf category, purpose and sub-process, as grouped statements.

    Exit 0, or 1 when --fail-on finds what it names, 2 on bad input."""
    old = _policy(old_path).policy
    new = _policy(new_path).policy
    assert old is not None and new is not None
    diff = diff_policies(old, new, old_label=old_path, new_label=new_path)
    if fmt == "json":
        _emit(diff_json(diff), output)
    elif fmt == "markdown":
        _emit(diff_markdown(diff), output)
    else:
        if output is not None:
            _bad_option("--output needs --json or --markdown")
        print_diff(diff, out)
    failed = (("widen" in fail_on and diff.widened) or ("narrow" in fail_on and diff.narrowed)
              or ("any" in fail_on and bool(diff.changes)))
    sys.exit(EXIT_DENY if failed else EXIT_OK)


# --------------------------------------------------------------------------- ropa


@click.command("ropa")
@click.argument("policy_path")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.option("--output", "-o", metavar="FILE",
              help="Write the Markdown (or JSON) record to FILE.")
@click.option("--html", "html_path", metavar="FILE", help="Also write the record as a "
              "self-contained HTML page to FILE.")
def ropa_command(policy_path: str, as_json: bool, output: str | None,
                 html_path: str | None) -> None:
    """The GDPR Art. 30 record of processing activities generated from a policy: purposes,
    categories of data subjects and data, recipients, legal bases and laws. Markdown by
    default."""
    policy = _policy(policy_path).policy
    assert policy is not None
    record = ropa(policy)
    _emit(ropa_json(record) if as_json else ropa_markdown(record), output)
    if html_path is not None:
        _write(html_path, ropa_html(record))
        err.print(f"wrote {html_path}", markup=False, highlight=False)
    sys.exit(EXIT_OK)


# --------------------------------------------------------------------------- reach


def _reach_options(func: _F) -> _F:
    func = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")(func)
    func = click.option("--from", "sender", help="Only flows from this actor.")(func)
    func = click.option("--subprocess", help="Only at this sub-process.")(func)
    func = click.option("--purpose", help="Only for this purpose.")(func)
    return click.option("--policy", "-p", "policy_path", required=True,
                        envvar="FLOWGUARD_POLICY",
                        help="Policy directory or file (env FLOWGUARD_POLICY).")(func)


def _check_filters(policy: Policy, purpose: str | None, subprocess: str | None,
                   sender: str | None) -> None:
    problems = []
    for what, value, known in (("purpose", purpose, policy.purpose_tree.ids),
                               ("sub-process", subprocess, set(policy.subprocesses)),
                               ("actor", sender, set(policy.actors))):
        if value is not None and value not in known:
            problems.append(Diagnostic(f"unknown {what} `{value}`", "<options>",
                                       hint=did_you_mean(value, known), code="unknown"))
    if problems:
        fail_input(InputError(problems))


@click.command("who-can-receive")
@click.argument("category")
@_reach_options
def who_can_receive(category: str, policy_path: str, purpose: str | None,
                    subprocess: str | None, sender: str | None, as_json: bool) -> None:
    """Every actor that may receive CATEGORY (or a part of it): for which purposes, at which
    sub-processes, from whom, and on which basis (a law, or consent)."""
    policy = _policy(policy_path).policy
    assert policy is not None
    if category not in policy.category_tree:
        _bad_option(f"unknown data category `{category}`",
                    did_you_mean(category, policy.category_tree.ids))
    _check_filters(policy, purpose, subprocess, sender)
    answer = who_receives(Reach(PolicyIndex(policy)), category, purpose=purpose,
                          subprocess=subprocess, sender=sender)
    if as_json:
        click.echo(reach_json(answer), nl=False)
    else:
        print_reach(answer, out)
    sys.exit(EXIT_OK)


@click.command("what-can-receive")
@click.argument("actor")
@_reach_options
def what_can_receive_command(actor: str, policy_path: str, purpose: str | None,
                             subprocess: str | None, sender: str | None,
                             as_json: bool) -> None:
    """Every data category ACTOR may receive: for which purposes, at which sub-processes,
    from whom, and on which basis (a law, or consent)."""
    policy = _policy(policy_path).policy
    assert policy is not None
    if actor not in policy.actors:
        _bad_option(f"unknown actor `{actor}`", did_you_mean(actor, policy.actors))
    _check_filters(policy, purpose, subprocess, sender)
    answer = what_can_receive(Reach(PolicyIndex(policy)), actor, purpose=purpose,
                              subprocess=subprocess, sender=sender)
    if as_json:
        click.echo(reach_json(answer), nl=False)
    else:
        print_reach(answer, out)
    sys.exit(EXIT_OK)


COMMANDS = (design_command, diff_command, ropa_command, who_can_receive,
            what_can_receive_command)
"""Registered on the `flowguard` group by `flowguard._cli`."""
