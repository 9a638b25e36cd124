"""The citizen pages under `/me/` (issue 17): sign in with OpenID Connect, see one's consents
with their lawful status, withdraw one, and see who received one's data.

Security: sessions live in signed cookies (`HttpOnly`, `Secure`, `SameSite=Lax`) that carry
the login's keyed hash and a random session id only, never a person's id; signing out records the
session id as ended in the database the workers share, so a copied cookie stops working
in every worker at once; every form carries a CSRF token bound to the
session; a page shows only records of the signed-in person (and, for a guardian, the
consents they gave within a guardianship in term and scope), so a URL or form field naming
another person's record gets the same "not found" as an unknown one; sign-in and withdrawal
are rate limited per client address, counted over all workers in the shared database;
the Content-Security-Policy allows no outside source and no
script; templates autoescape. The HTTP routes `POST /v1/logins` and `POST /v1/logins/unlink`
link and unlink a login for an organization, under the rules of flowguard.server.authz
(bearer token with `consent:write`, of the controller or a `records_consents` organization;
the recorder is the token).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import Field

from flowguard.audit.entries import Pseudonymizer, load_pseudonym_key, read_secret
from flowguard.consents import CONSENT_PROBLEM_CODES
from flowguard.errors import Diagnostic, InputError, RegistryError
from flowguard.forms import ConsentForm
from flowguard.i18n import LANGUAGES, negotiate
from flowguard.model import Consent, Evidence, Id, Model, RecordId, Selector
from flowguard.server.authz import Gate
from flowguard.server.citizen.oidc import OidcClient, PendingSignIn, SignInError
from flowguard.server.citizen.render import REASONS, render
from flowguard.server.tokens import Token
from flowguard.store import RegistryStore
from flowguard.store.logins import KIND as LINKED
from flowguard.store.logins import link_login, person_of_login, unlink_login, wards_of

if TYPE_CHECKING:
    from flowguard.server.app import Service
    from flowguard.server.shared import SharedState

log = logging.getLogger("flowguard.citizen")
_CODE_OF = {name: code for code, name in CONSENT_PROBLEM_CODES.items()}
"""A consent status's reason code, for the reason's words in the citizen's language."""

BASE = "/me"
SESSION_COOKIE = "fg_session"
PENDING_COOKIE = "fg_signin"
LANG_COOKIE = "fg_lang"
SESSION_SECONDS = 30 * 60
PENDING_SECONDS = 10 * 60
EVIDENCE_METHOD = "citizen-self-service"
LANGUAGE_NAMES = (("en", "English"), ("da", "Dansk"), ("fi", "Suomi"))
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
           "X-Frame-Options": "DENY"}


@dataclass(frozen=True)
class CitizenOptions:
    issuer: str
    client_id: str
    client_secret_file: str
    public_url: str
    claim: str = "sub"
    contact: str | None = None
    design: str | None = None  # its consent plan's forms: shown to who signed one
    signins_per_minute: int = 30
    withdrawals_per_minute: int = 30


class UnlinkRequest(Model):
    """End the link of a login: the value is hashed at once and never stored. The recorder
    is the token (flowguard.server.authz), plus `on_behalf_of` an actor of its organization."""

    login: Annotated[str, Field(min_length=1, max_length=200)]
    on_behalf_of: Id | None = None


class LinkRequest(UnlinkRequest):
    """Link a login to a person: the value is hashed at once and never stored."""

    person: Id


_BEARER = HTTPBearer(auto_error=False)
NOT_LINKED = ("the login was not linked: check the person id and the login value; the "
              "service's controller can say why")
"""The one answer to an organization other than the controller whose link is refused."""


class FormGrantRequest(Model):
    """A consent given by signing a form of the consent plan (`GET` the form ids with
    `flowguard consent forms`). The recorder is the token (flowguard.server.authz)."""

    on_behalf_of: Id | None = None
    form: Annotated[str, Field(min_length=1, max_length=300)]
    id: RecordId
    subject: Id
    given_by: Id | None = None
    given_at: datetime
    expires_at: datetime | None = None


class _Limiter:
    """At most `limit` events a minute per client address, counted in the database every
    worker and server shares (flowguard.server.shared): N workers do not allow N times the
    limit. The address is stored only as a keyed digest."""

    def __init__(self, shared: SharedState, key: str, name: str, limit: int) -> None:
        self.shared = shared
        self.key = key.encode()
        self.name = name
        self.limit = limit

    async def allow(self, address: str) -> bool:
        digest = hmac.new(self.key, f"rate\0{self.name}\0{address}".encode(),
                          hashlib.sha256).hexdigest()
        return await asyncio.to_thread(self.shared.allow, digest, self.limit)


