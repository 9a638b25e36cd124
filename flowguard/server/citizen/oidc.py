"""OpenID Connect sign-in for the citizen pages: the authorization code flow with PKCE (S256).

Authlib builds the authorization request (PKCE challenge, state, nonce); joserfc (Authlib's
JOSE library) verifies the ID token's signature against the provider's JWKS and checks
`iss`, `aud`, `exp`, `iat` and `nonce`. Nothing here parses or signs JOSE by hand.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.common.urls import add_params_to_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]
DISCOVERY_TTL = 3600.0


class SignInError(Exception):
    """The sign-in did not complete; the message is safe to log (no token, no claim)."""


@dataclass
class PendingSignIn:
    """What the browser carries (signed) between the redirect and the callback."""

    state: str
    nonce: str
    verifier: str


@dataclass
class OidcClient:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    claim: str = "sub"
    timeout: float = 10.0
    _discovery: dict[str, Any] | None = None
    _keys: KeySet | None = None
    _fetched_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def discovery(self, refresh: bool = False) -> dict[str, Any]:
        async with self._lock:
            if (self._discovery is None or refresh
                    or time.monotonic() - self._fetched_at > DISCOVERY_TTL):
                url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                async with httpx.AsyncClient(timeout=self.timeout) as http:
                    document = (await http.get(url)).raise_for_status().json()
                    if document.get("issuer") != self.issuer:
                        raise SignInError("the provider's discovery document names another "
                                          "issuer")
                    jwks = (await http.get(document["jwks_uri"])).raise_for_status().json()
                self._discovery = document
                self._keys = KeySet.import_key_set(jwks)
                self._fetched_at = time.monotonic()
            return self._discovery

    async def start(self) -> tuple[str, PendingSignIn]:
        """The provider's authorization URL to redirect to, and what to remember."""
        try:
            document = await self.discovery()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise SignInError(f"the sign-in provider cannot be reached "
                              f"({type(exc).__name__})") from None
        pending = PendingSignIn(generate_token(32), generate_token(32), generate_token(64))
        url = add_params_to_uri(document["authorization_endpoint"], [
            ("response_type", "code"), ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri), ("scope", "openid"),
            ("state", pending.state), ("nonce", pending.nonce),
            ("code_challenge", create_s256_code_challenge(pending.verifier)),
            ("code_challenge_method", "S256")])
        return url, pending

    async def finish(self, code: str, pending: PendingSignIn) -> str:
        """Exchange the code, verify the ID token, and return the configured claim's value."""
        document = await self.discovery()
        data = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": pending.verifier}
        methods = document.get("token_endpoint_auth_methods_supported",
                               ["client_secret_basic"])
        auth: httpx.Auth | None = None
        if "client_secret_basic" in methods:
            auth = httpx.BasicAuth(self.client_id, self.client_secret)
        elif "client_secret_post" in methods:
            data |= {"client_id": self.client_id, "client_secret": self.client_secret}
        else:
            raise SignInError("the provider offers neither client_secret_basic nor "
                              "client_secret_post")
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                answer = await (http.post(document["token_endpoint"], data=data) if auth is None
                                else http.post(document["token_endpoint"], data=data,
                                               auth=auth))
            if answer.status_code != 200:
                raise SignInError(f"the provider refused the code (HTTP {answer.status_code})")
            id_token = answer.json().get("id_token")
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInError(f"the token request failed ({type(exc).__name__})") from None
        if not isinstance(id_token, str):
            raise SignInError("the provider sent no ID token")
        claims = self._verify(id_token, pending.nonce)
        value = claims.get(self.claim)
        if not isinstance(value, str) or not value:
            raise SignInError(f"the ID token has no `{self.claim}` claim")
        return value

    def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        assert self._keys is not None
        try:
            token = jwt.decode(id_token, self._keys, algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                leeway=60, iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                nonce={"essential": True, "value": nonce},
                exp={"essential": True}, iat={"essential": True})
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise SignInError(f"the ID token is not valid ({type(exc).__name__})") from None
        claims: dict[str, Any] = token.claims
        return claims
