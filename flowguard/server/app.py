"""The HTTP check service (SPEC §10): an ASGI app (FastAPI) on the same library calls as
the CLI. `create_app(config)` builds it; `flowguard serve` runs it under uvicorn.

Security promises: every endpoint but the health checks needs a bearer token (stored as a
hash, compared in constant time) with the right scope; a caller may only check flows whose
sender belongs to its own organization (a refusal is audited); every POST carries a unique
`X-Request-Id` (a replay is refused); bodies are size-limited; validation errors name JSON
paths but never echo input; no subject id reaches the server's log.
"""


import asyncio
import contextlib
import gc
import logging
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowguard._plain import plain_pydantic
from flowguard.audit.entries import access_entry
from flowguard.audit.outbox import AuditPendingError
from flowguard.audit.trail import AuditTrail, open_audit
from flowguard.audit.unknown import MAX_UNKNOWN_IDS, hide_id, unknown_ids
from flowguard.engine import AUDIT_FAILED, Engine
from flowguard.errors import InputError
from flowguard.lint import lint
from flowguard.model import (
    Consent,
    Decision,
    Flow,
    Guardianship,
    Id,
    Model,
    Policy,
)
from flowguard.policy import load_policy
from flowguard.registry import InMemoryRegistry, Registry
from flowguard.server import limits, metrics, offload
from flowguard.server.authz import Gate
from flowguard.server.health import Readiness, logged_reload
from flowguard.server.limits import TokenGate
from flowguard.server.shared import SharedState, shared_url
from flowguard.server.tokens import Scope as TokenScope
from flowguard.server.tokens import Token, TokenTable, load_tokens
from flowguard.server.wire import ChangeRequest, GrantRequest, GuardianshipRequest, SingleRequestId
from flowguard.store import (
    RegistryStore,
    is_database_url,
    open_registry,
    open_store,
)

log = logging.getLogger("flowguard.server")

MAX_BODY_BYTES = 1024 * 1024
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


@dataclass(frozen=True)
class ServerConfig:
    policy: str
    tokens: str
    registry: str | None = None
    audit: str | None = None
    log_key: str | None = None
    pseudonym_key: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    batch_limit: int = 1000
    replay_window_seconds: float = 600.0
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 60.0
    witnesses: tuple[str, ...] = ()
    witness_quorum: int = 0
    docs: bool = False
    max_connections: int = 2048  # limits.py
    request_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_header_bytes: int = 64 * 1024
    max_categories_per_flow: int = 64
    max_categories_per_batch: int = 20_000
    citizen: dict[str, Any] | None = None  # the citizen pages' options (issue 17)


# --------------------------------------------------------------------------- bodies


class CheckBatch(Model):
    flows: Annotated[tuple[Flow, ...], Field(min_length=1)]


class DecisionBatch(Model):
    decisions: tuple[Decision, ...]


class SubjectQuery(Model):
    subject: Id


class RecordedEvent(Model):
    seq: int
    kind: str
    record: str | None
    recorded_at: datetime


class ConsentView(Model):
    version: int
    status: str  # its lawful status now (flowguard.consents.STATUSES)
    reason: str = ""  # why, in words
    consent: Consent


class PolicyInfo(Model):
    digest: str
    version: int
    service: str | None
    activated_at: datetime


class ReloadResult(Model):
    activated: bool
    digest: str
    problems: list[str]


class Problem(Model):
    detail: str


class FieldProblem(Model):
    path: str
    message: str
    type: str


class ValidationProblem(Model):
    """A 422: each problem with the JSON path of the value (the value is never echoed)."""

    detail: list[FieldProblem]


_TEXT: dict[str, Any] = {"description": "a signed note (text)",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}
_STATUS_BY_CODE = {"duplicate": 409, "conflict": 409, "read-only": 409,
                   "audit-unavailable": 503}


async def _by_id(call: Callable[[], Any]) -> Any:
    """Run a store write that names its record in the path: an unknown id is a 404."""
    from flowguard.errors import RegistryError

    try:
        return await asyncio.to_thread(call)
    except RegistryError as exc:
        if any(d.code == "unknown-reference" for d in exc.diagnostics):
            raise HTTPException(404, "; ".join(d.message for d in exc.diagnostics)) from None
        raise


