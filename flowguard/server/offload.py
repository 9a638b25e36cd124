"""Big batches off the event loop (issue 13): deciding, explaining, pseudonymising for the
audit log and serialising a batch of many flows run in a small thread pool of their own, so
that single checks, answered on the event loop, keep their latency while a client loops
maximal batches. The engine is safe across threads (`Engine.check_many`).

Work on fewer than `THRESHOLD` flows stays on the loop: a thread hop costs more than it
saves. The pool has `BATCH_THREADS` threads: more batches at once would only queue for the
interpreter lock; they wait their turn instead, and single checks go first.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from flowguard.audit.trail import AuditTrail
from flowguard.engine import Engine
from flowguard.errors import ExplanationError
from flowguard.model import Decision, Flow, Policy, complete
from flowguard.server import metrics

THRESHOLD = 8
BATCH_THREADS = 2
SWITCH_INTERVAL_S = 0.0002
"""How often the interpreter lets the event loop's thread take the lock from a batch
thread (Python's default is 5 ms). Each single check wants the lock back several times
(after each socket call and thread hop): at 5 ms, a looping batch client cut single checks
to a few per second; at 0.2 ms they keep most of their rate."""
SLICE = 16
"""A batch thread offers the interpreter lock to the event loop between slices of this
many decisions, besides the interpreter's own switching."""

log = logging.getLogger("flowguard.server")
_T = TypeVar("_T")
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(BATCH_THREADS, thread_name_prefix="flowguard-batch")
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    return _pool


async def run(size: int, function: Callable[..., _T], *args: Any) -> _T:
    """`function(*args)`, in the batch pool when `size` (flows) reaches `THRESHOLD`."""
    if size < THRESHOLD:
        return function(*args)
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, function, *args)
    return await loop.run_in_executor(_executor(), call)


def decide_now(engine: Engine, flows: list[Flow]) -> list[Decision]:
    """Decide `flows` at one instant and explain each decision now (the engine explains
    lazily); a flow whose explanation fails is denied alone."""
    decisions = engine.check_many(flows)
    for index, decision in enumerate(decisions):
        if index % SLICE == SLICE - 1:
            _offer()
        try:
            complete(decision)
        except ExplanationError:
            decisions[index] = engine.error_decision(flows[index], datetime.now(UTC))
    metrics.decided(decisions)
    return decisions


async def decide(engine: Engine, flows: list[Flow]) -> list[Decision]:
    return await run(len(flows), decide_now, engine, flows)


def _offer() -> None:
    """Let a thread waiting for the interpreter lock (the event loop's) have it now."""
    if threading.current_thread() is not threading.main_thread():
        time.sleep(0)


def batch_json(decisions: list[Decision]) -> str:
    """`{"decisions": [...]}` as `DecisionBatch` serialises it, one decision at a time: a
    serialiser call holds the interpreter lock until it returns, so one call for a whole
    maximal batch (~250 ms) would stall the event loop however it is threaded."""
    parts = []
    for index, decision in enumerate(decisions):
        if index % SLICE == SLICE - 1:
            _offer()
        parts.append(decision.model_dump_json())
    return '{"decisions":[' + ",".join(parts) + "]}"


