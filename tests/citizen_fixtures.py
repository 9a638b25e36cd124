"""Shared set-up of the citizen page tests: the Aalborg Aktiv registry and audit log, a test
OIDC provider, a server with the citizen pages, and logins linked to citizens."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import httpx

from flowguard.audit.entries import load_pseudonym_key, write_secret
from flowguard.server.app import ServerConfig, create_app
from flowguard.store import open_store
from flowguard.store.logins import link_login

from .oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, serve_in_thread
from .test_server import Served, Setup, free_port, make_setup


class PortServed(Served):
    """`Served` on a port chosen in advance (the redirect URI names it)."""

    def __init__(self, config: ServerConfig, port: int) -> None:
        self.app = create_app(config)
        self.port = port
        self.server, self.thread = serve_in_thread(self.app, port)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

# fictional national ids, as a provider would assert them in the ID token's claim
LOGINS = {"citizen-0042": "0205911234", "citizen-0107": "2311781235",
          "person-anne": "0101701236", "person-bente": "0202751237",
          "citizen-0609": "0303881238", "citizen-0512": "0112951240"}
UNLINKED = "3112991239"


@dataclass
class Citizen:
    setup: Setup
    provider: Provider
    served: Served

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.served.port}"

    def stop(self) -> None:
        self.served.stop()
        self.provider.stop()


def start_citizen(folder: Path, auth_method: str = "client_secret_basic",
                  link: bool = True, prepare: Callable[[Setup], None] | None = None,
                  **settings: object) -> Citizen:
    setup = make_setup(folder)
    if prepare is not None:  # change the policy or tokens before the server starts
        prepare(setup)
    provider = Provider(free_port(), auth_method=auth_method).start()
    secret = folder / "client.secret"
    write_secret(secret, CLIENT_SECRET + "\n")
    if link:
        keyed = load_pseudonym_key(setup.pseudonym_key)
        with open_store(setup.registry) as store:
            for person, value in LOGINS.items():
                link_login(store, person, keyed.login(value), by="test")
    port = free_port()
    config = setup.config(citizen={
        "issuer": provider.issuer, "client_id": CLIENT_ID,
        "client_secret_file": str(secret), "public_url": f"http://127.0.0.1:{port}",
        "contact": "Jobcenter Aalborg, 99 31 31 31", **settings})
    served = PortServed(config, port)
    return Citizen(setup, provider, served)


class Browser:
    """A cookie-keeping HTTP client (httpx's jar keeps `Secure` cookies off plain http,
    as it should; browsers treat loopback as secure, so this client does too)."""

    def __init__(self, citizen: Citizen, language: str = "en") -> None:
        self.citizen = citizen
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []
        self.http = httpx.Client(timeout=30, headers={"Accept-Language": language})

    def _keep(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            self.set_cookies.append(header)
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def _cookie_header(self, url: str) -> dict[str, str]:
        if not url.startswith(self.citizen.base) or not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def get(self, url: str, **kwargs: object) -> httpx.Response:
        url = url if url.startswith("http") else self.citizen.base + url
        response = self.http.get(url, headers=self._cookie_header(url), **kwargs)  # type: ignore[arg-type]
        self._keep(response)
        return response

    def post(self, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        url = url if url.startswith("http") else self.citizen.base + url
        response = self.http.post(url, data=data or {}, headers=self._cookie_header(url))
        self._keep(response)
        return response

    def sign_in(self, login: str) -> httpx.Response:
        self.citizen.provider.login = login
        response = self.get("/me/login")
        assert response.status_code == 303, response.text
        to_provider = self.get(response.headers["location"])
        assert to_provider.status_code == 302, to_provider.text
        back = self.get(to_provider.headers["location"])
        assert back.status_code == 303, back.text
        return self.get(back.headers["location"])

    def csrf(self, page: httpx.Response) -> str:
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert found is not None
        return found.group(1)

    def close(self) -> None:
        self.http.close()