@dataclass
class Visible:
    """A consent the signed-in person may see: their own, or one they gave as guardian."""

    consent: Consent
    ward: bool


def _options_error(message: str, hint: str | None = None) -> InputError:
    return InputError([Diagnostic(message, "<options>", code="missing", hint=hint)])


def mount_citizen(app: FastAPI, state: Service, settings: dict[str, Any]) -> None:
    """Add the citizen pages to `app` (called once by `create_app`)."""
    options = CitizenOptions(**settings)
    if not state.config.pseudonym_key:
        raise _options_error("the citizen pages need --pseudonym-key: logins are linked by "
                             "their keyed hash")
    if not isinstance(state.registry, RegistryStore):
        raise _options_error("the citizen pages need a database registry",
                             "--registry sqlite:///... or postgresql://...")
    pseudonym = (state.trail.pseudonym if state.trail is not None
                 else load_pseudonym_key(state.config.pseudonym_key))
    secret = read_secret(Path(options.client_secret_file), "client secret").strip()
    public = options.public_url.rstrip("/")
    if urlsplit(public).scheme not in ("http", "https"):
        raise _options_error("--public-url must be an http(s) URL")
    forms: dict[str, ConsentForm] = {}
    if options.design:
        from flowguard.forms import consent_forms

        forms = consent_forms(state.engine.policy, options.design)
    app.include_router(citizen_router(state, options, pseudonym, secret, public, forms))