def _entries_now(trail: AuditTrail, decisions: list[Decision], policy: Policy,
                 registry_revision: int | None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for start in range(0, len(decisions), SLICE):
        if start:
            _offer()
        entries.extend(trail.decision_entries(decisions[start:start + SLICE], policy,
                                              registry_revision))
    return entries


async def audit_entries(trail: AuditTrail, decisions: list[Decision], policy: Policy,
                        registry_revision: int | None) -> list[dict[str, Any]]:
    """The audit entries of `decisions` (`AuditTrail.decision_entries`), in the batch pool
    when there are many."""
    return await run(len(decisions), _entries_now, trail, decisions, policy,
                     registry_revision)


async def serialise(decisions: list[Decision]) -> str:
    return await run(len(decisions), batch_json, decisions)


# --------------------------------------------------------------------------- audit


class _Pending:
    __slots__ = ("entries", "future")

    def __init__(self, entries: list[dict[str, Any]], future: asyncio.Future[None]) -> None:
        self.entries = entries
        self.future = future


class AuditBatcher:
    """Group commit: the audit entries of concurrent requests are appended in one
    transaction, and each request answers only once all its entries are durable.

    Fair to small requests: each transaction takes every waiting request of at most
    `chunk` entries whole, then at most `chunk` entries of the bigger ones, so a single
    check waits behind one slice of a maximal batch, never behind all of it. A big
    request's entries may so span several transactions (its answer waits for the last)."""

    def __init__(self, trail: AuditTrail, chunk: int = 100) -> None:
        self.trail = trail
        self.chunk = chunk
        self._pending: list[_Pending] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, entries: list[dict[str, Any]]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(list(entries), future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await future

    def _take(self) -> tuple[list[dict[str, Any]], list[_Pending], list[_Pending]]:
        """The entries of the next transaction; the requests it completes; those it
        advances."""
        entries: list[dict[str, Any]] = []
        done: list[_Pending] = []
        for pending in self._pending:
            if len(pending.entries) <= self.chunk:
                entries.extend(pending.entries)
                done.append(pending)
        room = self.chunk
        advanced: list[_Pending] = []
        for pending in self._pending:
            if room <= 0:
                break
            if len(pending.entries) > self.chunk:
                taken, pending.entries = pending.entries[:room], pending.entries[room:]
                entries.extend(taken)
                room -= len(taken)
                advanced.append(pending)
        finished = set(map(id, done))
        self._pending = [p for p in self._pending if id(p) not in finished]
        return entries, done, advanced

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let requests that are already parsed join this batch
            entries, done, advanced = self._take()
            try:
                started = time.perf_counter()
                await asyncio.to_thread(self.trail.log.append, entries)
                metrics.audit_appended(len(entries), time.perf_counter() - started)
            except Exception as exc:
                log.error("audit append failed (%s)", type(exc).__name__)
                failed = set(map(id, advanced))
                self._pending = [p for p in self._pending if id(p) not in failed]
                for pending in done + advanced:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            for pending in done:
                if not pending.future.done():
                    pending.future.set_result(None)
            for pending in advanced:  # whole once nothing of it is left to write
                if not pending.entries and not pending.future.done():
                    self._pending.remove(pending)
                    pending.future.set_result(None)

    async def drain(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)


# --------------------------------------------------------------------------- collector


class BatchCollectorPause:
    """ASGI middleware: the cyclic garbage collector waits while a big batch is in flight.

    A maximal batch keeps ~10^6 tracked objects alive for a moment; a collection that runs
    then (in whichever thread allocates) traverses them with the interpreter lock held, and
    stalls single checks for 50-170 ms. Most of those objects are freed by reference
    counting when the batch is answered, so the collector is paused from the batch's
    request to its reply and runs on its own schedule again after; should batches overlap
    without a gap, a young-generation collection still runs every `FORCE_EVERY_S`."""

    FORCE_EVERY_S = 10.0

    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = ("/v1/check/batch",)) -> None:
        self.app = app
        self.paths = paths
        self._inflight = 0
        self._paused_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self._inflight == 0:
            gc.disable()
            self._paused_at = time.monotonic()
        elif time.monotonic() - self._paused_at > self.FORCE_EVERY_S:
            gc.collect(1)
            self._paused_at = time.monotonic()
        self._inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                gc.enable()


# --------------------------------------------------------------------------- request body

BODY_OFF_LOOP_BYTES = 16 * 1024


def _flows_from_json(raw: bytes) -> list[Flow]:
    """The flows of a batch body, validated one by one (one validator call for a maximal
    body holds the interpreter lock ~20 ms). Raises `RequestValidationError` with the JSON
    path of every problem, as FastAPI would."""
    import orjson
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestValidationError([{"loc": ("body",), "msg": "the body is not JSON",
                                       "type": "json_invalid"}]) from None
    if not isinstance(document, dict) or set(document) - {"flows"}:
        extra = sorted(set(document) - {"flows"}) if isinstance(document, dict) else []
        raise RequestValidationError(
            [{"loc": ("body", name), "msg": "Extra inputs are not permitted",
              "type": "extra_forbidden"} for name in extra]
            or [{"loc": ("body",), "msg": "Input should be an object", "type": "model_type"}])
    items = document.get("flows")
    if not isinstance(items, list) or not items:
        raise RequestValidationError([{
            "loc": ("body", "flows"), "msg": "a non-empty list of flows is required",
            "type": "missing" if items is None else "too_short"}])
    flows: list[Flow] = []
    errors: list[Any] = []
    for index, item in enumerate(items):
        try:
            flows.append(Flow.model_validate(item))
        except ValidationError as exc:
            errors.extend({**e, "loc": ("body", "flows", index, *e["loc"])}
                          for e in exc.errors(include_url=False, include_input=False))
    if errors:
        raise RequestValidationError(errors)
    return flows


async def batch_flows(request: Request) -> list[Flow]:
    """A FastAPI dependency: the flows of a batch body, parsed in the batch pool when the
    body is big (the endpoint declares the body's schema with `BATCH_BODY`)."""
    raw = await request.body()
    return await run(THRESHOLD if len(raw) >= BODY_OFF_LOOP_BYTES else 0,
                     _flows_from_json, raw)


BATCH_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/CheckBatch"}}}}}
"""`openapi_extra` of the batch endpoint: its body as `CheckBatch` describes it."""


def add_schema(schemas: dict[str, Any], model: Any) -> None:
    """Put `model`'s JSON Schema (and its definitions) among the OpenAPI components."""
    import json

    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    text = json.dumps(schema)
    for name, definition in schema.pop("$defs", {}).items():
        if f"{name}-Input" in schemas:  # FastAPI's name for a model it also outputs
            text = text.replace(f'"#/components/schemas/{name}"',
                                f'"#/components/schemas/{name}-Input"')
        else:
            schemas.setdefault(name, definition)
    schema = json.loads(text)
    schema.pop("$defs", None)
    schemas.setdefault(model.__name__, schema)
