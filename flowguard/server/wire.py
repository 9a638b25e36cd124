"""The bodies of the HTTP service's registry writes (issue 13): who acts is the token, so a
body never says `by`; it may name the actor of the token's organization on whose behalf the
change is made (`on_behalf_of`)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from flowguard.model import Consent, Evidence, Guardianship, Id, Model, TimeString

BY_REFUSED = ("`by` is not accepted: the recorder of a change is the token that sends it; "
              "to name the person acting, send `on_behalf_of` with an actor id of your "
              "organization")

_ON_BEHALF_OF = Field(default=None, description="The actor of the token's organization on "
                      "whose behalf the change is made (recorded with the token's id).")


class _NoBy(Model):
    @model_validator(mode="before")
    @classmethod
    def _refuse_by(cls, data: Any) -> Any:
        if isinstance(data, dict) and "by" in data:
            raise ValueError(BY_REFUSED)
        return data


class ChangeRequest(_NoBy):
    """A withdrawal or an ending: when, on what evidence, on whose behalf."""

    on_behalf_of: Id | None = _ON_BEHALF_OF
    at: TimeString | None = None
    evidence: Evidence | None = None


class GrantRequest(_NoBy):
    on_behalf_of: Id | None = _ON_BEHALF_OF
    consent: Consent


class GuardianshipRequest(_NoBy):
    on_behalf_of: Id | None = _ON_BEHALF_OF
    guardianship: Guardianship


class SingleRequestId:
    """ASGI middleware: a request with more than one `X-Request-Id` header is refused with
    400 (which one would the replay guard and the log keep?)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and sum(
                1 for name, _ in scope.get("headers", ()) if name == b"x-request-id") > 1:
            body = json.dumps({"detail": "send one X-Request-Id header, not several"}).encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
