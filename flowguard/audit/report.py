"""Reading the audit log for people: filtered listings (`flowguard audit show`) and the
citizen's right of access (GDPR Art. 15, `flowguard audit access-report`) as plain text and
as a self-contained HTML page.

Everything here works on the log's entries, which name the subject only by its pseudonym:
a caller that knows a citizen's id turns it into the pseudonym with the pseudonym key
(:class:`~flowguard.audit.entries.Pseudonymizer`) and passes that. Nothing rendered here
holds a raw subject id. Names of actors, organizations, data categories, purposes and
sub-processes come from the policy text kept in the log under each entry's digest.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowguard.audit.log import AuditLog
from flowguard.audit.note import _b64encode

__all__ = [
    "KINDS",
    "AccessItem",
    "AccessReport",
    "CategoryLine",
    "ConsentChange",
    "EntryFilter",
    "PolicyNames",
    "access_report",
    "basis_text",
    "filtered_entries",
    "parse_entry_time",
    "reason_text",
    "render_access_html",
    "render_access_text",
]

KINDS = ("decision", "registry", "policy")


def parse_entry_time(value: Any) -> datetime | None:
    """An entry's RFC 3339 time (``time`` or ``at``), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _in_category(category: str, wanted: str) -> bool:
    return category == wanted or category.startswith(wanted + ".")


@dataclass(frozen=True)
class EntryFilter:
    """Which entries to show; every criterion given must hold. ``subject`` is a pseudonym
    (``hmac-sha256:...``); ``category`` matches the category and everything under it."""

    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    recipient: str | None = None
    organization: str | None = None
    category: str | None = None
    kind: str | None = None
    subject: str | None = None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        if self.kind is not None and entry.get("kind") != self.kind:
            return False
        if self.subject is not None and entry.get("subject") != self.subject:
            return False
        if self.outcome is not None and entry.get("outcome") != self.outcome:
            return False
        if self.recipient is not None and entry.get("recipient") != self.recipient:
            return False
        if self.organization is not None and entry.get("organization") != self.organization:
            return False
        if self.category is not None:
            names = [c for c in entry.get("data") or () if isinstance(c, str)]
            names += [str(c["category"]) for c in entry.get("categories") or ()
                      if isinstance(c, dict) and isinstance(c.get("category"), str)]
            if not any(_in_category(name, self.category) for name in names):
                return False
        if self.since is not None or self.until is not None:
            when = parse_entry_time(entry.get("time"))
            if when is None:
                return False
            if self.since is not None and when < self.since:
                return False
            if self.until is not None and when >= self.until:
                return False
        return True


