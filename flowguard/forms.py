"""Consent forms with a version (issue 17, item 5): the consent plan of a design (SPEC §8)
as one form per consent, each with a stable id (its recipient organization and purpose) and
the SHA-256 of its exact text. A consent granted on a form records the form's id and digest
as its evidence, so the citizen can later be shown the very text they agreed to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flowguard.design import analyse_design, load_design
from flowguard.errors import Diagnostic, InputError
from flowguard.model import Evidence, Policy
from flowguard.reports._common import consent_form_text, plan_items

EVIDENCE_METHOD = "consent-form"
DIGEST_PREFIX = "sha256:"


@dataclass(frozen=True)
class ConsentForm:
    id: str
    """Stable across versions: `<organization>/<purpose>`."""
    title: str
    paragraphs: tuple[str, ...]
    record: dict[str, Any]
    """The consent record's recipients, data, purposes, sub-processes and explicitness."""

    @property
    def text(self) -> str:
        """The exact text a citizen reads and agrees to (what the digest covers)."""
        return "\n\n".join(self.paragraphs) + "\n"

    @property
    def digest(self) -> str:
        return DIGEST_PREFIX + hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def evidence(self) -> Evidence:
        return Evidence(method=EVIDENCE_METHOD, reference=self.id, note=self.digest)

    def agreed(self, evidence: Evidence | None) -> bool:
        """Whether a consent with `evidence` was given on this very version of the form."""
        return (evidence is not None and evidence.method == EVIDENCE_METHOD
                and evidence.reference == self.id and evidence.note == self.digest)


def consent_forms(policy: Policy, design: str | Path) -> dict[str, ConsentForm]:
    """The forms of a design's consent plan, by form id."""
    report = analyse_design(policy, load_design(design, policy))
    forms: dict[str, ConsentForm] = {}
    for item in plan_items(report):
        paragraphs = consent_form_text(item, policy)
        form_id = f"{item['organization']}/{item['purpose']}"
        forms[form_id] = ConsentForm(form_id, paragraphs[0], tuple(paragraphs),
                                     dict(item["record"]))
    return forms


def form_consent(form: ConsentForm, *, consent_id: str, subject: str,
                 given_by: str | None = None, given_at: datetime,
                 expires_at: datetime | None = None) -> dict[str, Any]:
    """The consent record a citizen's signature on `form` makes (evidence: the form's id and
    digest)."""
    record: dict[str, Any] = {"id": consent_id, "subject": subject,
                              "given_by": given_by or subject, "given_at": given_at,
                              **form.record, "evidence": form.evidence}
    if not record.get("subprocesses"):
        record.pop("subprocesses", None)
    if expires_at is not None:
        record["expires_at"] = expires_at
    return record


def find_form(forms: dict[str, ConsentForm], form_id: str, place: str) -> ConsentForm:
    """The form `form_id`, or an `InputError` listing the ones that exist."""
    found = forms.get(form_id)
    if found is None:
        raise InputError([Diagnostic(f"no consent form `{form_id}` in the design's consent "
                                     "plan", place, code="unknown-reference",
                                     hint="one of: " + ", ".join(sorted(forms)))])
    return found
