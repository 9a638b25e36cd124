"""Who may call what on the HTTP service (issue 13, item 1; SPEC §10 "Authorization").

A token acts for its organization, always:

- **Checks** (`check` scope): only flows whose sender is an actor of the token's
  organization (enforced where flows are decided).
- **Consent and guardianship writes** (`consent:write`): only the service's controller and
  organizations marked `records_consents: true` in the policy. Any other organization gets
  403 (checked before anything is looked up, so it says nothing about any record) and the
  refusal is audited.
- **Reads** of a consent, its history or a subject's guardianships (`consent:read`): the same
  organizations. The controller sees every record; an organization marked
  `records_consents` sees, withdraws and ends only the records its own tokens recorded; any
  other record answers 404, exactly as a record that does not exist (a 403 would confirm it
  exists).
- **What a recording organization records**: an organization other than the controller
  records only consents whose every recipient selector is confined to it (`organization`
  naming it alone, or `actor`s all of it), under ids in its own id space (`<org>-...` or
  `<org>.`...), which the controller may not use either; so its ids never collide with
  another organization's and a 409 says nothing about records it may not see.
- **The recorder** (`by`) of every registry event is derived from the token:
  `token:<id> organization:<org>`, plus ` on_behalf_of:<actor>` when the request names an
  actor of the token's organization (and, if the token lists `actors`, one of those). A
  client's own `by` is refused (422).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException

from flowguard.audit.entries import access_entry
from flowguard.model import Policy, Selector
from flowguard.server.tokens import Token
from flowguard.store.events import Event

Audit = Callable[[list[dict[str, Any]]], Awaitable[None]]

TOKEN_LABEL = "token:"
ORGANIZATION_LABEL = "organization:"
ON_BEHALF_OF_LABEL = "on_behalf_of:"


def may_record(policy: Policy, organization: str) -> bool:
    """Whether `organization` may record and read consents and guardianships."""
    if policy.service is not None and policy.service.controller == organization:
        return True
    found = policy.organizations.get(organization)
    return found is not None and found.records_consents is True


def is_controller(policy: Policy, organization: str) -> bool:
    return policy.service is not None and policy.service.controller == organization


def recorder(token: Token, on_behalf_of: str | None = None) -> str:
    """The `by` of a registry event recorded with `token`."""
    by = f"{TOKEN_LABEL}{token.id} {ORGANIZATION_LABEL}{token.organization}"
    return by if on_behalf_of is None else f"{by} {ON_BEHALF_OF_LABEL}{on_behalf_of}"


def recorder_organization(by: str) -> str | None:
    """The organization named in a recorder string (None for one written by the CLI or an
    import, which names a person or a system rather than a token)."""
    for part in by.split(" "):
        if part.startswith(ORGANIZATION_LABEL) and by.startswith(TOKEN_LABEL):
            return part[len(ORGANIZATION_LABEL):]
    return None


def confined_to(policy: Policy, organization: str, selector: Selector) -> bool:
    """Whether every actor `selector` can match belongs to `organization`: it names that
    organization alone, or only actors of it (an actor the policy does not know is not)."""
    if selector.organization is not None and set(selector.organization) == {organization}:
        return True
    return selector.actor is not None and all(
        (found := policy.actors.get(a)) is not None and found.organization == organization
        for a in selector.actor)


def id_owner(policy: Policy, record_id: str) -> str | None:
    """The organization whose id space `record_id` is in: the longest organization id it
    starts with, followed by `-` or `.` (None when there is none)."""
    owners = [o for o in policy.organizations
              if record_id.startswith((o + "-", o + "."))]
    return max(owners, key=len) if owners else None


class Gate:
    """The authorization decisions of the consent and guardianship endpoints; each refusal
    is audited (`access` entry) before it is answered."""

    def __init__(self, policy: Callable[[], Policy], audit: Audit) -> None:
        self._policy = policy
        self._audit = audit

    def is_controller(self, token: Token) -> bool:
        return is_controller(self._policy(), token.organization)

    async def refuse(self, token: Token, action: str, reason: str, status: int,
                     detail: str) -> HTTPException:
        await self._audit([access_entry(token=token.id, organization=token.organization,
                                        action=action, reason=reason, at=datetime.now(UTC))])
        return HTTPException(status, detail)

    async def writer(self, token: Token, action: str, on_behalf_of: str | None) -> str:
        """The recorder string for a write by `token`, or an HTTPException (403) when its
        organization may not record, or the actor it names is not one of its own."""
        policy = self._policy()
        if not may_record(policy, token.organization):
            raise await self.refuse(
                token, action, "organization-may-not-record", 403,
                f"organization `{token.organization}` may not record consents or "
                "guardianships: only the service's controller and organizations with "
                "`records_consents: true` in the policy may")
        if on_behalf_of is not None:
            actor = policy.actors.get(on_behalf_of)
            if actor is None or actor.organization != token.organization or (
                    token.actors is not None and on_behalf_of not in token.actors):
                raise await self.refuse(
                    token, action, "on-behalf-of-outside-organization", 403,
                    "`on_behalf_of` must name an actor of organization "
                    f"`{token.organization}` that this token may act for")
        return recorder(token, on_behalf_of)

    async def record_write(self, token: Token, action: str, record_id: str,
                           recipients: Sequence[Selector] = ()) -> None:
        """Refuse a new record (403 or 422, audited) that its recorder's organization may
        not write. An organization other than the controller may record only consents all
        of whose recipients are in its own organization, under ids in its own id space
        (`<organization>-...` or `<organization>.`), so that its ids never collide with
        another organization's and a 409 says nothing about their records; the
        controller may not use the id space of an organization that records consents."""
        policy = self._policy()
        organization = token.organization
        owner = id_owner(policy, record_id)
        if is_controller(policy, organization):
            if owner is not None and owner != organization and may_record(policy, owner):
                raise await self.refuse(
                    token, action, "id-of-another-organization", 422,
                    f"ids starting with `{owner}-` or `{owner}.` are organization "
                    f"`{owner}`'s: choose an id that does not start so")
            return
        if not all(confined_to(policy, organization, s) for s in recipients):
            raise await self.refuse(
                token, action, "recipients-outside-organization", 403,
                f"organization `{organization}` may record only consents whose every "
                f"recipient is within it (`organization: {organization}`, or actors of "
                "it); only the service's controller may record consents for other "
                "organizations")
        if owner != organization:
            raise await self.refuse(
                token, action, "id-outside-organization", 422,
                f"an id recorded by organization `{organization}` must start with "
                f"`{organization}-` or `{organization}.` (e.g. `{organization}-k-17`): "
                "write it so")

    async def reader(self, token: Token, action: str) -> None:
        """403 unless the token's organization may read consents and guardianships."""
        if not may_record(self._policy(), token.organization):
            raise await self.refuse(
                token, action, "organization-may-not-read", 403,
                f"organization `{token.organization}` may not read consents or "
                "guardianships: only the service's controller and organizations with "
                "`records_consents: true` in the policy may")

    def sees(self, token: Token, events: Sequence[Event]) -> bool:
        """Whether `token` may see the record these events (oldest first) belong to: the
        controller sees all; another organization only what its tokens recorded."""
        if is_controller(self._policy(), token.organization):
            return True
        return bool(events) and recorder_organization(events[0].by) == token.organization

    async def record(self, token: Token, action: str, what: str, record_id: str,
                     events: Sequence[Event]) -> None:
        """404 (the same answer as for no such record) unless `token` may see it."""
        if not self.sees(token, events):
            if events:
                await self._audit([access_entry(
                    token=token.id, organization=token.organization, action=action,
                    reason="record-of-another-organization", at=datetime.now(UTC))])
            raise HTTPException(404, f"no {what} `{record_id}`")
