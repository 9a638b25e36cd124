"""`flowguard subject link` / `unlink`: link a citizen's login to a subject or a guardian, or
end that link, storing only the login value's keyed hash (a thin shell over
`flowguard.store.logins`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from flowguard._cli_common import audit_options, fail_input, out
from flowguard._cli_registry import (
    _store,
    _who,
    by_option,
    consent,
    registry_option,
    subject,
)
from flowguard.errors import Diagnostic, InputError

if TYPE_CHECKING:
    from flowguard.audit.entries import Pseudonymizer

_F = TypeVar("_F", bound=Callable[..., Any])


@subject.command("link")
@click.argument("person")
@click.option("--login", "login", required=True,
              help="The value the sign-in provider asserts (e.g. the national id in the ID "
                   "token's claim); `-` reads it from standard input, out of the shell's "
                   "history. Only its keyed hash is stored.")
@registry_option
@by_option
@audit_options
def subject_link(person: str, login: str, registry_url: str, by: str | None,
                 audit_url: str | None = None, log_key: str | None = None,
                 pseudonym_key: str | None = None) -> None:
    """Link a citizen's login to PERSON (a subject id, or a guardian's person id), so the
    citizen pages under /me/ show that person's consents after sign-in."""
    from flowguard.store.logins import link_login

    keyed = _login_key(pseudonym_key)
    value = _login_value(login)
    with _store(registry_url, None, (audit_url, log_key, pseudonym_key)) as store:
        event = link_login(store, person, keyed.login(value), by=_who(by))
        out.print(f"linked the login (event #{event.seq}); only its keyed hash is stored",
                  markup=False)


@subject.command("unlink")
@click.argument("person")
@click.option("--login", "login", required=True,
              help="The linked value (as given to `subject link`); `-` reads it from standard "
                   "input, out of the shell's history.")
@registry_option
@by_option
@audit_options
def subject_unlink(person: str, login: str, registry_url: str, by: str | None,
                   audit_url: str | None = None, log_key: str | None = None,
                   pseudonym_key: str | None = None) -> None:
    """End the link of a citizen's login to PERSON: that login then sees the "not linked"
    page of the citizen pages. Recorded as an audited `login.unlinked` registry event."""
    from flowguard.store.logins import person_of_login, unlink_login

    keyed = _login_key(pseudonym_key)
    value = _login_value(login)
    with _store(registry_url, None, (audit_url, log_key, pseudonym_key)) as store:
        login_hash = keyed.login(value)
        linked = person_of_login(store, login_hash)
        if linked != person:
            fail_input(InputError([Diagnostic(
                "--login: this login is not linked to " + ("anyone" if linked is None
                                                          else "this person"),
                "<options>", code="unknown-reference",
                hint="check PERSON and the value; `flowguard subject link` links one")]))
        event = unlink_login(store, login_hash, by=_who(by))
        out.print(f"unlinked the login (event #{event.seq})", markup=False)


def _login_key(pseudonym_key: str | None) -> Pseudonymizer:
    from flowguard.audit.entries import load_pseudonym_key

    try:
        if pseudonym_key is None:
            raise InputError([Diagnostic(
                "--pseudonym-key is needed: the login is stored as its keyed hash", "<options>",
                code="missing", hint="--pseudonym-key FILE or env FLOWGUARD_PSEUDONYM_KEY")])
        return load_pseudonym_key(pseudonym_key)
    except InputError as exc:
        fail_input(exc)


def _login_value(login: str) -> str:
    value = sys.stdin.readline().strip() if login == "-" else login.strip()
    if not value:
        fail_input(InputError([Diagnostic("--login: the login value is empty", "<options>",
                                          code="missing")]))
    return value


