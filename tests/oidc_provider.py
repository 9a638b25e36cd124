"""A small OpenID Connect provider for the tests, on loopback: discovery, JWKS, authorize
(authorization code with PKCE S256, no consent screen: it signs in whoever the test says)
and token (client_secret_basic or client_secret_post, as configured). ID tokens are RS256,
signed with joserfc."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "flowguard-citizen"
CLIENT_SECRET = "test-client-secret-" + "x" * 24


def serve_in_thread(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """Run an ASGI app under uvicorn on 127.0.0.1:`port` in a daemon thread, once started."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server on port {port} did not start")
        time.sleep(0.02)
    return server, thread


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    login: str


@dataclass
class Provider:
    port: int
    auth_method: str = "client_secret_basic"
    login: str | None = None  # whom /authorize signs in (the claim value)
    claim: str = "sub"
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(
        2048, parameters={"kid": "test-key"}, private=True))
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return {"issuer": self.issuer,
                    "authorization_endpoint": self.issuer + "/authorize",
                    "token_endpoint": self.issuer + "/token",
                    "jwks_uri": self.issuer + "/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": [self.auth_method]}

        @app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            return {"keys": [self.key.as_dict(private=False)]}

        @app.get("/authorize")
        async def authorize(request: Request) -> Response:
            q = request.query_params
            if (q.get("response_type") != "code" or q.get("client_id") != CLIENT_ID
                    or q.get("code_challenge_method") != "S256" or not q.get("code_challenge")
                    or not q.get("nonce") or not q.get("state") or "openid" not in
                    (q.get("scope") or "").split() or self.login is None):
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            code = secrets.token_urlsafe(24)
            self.grants[code] = Grant(CLIENT_ID, q["redirect_uri"], q["code_challenge"],
                                      q["nonce"], self.login)
            return RedirectResponse(q["redirect_uri"] + "?" + urlencode(
                {"code": code, "state": q["state"]}), status_code=302)

        @app.post("/token")
        async def token(request: Request) -> Response:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            grant_type, code = form.get("grant_type"), form.get("code", "")
            redirect_uri, code_verifier = form.get("redirect_uri"), form.get("code_verifier", "")
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            self.token_requests.append({"auth": request.headers.get("authorization", "")})
            if self.auth_method == "client_secret_basic":
                expected = "Basic " + base64.b64encode(
                    f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if request.headers.get("authorization") != expected:
                    return JSONResponse({"error": "invalid_client"}, status_code=401)
            elif (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            grant = self.grants.pop(code, None)
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
            if (grant is None or grant_type != "authorization_code"
                    or grant.redirect_uri != redirect_uri or grant.challenge != challenge):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                      "nonce": grant.nonce, "sub": "pairwise-" + grant.login[-4:],
                      self.claim: grant.login}
            id_token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key)
            return JSONResponse({"access_token": secrets.token_urlsafe(16),
                                 "token_type": "Bearer", "expires_in": 300,
                                 "id_token": id_token})

        return app

    def start(self) -> Provider:
        self._server, self._thread = serve_in_thread(self.app(), self.port)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