def filtered_entries(log: AuditLog, where: EntryFilter, *, start: int = 0,
                     end: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index, entry)`` for the entries that match, in log order. Entries that are not
    JSON objects are skipped (``flowguard audit verify`` reports them)."""
    needle = where.subject.encode("utf-8") if where.subject is not None else None
    for index, data in log.entries(start, end):
        if needle is not None and needle not in data:
            continue  # most entries are someone else's: skip them unparsed
        try:
            entry = json.loads(data)
        except ValueError:
            continue
        if isinstance(entry, dict) and where.matches(entry):
            yield index, entry


# --------------------------------------------------------------------------- names


class PolicyNames:
    """Human names for ids, from the policy texts kept in the log (by digest)."""

    def __init__(self, log: AuditLog | None) -> None:
        self._log = log
        self._forms: dict[str, dict[str, Any]] = {}

    def _form(self, digest: Any) -> dict[str, Any]:
        if not isinstance(digest, str) or self._log is None:
            return {}
        form = self._forms.get(digest)
        if form is None:
            form = {}
            text = self._log.policy_text(digest)
            if text is not None:
                try:
                    loaded = json.loads(text)
                except ValueError:
                    loaded = None
                if isinstance(loaded, dict):
                    form = loaded
            self._forms[digest] = form
        return form

    def _field(self, digest: Any, section: str, key: Any, *names: str) -> str | None:
        item = self._form(digest).get(section, {})
        entry = item.get(key) if isinstance(item, dict) and isinstance(key, str) else None
        if isinstance(entry, dict):
            for name in names:
                value = entry.get(name)
                if isinstance(value, str) and value:
                    return value
        return None

    def actor(self, digest: Any, actor: Any) -> str | None:
        return self._field(digest, "actors", actor, "name")

    def actor_organization(self, digest: Any, actor: Any) -> str | None:
        return self._field(digest, "actors", actor, "organization")

    def organization(self, digest: Any, organization: Any) -> str | None:
        return self._field(digest, "organizations", organization, "name")

    def category(self, digest: Any, category: Any) -> str | None:
        return self._field(digest, "data_categories", category, "description")

    def special(self, digest: Any, category: Any) -> bool | None:
        """Whether a category is special (GDPR Art. 9) in the policy the entry was decided
        under: it or an ancestor is marked `special: true` (None: the policy is not known)."""
        declared = self._form(digest).get("data_categories")
        if not isinstance(declared, dict) or not isinstance(category, str):
            return None
        parts = category.split(".")
        for end in range(1, len(parts) + 1):
            entry = declared.get(".".join(parts[:end]))
            if isinstance(entry, dict) and entry.get("special") is True:
                return True
        return False

    def purpose(self, digest: Any, purpose: Any) -> str | None:
        return self._field(digest, "purposes", purpose, "description")

    def subprocess(self, digest: Any, subprocess: Any) -> str | None:
        return self._field(digest, "subprocesses", subprocess, "name", "description")

    def service(self, digest: Any) -> str | None:
        service = self._form(digest).get("service")
        if isinstance(service, dict):
            name = service.get("name") or service.get("id")
            return name if isinstance(name, str) else None
        return None


# --------------------------------------------------------------------------- plain language

_BASES = {
    "consent": "your consent (GDPR Art. 6(1)(a))",
    "contract": "a contract with you (GDPR Art. 6(1)(b))",
    "legal-obligation": "a legal obligation (GDPR Art. 6(1)(c))",
    "vital-interests": "the protection of someone's vital interests (GDPR Art. 6(1)(d))",
    "public-task": "a task in the public interest or in the exercise of official authority "
                   "(GDPR Art. 6(1)(e))",
}
_ART9 = {
    "social-protection": "social security and social protection (GDPR Art. 9(2)(b))",
    "vital-interests": "vital interests (GDPR Art. 9(2)(c))",
    "public-interest": "substantial public interest (GDPR Art. 9(2)(g))",
    "health-care": "health or social care (GDPR Art. 9(2)(h))",
    "public-health": "public health (GDPR Art. 9(2)(i))",
    "research": "research or statistics (GDPR Art. 9(2)(j))",
}
_REASONS = {
    "PERMITTED": "permitted",
    "UNKNOWN_ENTITY": "the request named someone or something the rules do not know",
    "FORBIDDEN": "the rules forbid this transfer",
    "NO_PERMIT_RULE": "no rule allows this transfer",
    "CONSENT_WITHDRAWN": "the consent had been withdrawn",
    "CONSENT_EXPIRED": "the consent had expired",
    "CONSENT_NOT_YET_VALID": "the consent was not yet valid",
    "CONSENT_NOT_EXPLICIT": "sensitive data needs explicit consent, and the consent was not "
                            "explicit",
    "GRANTOR_NOT_AUTHORIZED": "the person who gave the consent was not entitled to give it",
    "GRANTOR_AUTHORITY_ENDED": "the person who gave the consent is no longer entitled to",
    "CONSENT_MISSING": "there was no consent covering it",
    "EVALUATION_ERROR": "an error occurred, so the transfer was refused for safety",
}
_EVENTS = {
    "subject.recorded": "your details were recorded",
    "consent.granted": "a consent was recorded",
    "consent.corrected": "a consent was corrected",
    "consent.withdrawn": "a consent was withdrawn",
    "consent.expired": "a consent was marked as expired",
    "guardianship.added": "a guardianship was recorded",
    "guardianship.ended": "a guardianship was ended",
    "login.linked": "a login was linked to you for the citizen pages",
    "login.unlinked": "a login was unlinked from you for the citizen pages",
}


def basis_text(category: Mapping[str, Any], *, special: bool | None = None) -> str:
    """The legal basis of a permitted category, in plain language; the Art. 9 condition only
    for a special category (`special` False leaves it out)."""
    basis = category.get("basis")
    text = _BASES.get(basis, str(basis)) if isinstance(basis, str) else "not recorded"
    if basis == "consent" and isinstance(category.get("consent"), str):
        text += f", consent record {category['consent']}"
    if isinstance(category.get("law"), str):
        text += f", under {category['law']}"
    art9 = category.get("art9")
    if isinstance(art9, str) and special is not False:
        text += f"; sensitive data allowed for {_ART9.get(art9, art9)}"
    if isinstance(category.get("rule"), str):
        text += f" (rule {category['rule']})"
    return text


def reason_text(code: Any) -> str:
    return _REASONS.get(code, str(code)) if isinstance(code, str) else "no reason recorded"


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class CategoryLine:
    category: str
    description: str | None
    decision: str
    reason: str
    basis: str | None
    """Plain-language legal basis (permitted categories only)."""
    rule: str | None
    legal_basis: str | None
    consent: str | None
    law: str | None


@dataclass(frozen=True)
class AccessItem:
    """One decision about the citizen's data: a transfer permitted, or a request refused."""

    index: int
    decision_id: str
    recorded: str
    at: str
    sender: str
    sender_name: str | None
    recipient: str
    recipient_name: str | None
    organization: str
    organization_name: str | None
    purpose: str
    purpose_text: str | None
    subprocess: str
    subprocess_name: str | None
    outcome: str
    reason: str
    categories: tuple[CategoryLine, ...]
    service: str | None


