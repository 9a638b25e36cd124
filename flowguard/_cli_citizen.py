"""`flowguard subject link`: link a citizen's login to a subject or a guardian, storing only
the login value's keyed hash (a thin shell over `flowguard.store.logins`)."""

from __future__ import annotations

import sys

import click

from flowguard._cli_common import audit_options, fail_input, out
from flowguard._cli_registry import _store, _who, by_option, registry_option, subject
from flowguard.errors import Diagnostic, InputError


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
    from flowguard.audit.entries import load_pseudonym_key
    from flowguard.store.logins import link_login

    try:
        if pseudonym_key is None:
            raise InputError([Diagnostic(
                "--pseudonym-key is needed: the login is stored as its keyed hash", "<options>",
                code="missing", hint="--pseudonym-key FILE or env FLOWGUARD_PSEUDONYM_KEY")])
        keyed = load_pseudonym_key(pseudonym_key)
        value = sys.stdin.readline().strip() if login == "-" else login.strip()
        if not value:
            raise InputError([Diagnostic("--login: the login value is empty", "<options>",
                                         code="missing")])
    except InputError as exc:
        fail_input(exc)
    with _store(registry_url, None, (audit_url, log_key, pseudonym_key)) as store:
        event = link_login(store, person, keyed.login(value), by=_who(by))
        out.print(f"linked the login (event #{event.seq}); only its keyed hash is stored",
                  markup=False)