# --------------------------------------------------------------------------- state


class Service:
    """What the app serves: the active engine (swapped atomically on reload), the registry,
    the audit trail and the tokens."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        policy = load_policy(config.policy)
        self.trail: AuditTrail | None = None
        if config.audit:
            if not config.pseudonym_key:
                from flowguard.errors import Diagnostic

                raise InputError([Diagnostic("--audit needs --pseudonym-key", "<options>")])
            self.trail = open_audit(config.audit, pseudonym_key=config.pseudonym_key,
                                    log_key=config.log_key,
                                    checkpoint_every=config.checkpoint_every,
                                    checkpoint_seconds=config.checkpoint_seconds)
            for notice in self.trail.notices:
                log.warning("%s", notice)
        self.registry: Registry = InMemoryRegistry()
        if config.registry and is_database_url(config.registry):
            # opening it appends the registry events the audit log lacks (audit.outbox)
            self.registry = open_store(config.registry, policy, audit=self.trail)
            if self.registry.reconciled:
                log.warning("appended the audit entries of %d registry events the log "
                            "lacked", len(self.registry.reconciled))
        elif config.registry:
            self.registry = open_registry(config.registry, policy)
        self.tokens: TokenTable = load_tokens(
            config.tokens, set(policy.organizations),
            {a: actor.organization for a, actor in policy.actors.items()})
        self.engine = Engine(policy, self.registry)
        self.activated_at = datetime.now(UTC)
        if self.trail is not None:
            self.trail.record_policy(policy)
        # request ids and the active policy, shared by every worker and server (shared.py)
        self.shared = SharedState(shared_url(config.registry, config.audit),
                                  window=config.replay_window_seconds)
        self.generation = self.shared.publish(policy, only_if_different=True)
        self.batcher = offload.AuditBatcher(self.trail) if self.trail is not None else None
        self.witnesses = None
        if config.witnesses and self.trail is None:
            from flowguard.errors import Diagnostic

            raise InputError([Diagnostic("--witness needs --audit (the log to witness)",
                                         "--witness")])
        if config.witnesses and self.trail is not None:
            from flowguard.witness.collector import WitnessCollector

            self.witnesses = WitnessCollector(self.trail.log, config.witnesses,
                                              config.witness_quorum)
        self._reload_lock = asyncio.Lock()

    @property
    def store(self) -> RegistryStore:
        if not isinstance(self.registry, RegistryStore):
            raise HTTPException(409, "the registry is a read-only file; serve a database "
                                     "registry (sqlite:///... or postgresql://...) to change it")
        return self.registry

    def reload_tokens(self, policy: Policy) -> None:
        """Read the tokens file again (so a token removed from it is refused from now on);
        a file that cannot be loaded leaves the current table in place and is logged."""
        try:
            self.tokens = load_tokens(
                self.config.tokens, set(policy.organizations),
                {a: actor.organization for a, actor in policy.actors.items()})
        except InputError as exc:
            log.error("tokens file not reloaded, the previous tokens stay active: %s",
                      "; ".join(d.render() for d in exc.diagnostics))
        else:
            log.info("tokens reloaded (%d tokens)", len(self.tokens.tokens))

    async def reload(self) -> ReloadResult:
        """Load, validate and lint the policy again; swap only if it has no error. The
        tokens file is read again either way (under the policy then active)."""
        try:
            return await self._reload_policy()
        finally:
            await asyncio.to_thread(self.reload_tokens, self.engine.policy)

    async def _reload_policy(self) -> ReloadResult:
        async with self._reload_lock:
            try:
                policy = await asyncio.to_thread(load_policy, self.config.policy)
            except InputError as exc:
                return ReloadResult(activated=False, digest=self.engine.policy_digest,
                                    problems=[d.render() for d in exc.diagnostics])
            errors = [d for d in await asyncio.to_thread(lint, self.config.policy)
                      if d.severity == "error"]
            if errors:
                return ReloadResult(activated=False, digest=self.engine.policy_digest,
                                    problems=[d.render() for d in errors])
            engine = Engine(policy, self.registry)
            if isinstance(self.registry, RegistryStore):
                self.registry.policy = policy  # writes validate against the active policy
            if self.trail is not None:
                await asyncio.to_thread(self.trail.record_policy, policy)
            # every worker of every server adopts it before its next decision (shared.py)
            self.generation = await asyncio.to_thread(self.shared.publish, policy)
            self._activate(engine)
            log.info("policy %s activated", engine.policy_digest)
            return ReloadResult(activated=True, digest=engine.policy_digest, problems=[])

    def _activate(self, engine: Engine) -> None:
        self.engine = engine  # one reference assignment: requests see old or new
        if isinstance(self.registry, RegistryStore):
            self.registry.policy = engine.policy  # consent writes validate against it
        self.activated_at = datetime.now(UTC)

    async def current_engine(self) -> Engine:
        """The engine of the newest policy generation this process has read (a check's
        request-id claim reads it): adopt a policy another worker activated."""
        if self.shared.seen_generation > self.generation:
            async with self._reload_lock:
                active = await asyncio.to_thread(self.shared.active)
                if active is not None and active.generation > self.generation:
                    self._activate(Engine(active.policy, self.registry))
                    self.generation = active.generation
                    await asyncio.to_thread(self.reload_tokens, active.policy)
                    log.info("policy %s adopted (generation %d)", active.digest,
                             active.generation)
        return self.engine

    async def audit(self, entries: list[dict[str, Any]]) -> None:
        if self.batcher is not None and entries:
            await self.batcher.record(entries)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.drain()
        if self.trail is not None:
            if self.trail.log.signer is not None and self.trail.log.size:
                await asyncio.to_thread(self.trail.checkpoint)
            self.trail.close()
        if isinstance(self.registry, RegistryStore):
            self.registry.close()
        self.shared.close()


# --------------------------------------------------------------------------- middleware


class BodyLimit:
    """Refuse bodies over the limit with 413, whether announced or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _plain_error(send, 413, "request body too large")
                return
        # read the body here, up to the limit, so the app never sees a partial one
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                await _plain_error(send, 413, "request body too large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _plain_error(send: Send, status: int, detail: str) -> None:
    body = ('{"detail":"' + detail + '"}').encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- app


def create_app(config: ServerConfig, service: Service | None = None) -> FastAPI:
    """The ASGI application. Raises `InputError` when the policy, registry, audit log or
    tokens cannot be loaded (the server then does not start)."""
    state = service if service is not None else Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        # what is loaded now lives as long as the process: keep the collector off it
        gc.collect()
        gc.freeze()
        # SIGHUP reloads the policy (only where the loop runs in the main thread)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(
                logged_reload(state.reload, "SIGHUP")))
        collecting = loop.create_task(state.witnesses.run()) if state.witnesses else None
        yield
        if collecting is not None:
            collecting.cancel()
        await state.close()

    app = FastAPI(
        title="flowguard", version="1",
        description="Consent-aware information-flow checks for co-produced public services.",
        lifespan=lifespan,
        # the interactive page loads its script from a CDN: only when asked (`--docs`)
        docs_url="/docs" if config.docs else None, redoc_url=None,
        responses={401: {"model": Problem, "description": "missing or unknown token"},
                   403: {"model": Problem, "description": "not allowed for this token"},
                   413: {"model": Problem, "description": "request body too large"}})
    app.state.service = state
    bearer = HTTPBearer(auto_error=False)
    gate = Gate(lambda: state.engine.policy, state.audit)
    readiness = Readiness(
        ([("registry", config.registry, "registry_head")]
         if config.registry and is_database_url(config.registry) else [])
        + ([("audit log", config.audit, "audit_head")] if config.audit else []))

    def require(scope: TokenScope) -> Callable[..., Awaitable[Token]]:
        async def dependency(
                credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
        ) -> Token:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise HTTPException(401, "a bearer token is required",
                                    headers={"WWW-Authenticate": "Bearer"})
            token = state.tokens.authenticate(credentials.credentials)
            if token is None:
                raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
            if scope not in token.scopes:
                await state.audit([access_entry(
                    token=token.id, organization=token.organization, action=scope,
                    reason="scope-missing", at=datetime.now(UTC))])
                raise HTTPException(403, f"this token lacks the `{scope}` scope")
            return token
        return dependency

    async def request_id(x_request_id: Annotated[str, Header(
            pattern=REQUEST_ID.pattern,
            description="A unique id for this request (8-128 of A-Z a-z 0-9 . _ : -); an "
                        "id the same token used within the replay window is refused.")],
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> str:
        token = state.tokens.authenticate(credentials.credentials) if credentials else None
        if token is None:  # the endpoint's token dependency has refused it already
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if not await state.shared.claim_async(token.id, x_request_id):
            raise HTTPException(409, "this X-Request-Id was used before: replay refused")
        # a policy another worker reloaded is adopted now, and the tokens file with it: a
        # token removed from it is refused here, on every worker, from the reload on
        await state.current_engine()
        if credentials is None or state.tokens.authenticate(credentials.credentials) is None:
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        return x_request_id

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"path": _json_path(e.get("loc", ())), "message": _problem_message(e),
                     "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        codes = {d.code for d in exc.diagnostics}
        status = next((_STATUS_BY_CODE[c] for c in sorted(codes) if c in _STATUS_BY_CODE), 422)
        if status == 422:
            problems = [{"path": "$", "message": d.render(), "type": d.code}
                        for d in exc.diagnostics]
            return JSONResponse({"detail": problems}, status_code=422)
        return JSONResponse({"detail": "; ".join(d.render() for d in exc.diagnostics)},
                            status_code=status)

    @app.exception_handler(AuditPendingError)
    async def audit_pending(request: Request, exc: AuditPendingError) -> JSONResponse:
        log.error("a registry change stands without its audit entry yet (%s)", exc.cause)
        return JSONResponse({"detail": exc.message, "recorded": [
            {"seq": c.seq, "kind": c.kind, "record": c.record} for c in exc.changes]},
            status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that is not JSON at all
            return JSONResponse({"detail": [{"path": "$", "message": str(exc.detail),
                                             "type": "json_invalid"}]}, status_code=422)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error (%s) on %s", type(exc).__name__, request.url.path.split("/")[2]
                  if request.url.path.count("/") > 1 else "/")
        return JSONResponse({"detail": "internal error"}, status_code=500)

    async def decide(token: Token, flows: list[Flow]) -> list[Decision]:
        limits.check_categories(flows, config.max_categories_per_flow,
                                config.max_categories_per_batch)
        engine = await state.current_engine()
        actors = engine.policy.actors
        unknown = unknown_ids(engine.policy, flows)
        if len(unknown) > MAX_UNKNOWN_IDS:  # refused before anything is written
            raise HTTPException(422, f"the request names {len(unknown)} ids the policy does "
                                     f"not know; at most {MAX_UNKNOWN_IDS} are accepted")
        outside = [f.sender for f in flows
                   if f.sender not in actors or
                   actors[f.sender].organization != token.organization]
        if outside:
            sender = (hide_id(outside[0], actors, state.trail.pseudonym)
                      if state.trail is not None else "")
            await state.audit([access_entry(
                token=token.id, organization=token.organization, action="check",
                reason="sender-outside-organization", sender=sender,
                at=datetime.now(UTC))])
            named = f"sender `{outside[0]}`" if outside[0] in actors else "a sender"
            raise HTTPException(403, f"{named} is not an actor of organization "
                                     f"`{token.organization}`: send only flows from your "
                                     "own organization's actors")
        decisions = await offload.decide(engine, flows)  # a big batch off the loop
        if state.trail is not None:
            try:
                entries = await offload.audit_entries(state.trail, decisions, engine.policy,
                                                      engine.registry_revision)
                await state.audit(entries)
            except Exception:
                # a decision that cannot be recorded must not be acted on
                return [engine.error_decision(d.flow, d.evaluated_at, AUDIT_FAILED)
                        for d in decisions]
        return decisions

    @app.post("/v1/check", response_model=Decision, tags=["check"],
              responses={409: {"model": Problem}, 422: {"description": "invalid flow"}})
    async def check(flow: Flow, token: Annotated[Token, Depends(require("check"))],
                    _: Annotated[str, Depends(request_id)]) -> Response:
        """Decide one flow (SPEC §6 decision JSON)."""
        decision = (await decide(token, [flow]))[0]
        return Response(decision.model_dump_json(), media_type="application/json")

    @app.post("/v1/check/batch", response_model=DecisionBatch, tags=["check"],
              responses={409: {"model": Problem}, 422: {"description": "invalid flows"}},
              openapi_extra=offload.BATCH_BODY)
    async def check_batch(flows: Annotated[list[Flow], Depends(offload.batch_flows)],
                          token: Annotated[Token, Depends(require("check"))],
                          _: Annotated[str, Depends(request_id)]) -> Response:
        """Decide up to the configured limit of flows at one instant."""
        # the body (a `CheckBatch`) is parsed off the event loop when big (offload.py)
        if len(flows) > state.config.batch_limit:
            raise HTTPException(413, f"at most {state.config.batch_limit} flows per batch")
        decisions = await decide(token, flows)
        body = await offload.serialise(decisions)
        return Response(body, media_type="application/json")

    # ------------------------------------------------------------------ consents

    def _event(event: Any) -> RecordedEvent:
        return RecordedEvent(seq=event.seq, kind=event.kind, record=event.record,
                             recorded_at=event.recorded_at)

    @app.post("/v1/consents", response_model=RecordedEvent, status_code=201,
              tags=["consents"], responses={409: {"model": Problem}})
    async def grant(body: GrantRequest,
                    token: Annotated[Token, Depends(require("consent:write"))],
                    _: Annotated[str, Depends(request_id)]) -> RecordedEvent:
        """Record a consent (the controller and `records_consents` organizations only)."""
        by = await gate.writer(token, "consent.grant", body.on_behalf_of)
        await gate.record_write(token, "consent.grant", body.consent.id,
                                body.consent.recipients)
        store = state.store
        return _event(await asyncio.to_thread(store.grant, body.consent, by=by))

    @app.post("/v1/consents/{consent_id}/withdraw", response_model=RecordedEvent,
              tags=["consents"], responses={404: {"model": Problem}, 409: {"model": Problem}})
    async def withdraw(consent_id: Id, body: ChangeRequest,
                       token: Annotated[Token, Depends(require("consent:write"))],
                       _: Annotated[str, Depends(request_id)]) -> RecordedEvent:
        """Withdraw a consent: its id is all it takes (GDPR Art. 7(3))."""
        by = await gate.writer(token, "consent.withdraw", body.on_behalf_of)
        store = state.store
        await gate.record(token, "consent.withdraw", "consent", consent_id,
                          await asyncio.to_thread(store.history, consent_id))
        return _event(await _by_id(lambda: store.withdraw(consent_id, by=by, at=body.at,
                                                          evidence=body.evidence)))

    @app.get("/v1/consents/{consent_id}", response_model=ConsentView, tags=["consents"],
             responses={404: {"model": Problem}})
    async def show_consent(consent_id: Id,
                           token: Annotated[Token, Depends(require("consent:read"))]
                           ) -> ConsentView:
        """The current version of a consent and its status now."""
        await gate.reader(token, "consent.read")
        await gate.record(token, "consent.read", "consent", consent_id,
                          await asyncio.to_thread(state.store.history, consent_id))
        found = await asyncio.to_thread(state.store.consent, consent_id)
        if found is None:
            raise HTTPException(404, f"no consent `{consent_id}`")
        consent, version = found
        status = await asyncio.to_thread(state.engine.consent_status, consent)
        return ConsentView(version=version, status=status.status, reason=status.reason,
                           consent=consent)

    @app.get("/v1/consents/{consent_id}/history", response_model=list[RecordedEvent],
             tags=["consents"], responses={404: {"model": Problem}})
    async def consent_history(consent_id: Id,
                              token: Annotated[Token, Depends(require("consent:read"))]
                              ) -> list[RecordedEvent]:
        """Every recorded event of a consent, oldest first."""
        await gate.reader(token, "consent.history")
        events = [e for e in await asyncio.to_thread(state.store.history, consent_id)
                  if e.kind.startswith("consent.")]
        await gate.record(token, "consent.history", "consent", consent_id, events)
        if not events:
            raise HTTPException(404, f"no consent `{consent_id}`")
        return [_event(e) for e in events]

    @app.post("/v1/guardianships", response_model=RecordedEvent, status_code=201,
              tags=["guardianships"], responses={409: {"model": Problem}})
    async def add_guardianship(body: GuardianshipRequest,
                               token: Annotated[Token, Depends(require("consent:write"))],
                               _: Annotated[str, Depends(request_id)]) -> RecordedEvent:
        """Record a guardianship (the controller and `records_consents` organizations)."""
        by = await gate.writer(token, "guardianship.add", body.on_behalf_of)
        await gate.record_write(token, "guardianship.add", body.guardianship.id)
        return _event(await asyncio.to_thread(state.store.add_guardianship,
                                              body.guardianship, by=by))

    @app.post("/v1/guardianships/{guardianship_id}/end", response_model=RecordedEvent,
              tags=["guardianships"], responses={404: {"model": Problem},
                                                 409: {"model": Problem}})
    async def end_guardianship(guardianship_id: Id, body: ChangeRequest,
                               token: Annotated[Token, Depends(require("consent:write"))],
                               _: Annotated[str, Depends(request_id)]) -> RecordedEvent:
        """End a guardianship."""
        by = await gate.writer(token, "guardianship.end", body.on_behalf_of)
        store = state.store
        await gate.record(token, "guardianship.end", "guardianship", guardianship_id,
                          await asyncio.to_thread(store.history, guardianship_id))
        return _event(await _by_id(lambda: store.end_guardianship(
            guardianship_id, by=by, at=body.at, evidence=body.evidence)))

    @app.post("/v1/guardianships/query", response_model=list[Guardianship],
              tags=["guardianships"])
    async def list_guardianships(body: SubjectQuery,
                                 token: Annotated[Token, Depends(require("consent:read"))]
                                 ) -> list[Guardianship]:
        """A subject's guardianships (the subject id travels in the body, never in a URL
        that logs and proxies record)."""
        await gate.reader(token, "guardianship.query")
        records = await asyncio.to_thread(state.registry.records_of, body.subject)
        found = sorted(records.guardianships, key=lambda g: g.id)
        if isinstance(state.registry, RegistryStore):  # only what this token may see
            store = state.registry
            found = [g for g in found
                     if gate.sees(token, await asyncio.to_thread(store.history, g.id))]
        return found

    # ------------------------------------------------------------------ audit

    def _trail() -> AuditTrail:
        if state.trail is None:
            raise HTTPException(404, "this server keeps no audit log")
        return state.trail

    @app.get("/v1/audit/checkpoint", tags=["audit"],
             responses={200: _TEXT, 404: {"model": Problem}})
    async def audit_checkpoint(token: Annotated[Token, Depends(require("audit:read"))]
                               ) -> PlainTextResponse:
        """The latest signed checkpoint (C2SP tlog-checkpoint signed note)."""
        from flowguard.audit.cosigned import latest_cosigned

        trail = _trail()
        note = await asyncio.to_thread(state.witnesses.latest if state.witnesses
                                       else lambda: latest_cosigned(trail.log))
        if note is None:
            raise HTTPException(404, "no checkpoint has been signed yet")
        return PlainTextResponse(note)

    @app.get("/v1/audit/proof/{index}", tags=["audit"],
             responses={200: _TEXT, 404: {"model": Problem}})
    async def audit_proof(index: Annotated[int, Path(ge=0)],
                          token: Annotated[Token, Depends(require("audit:read"))]
                          ) -> PlainTextResponse:
        """A `c2sp.org/tlog-proof@v1` receipt of entry `index` against the latest checkpoint
        that covers it."""
        receipt = await asyncio.to_thread(_receipt, _trail(), index)
        return PlainTextResponse(receipt)

    @app.get("/v1/audit/consistency", response_model=list[str], tags=["audit"],
             responses={404: {"model": Problem}})
    async def audit_consistency(old: Annotated[int, Query(ge=1)],
                                new: Annotated[int, Query(ge=1)],
                                token: Annotated[Token, Depends(require("audit:read"))]
                                ) -> list[str]:
        """The RFC 6962 consistency proof between tree sizes `old` and `new` (base64)."""
        trail = _trail()
        if not old <= new <= trail.log.size:
            raise HTTPException(404, f"sizes must satisfy 1 <= old <= new <= {trail.log.size}")
        import base64

        proof = await asyncio.to_thread(trail.log.consistency_proof, old, new)
        return [base64.b64encode(h).decode() for h in proof]

    # ------------------------------------------------------------------ policy and health

    @app.get("/v1/policy", response_model=PolicyInfo, tags=["policy"])
    async def policy_info(token: Annotated[Token, Depends(require("check"))]) -> PolicyInfo:
        """The active policy's digest."""
        policy = state.engine.policy
        return PolicyInfo(digest=state.engine.policy_digest, version=policy.version,
                          service=policy.service.id if policy.service else None,
                          activated_at=state.activated_at)

    @app.post("/v1/policy/reload", response_model=ReloadResult, tags=["policy"],
              responses={409: {"model": Problem}})
    async def policy_reload(token: Annotated[Token, Depends(require("admin"))],
                            _: Annotated[str, Depends(request_id)]) -> ReloadResult:
        """Load, validate and lint the policy again and activate it atomically; a policy with
        errors leaves the active one in place and returns the errors."""
        return await logged_reload(state.reload, "HTTP")  # type: ignore[no-any-return]

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": Problem}})
    async def readyz() -> JSONResponse:
        """The registry and audit log take a write (answered within 2 s)."""
        down = await readiness.unavailable()
        if down is not None:
            return JSONResponse({"detail": f"{down} unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "policy": state.engine.policy_digest})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            document = get_openapi(title=app.title, version=app.version,
                                   description=app.description, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["HTTPValidationError"] = ValidationProblem.model_json_schema(
                ref_template="#/components/schemas/{model}")
            schemas.pop("ValidationError", None)
            schemas["FieldProblem"] = FieldProblem.model_json_schema()
            schemas["HTTPValidationError"].pop("$defs", None)
            offload.add_schema(schemas, CheckBatch)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if config.citizen:  # the citizen pages under /me/ (flowguard.server.citizen)
        from flowguard.server.citizen import mount_citizen

        mount_citizen(app, state, config.citizen)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(SingleRequestId)
    app.add_middleware(offload.BatchCollectorPause)
    app.add_middleware(TokenGate, tokens=lambda: state.tokens)  # before the body is read
    app.add_middleware(metrics.Metrics, tokens=lambda: state.tokens,  # GET /metrics
                       lag=lambda: state.registry.revision - state.engine.registry_revision)
    limits.configure(limits.Limits(config.max_connections, config.request_timeout,
                                   config.keep_alive_timeout, config.max_header_bytes))
    return app


def _receipt(trail: AuditTrail, index: int) -> str:
    from flowguard.audit.checkpoint import Checkpoint
    from flowguard.audit.cosigned import with_cosignatures
    from flowguard.audit.note import parse_note
    from flowguard.audit.receipt import make_receipt

    size = trail.log.size
    if not 0 <= index < size:
        raise HTTPException(404, f"no entry {index}: the log has {size} entries")
    for cp_size, note in reversed(trail.log.checkpoints()):
        if cp_size > index:
            checkpoint = Checkpoint.parse(parse_note(note).text)
            proof = trail.log.inclusion_proof(index, checkpoint.size)
            return make_receipt(index, trail.log.entry(index), proof,
                                with_cosignatures(trail.log, note))
    raise HTTPException(404, f"no signed checkpoint covers entry {index} yet")


REQUEST_ID_HINT = ("send an `X-Request-Id` header: a new id for every request, 8-128 of "
                   "A-Z a-z 0-9 . _ : - (a UUID will do); the same token may not send an "
                   "id twice within the replay window")


def _problem_message(error: Any) -> str:
    """A validation problem in plain words; a missing or malformed request id says which
    header to send and what to put in it (pydantic would only say 'Field required')."""
    loc = tuple(error.get("loc", ()))
    if loc[:2] == ("header", "x-request-id"):
        return REQUEST_ID_HINT
    return plain_pydantic(error)


def _json_path(loc: Any) -> str:
    path = "$"
    for part in loc if isinstance(loc, list | tuple) else ():
        if part == "body":
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


CONFIG_ENV = "FLOWGUARD_SERVER_CONFIG"


def app_from_env() -> FastAPI:
    """The app for uvicorn's worker processes: the config travels as JSON in
    `FLOWGUARD_SERVER_CONFIG` (see `flowguard serve --workers`)."""
    import json
    import os

    return create_app(ServerConfig(**json.loads(os.environ[CONFIG_ENV])))