@dataclass(frozen=True)
class ConsentChange:
    index: int
    recorded: str
    event: str
    description: str
    record: str | None
    by: str | None


@dataclass(frozen=True)
class AccessReport:
    """What the log records about one citizen (named only by their pseudonym)."""

    disclosures: tuple[AccessItem, ...]
    refusals: tuple[AccessItem, ...]
    changes: tuple[ConsentChange, ...]
    log_size: int
    origin: str | None
    checkpoint_size: int | None
    checkpoint_root: str | None
    generated_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
        .replace("+00:00", "Z"))

    def signed(self, index: int) -> bool:
        """Whether the latest signed checkpoint covers log entry `index`."""
        return self.checkpoint_size is not None and index < self.checkpoint_size

    @property
    def organizations(self) -> list[str]:
        """The organizations that received the citizen's data (names where known)."""
        seen: dict[str, None] = {}
        for item in self.disclosures:
            seen[item.organization_name or item.organization] = None
        return list(seen)


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _item(index: int, entry: Mapping[str, Any], names: PolicyNames) -> AccessItem:
    digest = entry.get("policy_digest")
    organization = _str(entry.get("organization")) or _str(
        names.actor_organization(digest, entry.get("recipient")))
    lines = []
    for c in entry.get("categories") or ():
        if not isinstance(c, dict):
            continue
        permitted = c.get("decision") == "permit"
        lines.append(CategoryLine(
            category=_str(c.get("category"), "?"),
            description=names.category(digest, c.get("category")),
            decision=_str(c.get("decision"), "?"),
            reason=reason_text(c.get("reason")),
            basis=basis_text(c, special=names.special(digest, c.get("category")))
            if permitted else None,
            rule=c.get("rule") if isinstance(c.get("rule"), str) else None,
            legal_basis=c.get("basis") if isinstance(c.get("basis"), str) else None,
            consent=c.get("consent") if isinstance(c.get("consent"), str) else None,
            law=c.get("law") if isinstance(c.get("law"), str) else None))
    return AccessItem(
        index=index, decision_id=_str(entry.get("decision_id")),
        recorded=_str(entry.get("time")), at=_str(entry.get("at")) or _str(entry.get("time")),
        sender=_str(entry.get("sender")), sender_name=names.actor(digest, entry.get("sender")),
        recipient=_str(entry.get("recipient")),
        recipient_name=names.actor(digest, entry.get("recipient")),
        organization=organization,
        organization_name=names.organization(digest, organization),
        purpose=_str(entry.get("purpose")),
        purpose_text=names.purpose(digest, entry.get("purpose")),
        subprocess=_str(entry.get("subprocess")),
        subprocess_name=names.subprocess(digest, entry.get("subprocess")),
        outcome=_str(entry.get("outcome")), reason=reason_text(entry.get("reason")),
        categories=tuple(lines), service=names.service(digest))


