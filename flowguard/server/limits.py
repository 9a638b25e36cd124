"""Limits against exhaustion (issue 13), on by default: what uvicorn offers, and what it
lacks added to its own HTTP protocol rather than to hand-written sockets.

uvicorn (httptools) has a keep-alive timeout but no deadline for a request's headers and
body, no cap on header size, and answers 503 only once a request is parsed. So
`LimitedHttpProtocol`, a subclass of uvicorn's httptools protocol, adds:

- a cap on concurrent connections per worker (`--max-connections`): a connection over it is
  answered 503 and closed at once, before anything is read;
- a deadline for each request's headers and body (`--request-timeout`), from the
  connection's opening or the request's first byte to its last: a slow client is answered
  408 and disconnected (a connection that sends nothing is closed by the same deadline);
- a cap on the request line and headers (`--max-header-bytes`): 431, then closed, before
  more is buffered.

The keep-alive timeout is uvicorn's own (`--keep-alive-timeout`). `TokenGate` (ASGI) refuses
a request whose bearer token is missing or unknown before its body is read, so the body
limit (`BodyLimit` in app.py) applies only to authenticated callers.

The settings reach each worker process through `configure`, called when the app is built
(`create_app`), before the worker accepts a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from flowguard.server.tokens import TokenTable

PROTOCOL = "flowguard.server.limits:LimitedHttpProtocol"
"""What `flowguard serve` passes to uvicorn as `http`."""


@dataclass(frozen=True)
class Limits:
    max_connections: int = 2048
    request_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_header_bytes: int = 64 * 1024


_limits = Limits()


def configure(limits: Limits) -> None:
    """Set the limits this process's connections get."""
    global _limits
    _limits = limits


def current() -> Limits:
    return _limits


def raise_open_files_limit(wanted: int) -> None:
    """Raise the soft limit of open files towards `wanted` (+ room for databases and logs),
    so the connection cap is what refuses connections, not `accept` failing for everyone."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + 256
    if soft != resource.RLIM_INFINITY and soft < target:
        new = target if hard == resource.RLIM_INFINITY else min(target, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _status(code: int, reason: str) -> bytes:
    body = json.dumps({"detail": reason}).encode()
    return (f"HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def _refusal(code: int, reason: str) -> bytes:
    from flowguard.server.metrics import refused

    refused(code)
    return _status(code, reason)


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, a request deadline and a header
    size cap (see the module's text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            transport.write(_refusal(503, "Service Unavailable"))
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._limits.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if (self.cycle is None or self.cycle.response_complete
                or not self.cycle.response_started):
            self.transport.write(_refusal(408, "Request Timeout"))  # say why before closing
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if (self._in_headers and self._header_bytes > self._limits.max_header_bytes
                and not self.transport.is_closing()):
            self._refuse_headers()

    def _refuse_headers(self) -> None:
        self._disarm()
        self.transport.write(_refusal(431, "Request Header Fields Too Large"))
        self.transport.close()

    def on_message_begin(self) -> None:
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self._limits.max_header_bytes:
            self._refuse_headers()
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_headers = True  # the next request's headers start
        self._header_bytes = 0
        super().on_message_complete()


# --------------------------------------------------------------------------- token gate

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc",
                          "/openapi.json"})
CITIZEN_PATHS = "/me"
"""The citizen pages' root (flowguard.server.citizen): signed in by OpenID Connect."""


class TokenGate:
    """Refuse a request without a known bearer token with 401 before its body is read (the
    endpoint then checks the token's scope). Health checks and the API description are
    public; the citizen pages (`/me/`) sign people in with their own session instead."""

    def __init__(self, app: ASGIApp, tokens: Any) -> None:
        self.app = app
        self.tokens = tokens  # a callable giving the current TokenTable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or path in PUBLIC_PATHS
                or path == CITIZEN_PATHS or path.startswith(CITIZEN_PATHS + "/")):
            await self.app(scope, receive, send)
            return
        table: TokenTable = self.tokens()
        presented = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    presented = credentials.strip()
                break
        if presented is None or table.authenticate(presented) is None:
            detail = "a bearer token is required" if presented is None else "unknown token"
            body = json.dumps({"detail": detail}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------- serve options


def serve_problem(config: Any, workers: int, tls_cert: str | None,
                  tls_key: str | None) -> Any:
    """What keeps `flowguard serve` from starting with these options, as a `Diagnostic`."""
    from flowguard.errors import Diagnostic
    from flowguard.server.shared import shared_url

    if workers > 1 and shared_url(config.registry, config.audit) is None:
        return Diagnostic("--workers above 1 needs a database the workers share, for replay "
                          "protection and policy reloads", "--workers",
                          hint="add --registry or --audit with a sqlite:/// or postgresql:// "
                               "URL, or serve with one worker")
    if (tls_cert is None) != (tls_key is None):
        return Diagnostic("--tls-cert and --tls-key go together", "--tls-cert",
                          hint="give both, or neither (then use a TLS-terminating proxy)")
    return None


def uvicorn_limits(config: Any, tls_cert: str | None, tls_key: str | None) -> dict[str, Any]:
    """The uvicorn options that carry the limits (and TLS)."""
    raise_open_files_limit(config.max_connections)
    options: dict[str, Any] = {"http": PROTOCOL,
                               "timeout_keep_alive": config.keep_alive_timeout,
                               "backlog": max(2048, config.max_connections),
                               "h11_max_incomplete_event_size": config.max_header_bytes}
    if tls_cert is not None and tls_key is not None:
        options.update(ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    return options


# --------------------------------------------------------------------------- categories

MAX_CATEGORIES_PER_FLOW = 64
MAX_CATEGORIES_PER_BATCH = 20_000


def check_categories(flows: Any, per_flow: int = MAX_CATEGORIES_PER_FLOW,
                     per_batch: int = MAX_CATEGORIES_PER_BATCH) -> None:
    """Refuse (413) a request whose flows name more categories than a check may cost."""
    from fastapi import HTTPException

    total = 0
    for index, flow in enumerate(flows):
        count = len(flow.data)
        if count > per_flow:
            raise HTTPException(413, f"flow {index} names {count} categories; at most "
                                     f"{per_flow} per flow (name a parent category instead "
                                     "of its leaves)")
        total += count
    if total > per_batch:
        raise HTTPException(413, f"the flows name {total} categories; at most {per_batch} "
                                 "per request (split the batch)")