def citizen_router(state: Service, options: CitizenOptions, pseudonym: Pseudonymizer,
                   client_secret: str, public: str,
                   forms: dict[str, ConsentForm] | None = None) -> APIRouter:
    forms = forms or {}
    router = APIRouter(include_in_schema=False)
    oidc = OidcClient(options.issuer, options.client_id, client_secret,
                      public + BASE + "/callback", options.claim)
    # the session key derives from the pseudonym key: every worker process agrees on it
    session_key = pseudonym.login("\x00flowguard citizen session key")
    gate = Gate(lambda: state.engine.policy, state.audit)  # who may (un)link: authz.py
    sessions = URLSafeTimedSerializer(session_key, salt="flowguard-citizen-session")
    pendings = URLSafeTimedSerializer(session_key, salt="flowguard-citizen-signin")
    signin_limit = _Limiter(state.shared, session_key, "signin", options.signins_per_minute)
    withdraw_limit = _Limiter(state.shared, session_key, "withdraw",
                              options.withdrawals_per_minute)
    static = resources.files("flowguard") / "templates" / "citizen" / "static"
    css = (static / "citizen.css").read_text(encoding="utf-8")
    icon = (static / "favicon.svg").read_text(encoding="utf-8")

    # ------------------------------------------------------------------ helpers

    def store() -> RegistryStore:
        registry = state.registry
        assert isinstance(registry, RegistryStore)
        return registry

    def language(request: Request) -> str:
        chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
        if chosen in LANGUAGES:
            return chosen
        return negotiate(request.headers.get("accept-language"))

    def service_name() -> str:
        service = state.engine.policy.service
        return (service.name or service.id) if service is not None else "flowguard"

    def cookie(response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path=BASE, secure=True,
                            httponly=True, samesite="lax")

    def page(request: Request, template: str, status: int = 200, csrf: str | None = None,
             **context: Any) -> HTMLResponse:
        lang = language(request)
        body = render(template, lang, base=BASE, languages=LANGUAGE_NAMES,
                      service_name=service_name(), csrf=csrf, **context)
        response = HTMLResponse(body, status_code=status, headers=HEADERS)
        if request.query_params.get("lang") in LANGUAGES:
            cookie(response, LANG_COOKIE, lang, 365 * 24 * 3600)
        return response

    def message(request: Request, status: int, heading: str, *lines: str,
                csrf: str | None = None) -> HTMLResponse:
        from flowguard.i18n import translations

        gettext = translations(language(request), "citizen").gettext
        return page(request, "message.html", status, csrf=csrf, heading=gettext(heading),
                    lines=[gettext(line) for line in lines])

    def redirect(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303, headers=HEADERS)

    def client(request: Request) -> str:
        return request.client.host if request.client is not None else "?"

    @dataclass
    class Session:
        login: str
        sid: str

        @property
        def csrf(self) -> str:
            return hmac.new(session_key.encode(), b"csrf\x00" + self.sid.encode(),
                            hashlib.sha256).hexdigest()

    def session_of(request: Request) -> Session | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data = sessions.loads(raw, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("l"), str) \
                or not isinstance(data.get("s"), str):
            return None
        return Session(data["l"], data["s"])

    async def live_session(request: Request) -> Session | None:
        """The request's session, unless it was signed out (in any worker: the ended
        sessions are kept in the shared database, flowguard.server.shared)."""
        session = session_of(request)
        if session is None or await asyncio.to_thread(state.shared.session_ended,
                                                      session.sid):
            return None
        return session

    def csrf_ok(session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(session.csrf, token)

    async def person_of(session: Session) -> str | None:
        return await asyncio.to_thread(person_of_login, store(), session.login)

    def visible(person: str, now: datetime) -> list[Visible]:
        """The consents `person` may see: about them, and those they gave as a guardian
        within a guardianship in term now and within its scope."""
        registry = store()
        found = [Visible(k, False) for k in registry.records_of(person).consents]
        policy = state.engine.policy
        for ward in wards_of(registry, person):
            if ward == person:
                continue
            records = registry.records_of(ward)
            in_force = state.engine.guardianships_in_force(ward, now)
            terms = [g for g in records.guardianships
                     if g.guardian == person and g.id in in_force]
            for k in records.consents:
                if k.given_by != person:
                    continue
                if any(g.scope is None or all(
                        set(policy.category_tree.ancestors_or_self(d)) & set(g.scope)
                        for d in k.data) for g in terms):
                    found.append(Visible(k, True))
        return found

    def describe(item: Visible, now: datetime, gettext: Any) -> dict[str, Any]:
        k = item.consent
        policy = state.engine.policy
        organizations: dict[str, None] = {}
        for selector in k.recipients:
            actors = state.engine.actors_matching(selector) or frozenset(policy.actors)
            for actor in sorted(actors):
                org = policy.actors[actor].organization
                known = policy.organizations.get(org)
                organizations[(known.name if known and known.name else org)] = None
        data = [(policy.data_categories[d].description or d)
                if d in policy.data_categories else d for d in k.data]
        purposes = [(policy.purposes[p].description or p) if p in policy.purposes else p
                    for p in k.purposes]
        lawful = state.engine.consent_status(k, now)  # SPEC §5, as a check reads it
        status: str = lawful.status
        notes = [gettext(REASONS[str(_CODE_OF[p.status].value)]) for p in lawful.problems
                 if p.status in _CODE_OF and str(_CODE_OF[p.status].value) in REASONS
                 and p.status not in ("withdrawn", "expired", "not-yet-valid")]
        if status not in ("active", "withdrawn", "expired", "not-yet-valid"):
            status = "not-counted"  # given, but the grantor's authority or form fails
        status_text = {"active": gettext("in force"), "withdrawn": gettext("withdrawn"),
                       "expired": gettext("expired"),
                       "not-yet-valid": gettext("not yet in force"),
                       "not-counted": gettext("recorded, but it does not count")}[status]
        until = k.withdrawn_at if status == "withdrawn" else k.expires_at
        form = forms.get(k.evidence.reference or "") if k.evidence is not None else None
        return {"consent": k, "anchor": hashlib.sha256(k.id.encode()).hexdigest()[:12],
                "form": form is not None and form.agreed(k.evidence),
                "recipients": ", ".join(organizations), "data": data, "purposes": purposes,
                "status": status, "status_text": status_text, "notes": notes, "until": until,
                "by_subject": k.given_by == k.subject,
                "withdrawable": status in ("active", "not-yet-valid", "not-counted")}

    async def signed_in(request: Request
                        ) -> tuple[Session, str] | Response:
        session = await live_session(request)
        if session is None:
            return page(request, "signin.html")
        person = await person_of(session)
        if person is None:
            contact = options.contact or service_name()
            return page(request, "unlinked.html", csrf=session.csrf, contact=contact)
        return session, person

    async def find(person: str, consent_id: str) -> Visible | None:
        now = datetime.now(UTC)
        items = await asyncio.to_thread(visible, person, now)
        return next((v for v in items if v.consent.id == consent_id), None)

    def authorize(credentials: HTTPAuthorizationCredentials | None, request_id: str) -> Token:
        """The API's rules for a write: a known token with `consent:write`, a new request id."""
        token = None if credentials is None else state.tokens.authenticate(
            credentials.credentials)
        if token is None:
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        if "consent:write" not in token.scopes:
            raise HTTPException(403, "this token lacks the `consent:write` scope")
        if not state.shared.claim(token.id, request_id):
            raise HTTPException(409, "this X-Request-Id was used before: replay refused")
        return token

    # ------------------------------------------------------------------ sign-in

    @router.get(BASE + "/static/citizen.css")
    async def stylesheet() -> Response:
        return Response(css, media_type="text/css",
                        headers={**HEADERS, "Cache-Control": "max-age=3600"})

    @router.get(BASE + "/static/favicon.svg")
    async def favicon() -> Response:
        return Response(icon, media_type="image/svg+xml",
                        headers={**HEADERS, "Cache-Control": "max-age=3600"})

    @router.get(BASE + "/login")
    async def login(request: Request) -> Response:
        if not await signin_limit.allow(client(request)):
            return message(request, 429, "Too many attempts",
                           "Please wait a minute and try again.")
        try:
            url, pending = await oidc.start()
        except SignInError as exc:
            log.warning("citizen sign-in could not start: %s", exc)
            return message(request, 502, "Sign-in is not available",
                           "Please try again later.")
        response = redirect(url)
        cookie(response, PENDING_COOKIE, pendings.dumps(
            {"s": pending.state, "n": pending.nonce, "v": pending.verifier}), PENDING_SECONDS)
        return response

    @router.get(BASE + "/callback")
    async def callback(request: Request, code: str | None = None, state: str | None = None
                       ) -> Response:
        raw = request.cookies.get(PENDING_COOKIE)
        try:
            data = pendings.loads(raw or "", max_age=PENDING_SECONDS)
            pending = PendingSignIn(data["s"], data["n"], data["v"])
        except (BadSignature, KeyError, TypeError):
            return message(request, 400, "Sign-in failed",
                           "The sign-in took too long or was started elsewhere. "
                           "Please sign in again.")
        if code is None or state is None or not hmac.compare_digest(state, pending.state):
            return message(request, 400, "Sign-in failed", "Please sign in again.")
        try:
            value = await oidc.finish(code, pending)
        except SignInError as exc:
            log.warning("citizen sign-in failed: %s", exc)
            return message(request, 400, "Sign-in failed", "Please sign in again.")
        response = redirect(BASE + "/")
        cookie(response, SESSION_COOKIE, sessions.dumps(
            {"l": pseudonym.login(value), "s": secrets.token_urlsafe(24)}), SESSION_SECONDS)
        response.delete_cookie(PENDING_COOKIE, path=BASE, secure=True, httponly=True,
                               samesite="lax")
        return response

    @router.post(BASE + "/logout")
    async def logout(request: Request) -> Response:
        csrf = await form_field(request, "csrf")
        session = session_of(request)
        if session is not None and not csrf_ok(session, csrf):
            return message(request, 403, "The form has expired",
                           "Please go back, reload the page and try again.")
        if session is not None:  # a copy of the cookie is refused from now on, everywhere
            await asyncio.to_thread(state.shared.end_session, session.sid,
                                    time.time() + SESSION_SECONDS)
        response = message(request, 200, "You are signed out",
                           "Close the browser window if you share this device.")
        response.delete_cookie(SESSION_COOKIE, path=BASE, secure=True, httponly=True,
                               samesite="lax")
        return response

    # ------------------------------------------------------------------ pages

    @router.get(BASE)
    async def me_bare() -> Response:
        return redirect(BASE + "/")

    @router.get(BASE + "/")
    async def me(request: Request, done: str | None = None) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        session, person = who
        from flowguard.i18n import translations

        gettext = translations(language(request), "citizen").gettext
        now = datetime.now(UTC)
        items = await asyncio.to_thread(visible, person, now)
        groups = []
        for ward in (False, True):
            chosen = sorted((v for v in items if v.ward == ward),
                            key=lambda v: (v.consent.given_at, v.consent.id), reverse=True)
            if chosen:
                groups.append({"ward": ward,
                               "consents": [describe(v, now, gettext)
                                            for v in chosen]})
        notice = gettext("Your consent is withdrawn.") if done == "withdrawn" else None
        return page(request, "consents.html", csrf=session.csrf, groups=groups, notice=notice)

    @router.get(BASE + "/withdraw/{consent_id}")
    async def confirm(request: Request, consent_id: str) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        session, person = who
        found = await find(person, consent_id)
        if found is None:
            return message(request, 404, "Not found", "There is no such consent of yours.",
                           csrf=session.csrf)
        from flowguard.i18n import translations

        gettext = translations(language(request), "citizen").gettext
        item = describe(found, datetime.now(UTC), gettext)
        if not item["withdrawable"]:
            return message(request, 409, "Already ended",
                           "This consent is already withdrawn or has expired.",
                           csrf=session.csrf)
        return page(request, "confirm.html", csrf=session.csrf, item=item)

    @router.post(BASE + "/withdraw/{consent_id}")
    async def withdraw(request: Request, consent_id: str) -> Response:
        csrf = await form_field(request, "csrf")
        session = await live_session(request)
        if session is None or not csrf_ok(session, csrf):
            return message(request, 403, "The form has expired",
                           "Please go back, reload the page and try again.")
        if not await withdraw_limit.allow(client(request)):
            return message(request, 429, "Too many attempts",
                           "Please wait a minute and try again.", csrf=session.csrf)
        person = await person_of(session)
        found = None if person is None else await find(person, consent_id)
        if person is None or found is None:
            return message(request, 404, "Not found", "There is no such consent of yours.",
                           csrf=session.csrf)
        # the subject is named by its id in the registry (the audit log pseudonymises it);
        # a guardian by their pseudonym, so no raw person id reaches the log
        by = person if found.consent.subject == person else pseudonym(person)
        try:
            await asyncio.to_thread(store().withdraw, consent_id, by=by,
                                    evidence=Evidence(method=EVIDENCE_METHOD))
        except RegistryError as exc:
            if any(d.code == "duplicate" for d in exc.diagnostics):
                return message(request, 409, "Already ended",
                               "This consent is already withdrawn or has expired.",
                               csrf=session.csrf)
            raise
        return redirect(BASE + "/?done=withdrawn")

    @router.get(BASE + "/form/{consent_id}")
    async def agreed_text(request: Request, consent_id: str) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        session, person = who
        found = await find(person, consent_id)
        evidence = found.consent.evidence if found is not None else None
        form = forms.get(evidence.reference or "") if evidence is not None else None
        if found is None or form is None or not form.agreed(evidence):
            return message(request, 404, "Not found", "There is no such consent of yours.",
                           csrf=session.csrf)
        return page(request, "form.html", csrf=session.csrf, form=form)

    @router.post("/v1/consents/form", status_code=201, tags=["consents"],
                 include_in_schema=True)
    async def grant_on_form(body: FormGrantRequest,
                            credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                   Depends(_BEARER)],
                            x_request_id: Annotated[str, Header(
                                pattern=r"^[A-Za-z0-9._:-]{8,128}$")]) -> dict[str, Any]:
        """Record a consent given by signing a form of the design's consent plan: the
        form's id and the SHA-256 of its exact text are its evidence."""
        token = authorize(credentials, x_request_id)
        by = await gate.writer(token, "consent.grant", body.on_behalf_of)
        from flowguard.forms import find_form, form_consent

        form = find_form(forms, body.form, "$.form")
        await gate.record_write(token, "consent.grant", body.id, [
            Selector.model_validate(r) for r in form.record.get("recipients", ())])
        record = form_consent(form, consent_id=body.id, subject=body.subject,
                              given_by=body.given_by, given_at=body.given_at,
                              expires_at=body.expires_at)
        event = await asyncio.to_thread(store().grant, record, by=by)
        return {"seq": event.seq, "kind": event.kind, "record": event.record,
                "recorded_at": event.recorded_at, "form": form.id, "digest": form.digest}

    @router.get(BASE + "/received")
    async def received(request: Request) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        session, person = who
        if state.trail is None:
            return message(request, 404, "Who received my data",
                           "This service keeps no log of who received data.",
                           csrf=session.csrf)
        from flowguard.audit.report import access_report, parse_entry_time

        report = await asyncio.to_thread(access_report, state.trail.log, pseudonym(person))
        covered = report.checkpoint_size or 0
        entries = sorted((*report.disclosures, *report.refusals), key=lambda i: i.index)
        items = [{"index": i.index, "when": parse_entry_time(i.at),
                  "organization": i.organization_name or i.organization,
                  "permitted": i.outcome == "permit",
                  "data": [c.description or c.category for c in i.categories
                           if (c.decision == "permit") == (i.outcome == "permit")],
                  "purpose": i.purpose_text or i.purpose, "covered": i.index < covered}
                 for i in entries]
        return page(request, "received.html", csrf=session.csrf, items=items,
                    checkpoint_size=covered)

    @router.get(BASE + "/received/proof/{index}")
    async def proof(request: Request, index: int) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        session, person = who
        trail = state.trail
        if trail is None or not 0 <= index < trail.log.size:
            return message(request, 404, "Not found", "There is no such entry about you.",
                           csrf=session.csrf)
        entry = await asyncio.to_thread(trail.log.entry, index)
        if _entry_subject(entry) != pseudonym(person):
            return message(request, 404, "Not found", "There is no such entry about you.",
                           csrf=session.csrf)
        from flowguard.server.app import _receipt

        try:
            receipt = await asyncio.to_thread(_receipt, trail, index)
        except HTTPException:
            return message(request, 404, "Not found",
                           "Not yet covered by a signed checkpoint.", csrf=session.csrf)
        return PlainTextResponse(receipt, headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="entry-{index}.proof"'})

    # ------------------------------------------------------------------ HTTP linking

    @router.post("/v1/logins", status_code=201, tags=["consents"], include_in_schema=True)
    async def link(body: LinkRequest,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
                   x_request_id: Annotated[str, Header(pattern=r"^[A-Za-z0-9._:-]{8,128}$")]
                   ) -> dict[str, Any]:
        """Link a citizen's login to a subject or a guardian: only the login value's keyed
        hash is stored (the value is never logged or echoed)."""
        token = authorize(credentials, x_request_id)
        by = await gate.writer(token, "login.link", body.on_behalf_of)
        try:
            event = await asyncio.to_thread(link_login, store(), body.person,
                                            pseudonym.login(body.login.strip()), by=by)
        except RegistryError as exc:
            if gate.is_controller(token):
                raise
            # one answer whatever the reason, so that no one but the controller can learn
            # which persons are recorded or which logins (national ids) use the service
            reason = next((d.code for d in exc.diagnostics), "refused")
            raise await gate.refuse(token, "login.link", f"login-not-linked:{reason}", 422,
                                    NOT_LINKED) from None
        return {"seq": event.seq, "kind": event.kind, "recorded_at": event.recorded_at}

    @router.post("/v1/logins/unlink", tags=["consents"], include_in_schema=True)
    async def unlink(body: UnlinkRequest,
                     credentials: Annotated[HTTPAuthorizationCredentials | None,
                                            Depends(_BEARER)],
                     x_request_id: Annotated[str, Header(pattern=r"^[A-Za-z0-9._:-]{8,128}$")]
                     ) -> dict[str, Any]:
        """End the link of a citizen's login: that login then sees the "not linked" page.
        The controller may unlink any login; a `records_consents` organization the logins its
        tokens linked (any other answers 404, as a login that is not linked)."""
        token = authorize(credentials, x_request_id)
        by = await gate.writer(token, "login.unlink", body.on_behalf_of)
        login_hash = pseudonym.login(body.login.strip())
        history = await asyncio.to_thread(store().history, login_hash)
        linked = await asyncio.to_thread(person_of_login, store(), login_hash)
        current = [e for e in history if e.kind == LINKED][-1:] if linked else []
        await gate.record(token, "login.unlink", "login linked with", "this value", current)
        try:
            event = await asyncio.to_thread(unlink_login, store(), login_hash, by=by)
        except RegistryError as exc:  # unlinked meanwhile
            if any(d.code == "unknown-reference" for d in exc.diagnostics):
                raise HTTPException(404, "no login linked with `this value`") from None
            raise
        return {"seq": event.seq, "kind": event.kind, "recorded_at": event.recorded_at}

    return router


async def form_field(request: Request, name: str) -> str | None:
    """One field of an `application/x-www-form-urlencoded` body (the pages' only forms)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != \
            "application/x-www-form-urlencoded":
        return None
    values = parse_qs((await request.body()).decode("utf-8", "replace")).get(name)
    return values[0] if values else None


def _entry_subject(entry: bytes) -> str | None:
    import json

    try:
        value = json.loads(entry).get("subject")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