def access_report(log: AuditLog, pseudonym: str) -> AccessReport:
    """Everything the log records about the citizen with this pseudonym."""
    names = PolicyNames(log)
    disclosures: list[AccessItem] = []
    refusals: list[AccessItem] = []
    changes: list[ConsentChange] = []
    size = log.size
    for index, entry in filtered_entries(log, EntryFilter(subject=pseudonym), end=size):
        kind = entry.get("kind")
        if kind == "decision":
            item = _item(index, entry, names)
            (disclosures if item.outcome == "permit" else refusals).append(item)
        elif kind == "registry":
            event = _str(entry.get("event"))
            changes.append(ConsentChange(
                index=index, recorded=_str(entry.get("time")), event=event,
                description=_EVENTS.get(event, event),
                record=entry.get("record") if isinstance(entry.get("record"), str) else None,
                by=entry.get("by") if isinstance(entry.get("by"), str) else None))
    origin = checkpoint_size = checkpoint_root = None
    note = log.latest_checkpoint()
    if note is not None:
        from flowguard.audit.checkpoint import Checkpoint, CheckpointError

        try:
            body = Checkpoint.parse(note[:note.rfind("\n\n") + 1])
            origin, checkpoint_size = body.origin, body.size
            checkpoint_root = _b64encode(body.root_hash)
        except CheckpointError:
            pass
    return AccessReport(tuple(sorted(disclosures, key=_item_order)),
                        tuple(sorted(refusals, key=_item_order)),
                        tuple(sorted(changes, key=_change_order)), size, origin,
                        checkpoint_size, checkpoint_root)


_NEVER = datetime.max.replace(tzinfo=UTC)


def _item_order(item: AccessItem) -> tuple[datetime, int]:
    """Oldest first, by when the flow took place (then by log entry)."""
    return (parse_entry_time(item.at) or parse_entry_time(item.recorded) or _NEVER, item.index)


def _change_order(change: ConsentChange) -> tuple[datetime, int]:
    return (parse_entry_time(change.recorded) or _NEVER, change.index)


def _times(count: int) -> str:
    return "once" if count == 1 else "twice" if count == 2 else f"{count} times"


def _entries(count: int) -> str:
    return "1 entry" if count == 1 else f"{count} entries"


def _by_basis(lines: tuple[CategoryLine, ...]) -> list[tuple[list[CategoryLine], str]]:
    """The categories of a transfer grouped by the basis they were shared on, in order."""
    groups: dict[str, list[CategoryLine]] = {}
    for line in lines:
        groups.setdefault(line.basis or "", []).append(line)
    return [(members, basis) for basis, members in groups.items()]


def _entry_note(report: AccessReport, index: int) -> str:
    return f"log entry {index}" + ("" if report.signed(index) or report.origin is None
                                   else ", not yet signed for")


def _signature_text(report: AccessReport) -> list[str]:
    """What the signed checkpoint proves, in the words of `flowguard audit verify`."""
    if report.origin is None or report.checkpoint_size is None:
        return ["The log has no signed checkpoint yet: no entry above can be proven to be in "
                "a signed log yet."]
    unsigned = report.log_size - report.checkpoint_size
    lines = [f"The log {report.origin} is signed: its latest checkpoint covers the first "
             f"{_entries(report.checkpoint_size)} (numbers 0 to "
             f"{report.checkpoint_size - 1}; root {report.checkpoint_root})."]
    if unsigned > 0:
        lines.append(f"{_entries(unsigned).capitalize()} after it "
                     f"(numbers {report.checkpoint_size} and above) "
                     f"{'is' if unsigned == 1 else 'are'} not signed for yet; those above are "
                     "marked \"not yet signed for\". Ask again after the next checkpoint.")
    lines.append("An entry the checkpoint covers can be proven to be in the signed log: ask "
                 "for a receipt giving its log entry number.")
    return lines


