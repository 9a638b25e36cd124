"""The HTTP check service (`flowguard serve`)."""

from flowguard.server.app import ServerConfig, Service, create_app
from flowguard.server.tokens import Token, TokenTable, load_tokens, new_token

__all__ = ["ServerConfig", "Service", "Token", "TokenTable", "create_app", "load_tokens",
           "new_token"]
