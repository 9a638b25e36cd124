"""What every CLI command shares: consoles, exit codes, and reporting bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console

from flowguard._plain import counted
from flowguard.errors import Diagnostic, FlowguardError, InputError

if TYPE_CHECKING:
    from flowguard.audit.trail import AuditTrail
    from flowguard.store import RegistryStore

_F = TypeVar("_F", bound=Callable[..., Any])

EXIT_OK, EXIT_DENY, EXIT_INPUT = 0, 1, 2

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def fail_input(error: InputError) -> NoReturn:
    from flowguard._terminal import safe

    for diagnostic in error.diagnostics:
        err.print(safe(diagnostic.render()), markup=False)
    sys.exit(EXIT_INPUT)


def audit_options(func: _F) -> _F:
    """`--audit URL --log-key FILE --pseudonym-key FILE` (env FLOWGUARD_AUDIT,
    FLOWGUARD_LOG_KEY, FLOWGUARD_PSEUDONYM_KEY)."""
    func = click.option("--pseudonym-key", "pseudonym_key", envvar="FLOWGUARD_PSEUDONYM_KEY",
                        help="Key that turns subject ids into pseudonyms in the audit log "
                             "(env FLOWGUARD_PSEUDONYM_KEY).")(func)
    func = click.option("--log-key", "log_key", envvar="FLOWGUARD_LOG_KEY",
                        help="The audit log's note signing key, to sign checkpoints "
                             "(env FLOWGUARD_LOG_KEY).")(func)
    return click.option("--audit", "audit_url", envvar="FLOWGUARD_AUDIT",
                        help="Append to this audit log (sqlite:///... or postgresql://...; "
                             "env FLOWGUARD_AUDIT).")(func)


def open_trail(audit_url: str | None, log_key: str | None,
               pseudonym_key: str | None) -> AuditTrail | None:
    """The audit trail the options name, or None; bad options exit 2."""
    if audit_url is None:
        return None
    from flowguard.audit.trail import open_audit

    try:
        if pseudonym_key is None:
            raise InputError([Diagnostic("--audit needs --pseudonym-key: subjects are logged "
                                         "only as pseudonyms", "<options>", code="missing")])
        trail = open_audit(audit_url, pseudonym_key=pseudonym_key, log_key=log_key)
    except InputError as exc:
        fail_input(exc)
    for notice in trail.notices:
        err.print(f"{pseudonym_key}: note: {notice}", markup=False)
    return trail


def close_trail(trail: AuditTrail | None) -> None:
    """Close the trail, signing a checkpoint over what this process appended; a failure
    to sign is reported (the entries stand), never a traceback."""
    if trail is None:
        return
    trail.close()
    if trail.sign_error is not None:  # the log is closed; its entries are durable
        from flowguard.store._db import redact_url

        err.print(f"{redact_url(trail.log.url)}: warning: the entries were appended but no "
                  f"checkpoint could be signed over them ({trail.sign_error}) (sign one "
                  "with `flowguard audit checkpoint --sign --log-key FILE`)", markup=False)


def report_pending(error: FlowguardError) -> NoReturn:
    """A registry change that stands without its audit entry yet (`AuditPendingError`;
    any other error is raised again): say what was changed, and how the entry gets
    written; exit 1."""
    from flowguard.audit.outbox import AuditPendingError

    if not isinstance(error, AuditPendingError):
        raise error
    err.print(f"{error.registry_url}: warning: {error.message}", markup=False)
    sys.exit(EXIT_DENY)


def report_reconciled(store: RegistryStore) -> None:
    """Say so when opening the store appended audit entries the log lacked."""
    if store.reconciled:
        from flowguard.store._db import redact_url

        count = len(store.reconciled)
        err.print(f"{redact_url(store.audit.log.url if store.audit else '')}: note: appended "
                  f"the audit entries of {counted(count, 'registry event')} "
                  f"the log lacked (#{store.reconciled[0]} to #{store.reconciled[-1]})",
                  markup=False)
