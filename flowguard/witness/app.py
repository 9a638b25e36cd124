"""The witness over HTTP: an ASGI app (Starlette, the project's stack) serving
`POST /add-checkpoint` (C2SP tlog-witness) and `GET /healthz`. The body is read up to a
size limit; the rules and the database work run on the event loop (SQLite) or in a worker
thread (PostgreSQL). Nothing a submitter sent is echoed or logged."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from flowguard.witness.service import MAX_BODY_BYTES, Witness


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_witness_app(witness: Witness) -> Starlette:
    # SQLite: the check-and-persist is a sub-millisecond CPU job that the database lock
    # serialises anyway, so it runs on the event loop (a thread hop costs as much as the
    # work); PostgreSQL waits on the network, so it runs in a worker thread.
    inline = witness.state.db.dialect == "sqlite"

    async def add_checkpoint(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return PlainTextResponse(f"the body is larger than {MAX_BODY_BYTES} bytes\n", 400)
        if inline:
            outcome = witness.add_checkpoint(body)
        else:
            outcome = await asyncio.to_thread(witness.add_checkpoint, body)
        return Response(outcome.body.encode("utf-8"), outcome.status,
                        headers={"Content-Type": outcome.content_type})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])
