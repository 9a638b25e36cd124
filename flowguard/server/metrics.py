"""`GET /metrics` in the Prometheus text format (issue 13, item 8), with `prometheus-client`.

What is counted (no label ever carries a subject, a flow or a request id: endpoints are
route templates, reasons are the SPEC's reason codes):

- `flowguard_http_requests_total{endpoint,method,status}` and
  `flowguard_http_request_seconds{endpoint}` (histogram);
- `flowguard_decisions_total{decision,reason}`;
- `flowguard_audit_append_seconds` and `flowguard_audit_append_entries` (histograms of the
  group commits);
- `flowguard_registry_revision_lag` (how many registry revisions the engine's cached facts
  are behind the registry, read when scraped);
- `flowguard_refusals_total{cause}`: `token` (401), `scope` (403), `replay` (409),
  `body-too-large` (413), `invalid` (422), `timeout` (408), `headers-too-large` (431),
  `connections` (503 over the connection cap).

With several workers, `flowguard serve` points `PROMETHEUS_MULTIPROC_DIR` at a fresh
directory (unless it is set) so that a scrape, whichever worker answers it, sums them all.
`/metrics` needs a bearer token (any scope): it is no one's personal data, but it is not
for the public either.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowguard.model import Decision

PATH = "/metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("flowguard_http_requests", "HTTP requests answered",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("flowguard_http_request_seconds", "Time to answer an HTTP request",
                    ["endpoint"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                           2.5, 5, 10))
DECISIONS = Counter("flowguard_decisions", "Decisions answered", ["decision", "reason"])
AUDIT_SECONDS = Histogram("flowguard_audit_append_seconds",
                          "Time of one audit group commit",
                          buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1))
AUDIT_ENTRIES = Histogram("flowguard_audit_append_entries",
                          "Entries in one audit group commit",
                          buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000))
LAG = Gauge("flowguard_registry_revision_lag",
            "Registry revisions the engine's cached facts are behind the registry",
            multiprocess_mode="max")
REFUSALS = Counter("flowguard_refusals", "Requests refused, by cause", ["cause"])

_CAUSES = {401: "token", 403: "scope", 408: "timeout", 409: "replay", 413: "body-too-large",
           422: "invalid", 431: "headers-too-large", 503: "connections"}


def refused(status: int) -> None:
    """Count a refusal answered outside the app (limits.py)."""
    cause = _CAUSES.get(status)
    if cause is not None:
        REFUSALS.labels(cause).inc()


def decided(decisions: Sequence[Decision]) -> None:
    for decision in decisions:
        DECISIONS.labels(decision.decision, decision.reason).inc()


def audit_appended(entries: int, seconds: float) -> None:
    AUDIT_SECONDS.observe(seconds)
    AUDIT_ENTRIES.observe(entries)


def _exposition() -> bytes:
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


class Metrics:
    """ASGI middleware: times and counts every request, and answers `GET /metrics` for a
    caller whose bearer token authenticates. `lag` gives the registry revision lag."""

    def __init__(self, app: ASGIApp, tokens: Callable[[], Any],
                 lag: Callable[[], int]) -> None:
        self.app = app
        self.tokens = tokens
        self.lag = lag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == PATH and scope["method"] == "GET":
            await self._serve(scope, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            REQUESTS.labels(endpoint, scope["method"], str(status)).inc()
            LATENCY.labels(endpoint).observe(time.perf_counter() - started)
            refused(status)

    async def _serve(self, scope: Scope, send: Send) -> None:
        presented = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    presented = credentials.strip()
        if not presented or self.tokens().authenticate(presented) is None:
            refused(401)
            body, status, kind = b'{"detail":"a bearer token is required"}', 401, \
                "application/json"
        else:
            with contextlib.suppress(Exception):  # registry unavailable: /readyz says so
                LAG.set(max(0, self.lag()))
            body, status, kind = _exposition(), 200, CONTENT_TYPE_LATEST
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