def _when(value: str) -> str:
    parsed = parse_entry_time(value)
    if parsed is None:
        return value or "an unrecorded time"
    return parsed.astimezone(UTC).strftime("%d %B %Y at %H:%M UTC").lstrip("0")


def _named(name: str | None, ident: str) -> str:
    return f"{name} ({ident})" if name and name != ident else ident


def render_access_text(report: AccessReport) -> str:
    """The report as plain text, for a letter or a terminal."""
    out: list[str] = []
    add = out.append
    add("YOUR DATA: WHO RECEIVED IT, AND WHY")
    add("Right of access, GDPR Article 15")
    add("")
    if report.disclosures:
        orgs = ", ".join(report.organizations)
        add(f"Your data was shared {_times(len(report.disclosures))}, with: {orgs}.")
    else:
        add("The audit log records no transfer of your data.")
    add("")
    add("WHO RECEIVED YOUR DATA")
    if not report.disclosures:
        add("  Nobody.")
    for item in report.disclosures:
        add("")
        add(f"  On {_when(item.at)}:")
        add(f"    {_named(item.recipient_name, item.recipient)}, "
            f"at {_named(item.organization_name, item.organization)},")
        add(f"    received data from {_named(item.sender_name, item.sender)}")
        add(f"    for the purpose: {_named(item.purpose_text, item.purpose)}")
        add(f"    during: {_named(item.subprocess_name, item.subprocess)}")
        for members, basis in _by_basis(item.categories):
            what = ", ".join(_named(line.description, line.category) for line in members)
            add(f"    - {what}: on the basis of {basis}")
        add(f"    (decision {item.decision_id}, {_entry_note(report, item.index)})")
    add("")
    add("REQUESTS THAT WERE REFUSED")
    if not report.refusals:
        add("  None.")
    for item in report.refusals:
        add("")
        add(f"  On {_when(item.at)}, {_named(item.recipient_name, item.recipient)} "
            f"at {_named(item.organization_name, item.organization)} asked for data from "
            f"{_named(item.sender_name, item.sender)} for "
            f"{_named(item.purpose_text, item.purpose)}. It was refused: {item.reason}.")
        for line in item.categories:
            verdict = "would have been permitted" if line.decision == "permit" else line.reason
            add(f"    - {_named(line.description, line.category)}: {verdict}")
        add(f"    (decision {item.decision_id}, {_entry_note(report, item.index)})")
    add("")
    add("CHANGES TO YOUR CONSENT RECORDS")
    if not report.changes:
        add("  None recorded in the audit log.")
    for change in report.changes:
        record = f" ({change.record})" if change.record else ""
        by = f" by {change.by}" if change.by else ""
        add(f"  On {_when(change.recorded)}: {change.description}{record}{by} "
            f"({_entry_note(report, change.index)})")
    add("")
    add("ABOUT THIS REPORT")
    add(f"  Made on {_when(report.generated_at)} from an audit log of "
        f"{_entries(report.log_size)}.")
    for sentence in _signature_text(report):
        add(f"  {sentence}")
    add("  Each entry is a decision taken before a transfer: a permitted transfer may have "
        "taken place.")
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1rem;color:#1a1a1a;line-height:1.5}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{font-size:1.3rem;margin-top:2.2rem;
border-bottom:2px solid #ddd;padding-bottom:.2rem}
.sub{color:#555;margin-top:0}table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{text-align:left;vertical-align:top;padding:.45rem .5rem;border-bottom:1px solid #e4e4e4}
th{background:#f4f4f4;font-weight:600}.id{color:#666;font-size:.85em}
.permit{color:#0a6b2d;font-weight:600}.deny{color:#a3161a;font-weight:600}
.summary{background:#f6f8fa;border-left:4px solid #3b6ea5;padding:.6rem 1rem}
footer{margin-top:2.5rem;color:#555;font-size:.9em}
ul.what{margin:0;padding-left:1.1rem}.basis{color:#444;font-size:.92em}
"""


def _h(value: object) -> str:
    return html.escape(str(value), quote=True)


def _hn(name: str | None, ident: str) -> str:
    if name and name != ident:
        return f'{_h(name)} <span class="id">({_h(ident)})</span>'
    return _h(ident)


def render_access_html(report: AccessReport) -> str:
    """The report as one self-contained HTML page: no scripts, no external assets, every
    value escaped."""
    parts: list[str] = []
    add = parts.append
    add('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Your data: who received it, and why</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n")
    add("<h1>Your data: who received it, and why</h1>\n"
        '<p class="sub">Right of access, GDPR Article 15</p>\n')
    if report.disclosures:
        add(f'<p class="summary">Your data was shared {_times(len(report.disclosures))}, '
            f"with: {_h(', '.join(report.organizations))}.</p>\n")
    else:
        add('<p class="summary">The audit log records no transfer of your data.</p>\n')
    add('<section id="received">\n<h2>Who received your data</h2>\n')
    if not report.disclosures:
        add("<p>Nobody.</p>\n")
    else:
        add("<table>\n<thead><tr><th>When</th><th>Who received it</th><th>From</th>"
            "<th>Why (purpose and step)</th><th>What, and on what basis</th></tr></thead>"
            "\n<tbody>\n")
        for item in report.disclosures:
            what = "".join(
                "<li>" + ", ".join(_hn(line.description, line.category) for line in members)
                + f'<br><span class="basis">on the basis of {_h(basis)}</span></li>'
                for members, basis in _by_basis(item.categories))
            add(f"<tr><td>{_h(_when(item.at))}<br><span class=\"id\">"
                f"{_h(_entry_note(report, item.index))}"
                f"</span></td><td>{_hn(item.recipient_name, item.recipient)}<br>"
                f"{_hn(item.organization_name, item.organization)}</td>"
                f"<td>{_hn(item.sender_name, item.sender)}</td>"
                f"<td>{_hn(item.purpose_text, item.purpose)}<br>during "
                f"{_hn(item.subprocess_name, item.subprocess)}</td>"
                f'<td><ul class="what">{what}</ul></td></tr>\n')
        add("</tbody>\n</table>\n")
    add("</section>\n")
    add('<section id="refused">\n<h2>Requests that were refused</h2>\n')
    if not report.refusals:
        add("<p>None.</p>\n")
    else:
        add("<table>\n<thead><tr><th>When</th><th>Who asked</th><th>From</th><th>What</th>"
            "<th>Why it was refused</th></tr></thead>\n<tbody>\n")
        for item in report.refusals:
            what = "<br>".join(
                f"{_hn(line.description, line.category)}: "
                + ('<span class="permit">would have been permitted</span>'
                   if line.decision == "permit" else f'<span class="deny">{_h(line.reason)}'
                                                     "</span>")
                for line in item.categories)
            add(f"<tr><td>{_h(_when(item.at))}<br><span class=\"id\">"
                f"{_h(_entry_note(report, item.index))}"
                f"</span></td><td>{_hn(item.recipient_name, item.recipient)}<br>"
                f"{_hn(item.organization_name, item.organization)}</td>"
                f"<td>{_hn(item.sender_name, item.sender)}</td><td>{what}</td>"
                f"<td>{_h(item.reason)}</td></tr>\n")
        add("</tbody>\n</table>\n")
    add("</section>\n")
    add('<section id="consents">\n<h2>Changes to your consent records</h2>\n')
    if not report.changes:
        add("<p>None recorded in the audit log.</p>\n")
    else:
        add("<table>\n<thead><tr><th>When</th><th>What happened</th><th>Record</th>"
            "<th>Recorded by</th></tr></thead>\n<tbody>\n")
        for change in report.changes:
            add(f"<tr><td>{_h(_when(change.recorded))}</td><td>{_h(change.description)}</td>"
                f"<td>{_h(change.record or '')}</td><td>{_h(change.by or '')}</td></tr>\n")
        add("</tbody>\n</table>\n")
    add("</section>\n")
    add("<footer>\n<h2>About this report</h2>\n")
    add(f"<p>Made on {_h(_when(report.generated_at))} from an audit log of "
        f"{_h(_entries(report.log_size))}.")
    for sentence in _signature_text(report):
        add(f" {_h(sentence)}")
    add(" Each entry is a decision taken before a transfer: a permitted transfer may have "
        "taken place.</p>\n</footer>\n</main>\n</body>\n</html>\n")
    return "".join(parts)