def citizen_options(func: _F) -> _F:
    """`flowguard serve`'s options of the citizen pages under /me/ (off unless
    --citizen-issuer is given)."""
    for option in reversed((
        click.option("--citizen-issuer", envvar="FLOWGUARD_CITIZEN_ISSUER",
                     help="OpenID Connect issuer URL: enables the citizen pages under /me/."),
        click.option("--citizen-client-id", envvar="FLOWGUARD_CITIZEN_CLIENT_ID",
                     help="This service's client id at the provider."),
        click.option("--citizen-client-secret-file", envvar="FLOWGUARD_CITIZEN_CLIENT_SECRET_FILE",
                     help="File (mode 0600) holding the client secret."),
        click.option("--citizen-claim", default="sub", show_default=True,
                     help="The ID token claim a login is linked by (e.g. a national id)."),
        click.option("--citizen-contact",
                     help="Whom a citizen whose login is not linked should contact."),
        click.option("--citizen-design",
                     help="A design whose consent plan's forms citizens signed: /me/ shows "
                          "each such consent's exact text."),
        click.option("--public-url", help="The URL citizens reach this server at "
                                          "(default http://HOST:PORT); builds redirect URIs."),
    )):
        func = option(func)
    return func


def citizen_settings(given: dict[str, str | None], host: str, port: int
                     ) -> dict[str, str] | None:
    """The citizen pages' settings from `serve`'s options, or None when they are off."""
    issuer = given.get("citizen_issuer")
    if not issuer:
        return None
    missing = [f"--{name.replace('_', '-')}" for name in
               ("citizen_client_id", "citizen_client_secret_file") if not given.get(name)]
    if missing:
        fail_input(InputError([Diagnostic(f"--citizen-issuer needs {' and '.join(missing)}",
                                          "<options>", code="missing")]))
    # checked here, before `serve` opens the registry and the audit log (which may append
    # reconciled entries): a bad option stops the server before it writes anything
    _check_secret_file(str(given["citizen_client_secret_file"]))
    settings = {"issuer": issuer, "client_id": str(given["citizen_client_id"]),
                "client_secret_file": str(given["citizen_client_secret_file"]),
                "claim": given.get("citizen_claim") or "sub",
                "public_url": given.get("public_url") or f"http://{host}:{port}"}
    for option, key in (("citizen_contact", "contact"), ("citizen_design", "design")):
        if given.get(option):
            settings[key] = str(given[option])
    return settings


def _check_secret_file(path: str) -> None:
    """The client secret file is private and readable (as the citizen pages will read it)."""
    from pathlib import Path

    from flowguard.audit.entries import KeyFileError, read_secret

    try:
        read_secret(Path(path), "client secret")
    except KeyFileError as exc:
        fail_input(exc)


@consent.command("forms")
@click.option("--design", "design", required=True, help="The design file (SPEC §8).")
@click.option("--policy", "-p", "policy_path", required=True, envvar="FLOWGUARD_POLICY",
              help="Policy directory or file.")
@click.option("--out", "out_dir", help="Write one HTML form page per consent to this folder.")
def consent_forms_command(design: str, policy_path: str, out_dir: str | None) -> None:
    """The consent plan's forms: each form's id and version (SHA-256 of its exact text)."""
    from pathlib import Path

    from flowguard.forms import consent_forms
    from flowguard.policy import load_policy
    from flowguard.server.citizen.render import environment

    try:
        forms = consent_forms(load_policy(policy_path), design)
    except InputError as exc:
        fail_input(exc)
    folder = Path(out_dir) if out_dir else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for form in forms.values():
        line = f"{form.id}  {form.digest}"
        if folder is not None:
            page = folder / (form.id.replace("/", "--") + ".html")
            page.write_text(environment().get_template("form_page.html").render(form=form),
                            encoding="utf-8")
            line += f"  {page}"
        out.print(line, markup=False)


def form_grant_record(form_id: str, design: str | None, policy_path: str | None,
                      consent_id: str | None, subject: str | None, given_by: str | None,
                      given_at: datetime | None, expires: datetime | None) -> dict[str, Any]:
    """`consent grant --form`: the consent record of a signature on that form."""
    from flowguard.forms import consent_forms, find_form, form_consent
    from flowguard.policy import load_policy

    missing = [name for name, value in (("--design", design), ("--policy", policy_path),
                                        ("--id", consent_id), ("--subject", subject))
               if not value]
    if missing:
        raise InputError([Diagnostic(f"--form needs {', '.join(missing)}", "<options>",
                                     code="missing")])
    assert design is not None and policy_path is not None
    assert consent_id is not None and subject is not None
    form = find_form(consent_forms(load_policy(policy_path), design), form_id, "--form")
    return form_consent(form, consent_id=consent_id, subject=subject, given_by=given_by,
                        given_at=given_at or datetime.now(UTC), expires_at=expires)
