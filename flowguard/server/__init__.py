"""The HTTP check service (`flowguard serve`). `flowguard.server.app` imports FastAPI, so it
is loaded only when the service is built (the CLI starts faster without it)."""

from typing import TYPE_CHECKING, Any

from flowguard.server.tokens import Token, TokenTable, load_tokens, new_token

if TYPE_CHECKING:
    from flowguard.server.app import ServerConfig, Service, create_app

__all__ = ["ServerConfig", "Service", "Token", "TokenTable", "create_app", "load_tokens",
           "new_token"]


def __getattr__(name: str) -> Any:
    if name in ("ServerConfig", "Service", "create_app"):
        from flowguard.server import app

        return getattr(app, name)
    raise AttributeError(name)
