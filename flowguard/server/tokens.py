"""Bearer tokens for the HTTP service: stored as SHA-256 hashes, each bound to one
organization and a set of scopes.

```yaml
tokens:
  - id: jobcenter-app            # a name for logs and the audit trail
    hash: sha256:9f86d08...      # `flowguard serve token` prints a token and this line
    organization: aalborg-kommune
    scopes: [check, consent:write, audit:read]
    actors: [case-worker]        # optional: the actors it may name in `on_behalf_of`
```

The file must be readable by its owner only (mode 0600, as `flowguard token new` writes it):
whoever can write it can grant themselves any scope.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from flowguard._loading import Collector
from flowguard._source import SourceError, load_documents
from flowguard.errors import Diagnostic, InputError
from flowguard.model import Id, Model

Scope = Literal["check", "consent:write", "consent:read", "audit:read", "admin"]
SCOPES: tuple[Scope, ...] = ("check", "consent:write", "consent:read", "audit:read", "admin")
TOKEN_PREFIX = "fgt_"


class TokenError(InputError):
    """The tokens file is missing or malformed."""


class Token(Model):
    id: Id
    hash: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
    organization: Id
    scopes: Annotated[tuple[Scope, ...], Field(min_length=1)]
    actors: tuple[Id, ...] | None = None


class TokensFile(Model):
    tokens: tuple[Token, ...] = ()


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and the hash to store (the token itself is shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


class TokenTable:
    def __init__(self, tokens: tuple[Token, ...]) -> None:
        self.tokens = tokens

    def authenticate(self, presented: str) -> Token | None:
        """The token whose hash matches, comparing every stored hash in constant time."""
        digest = token_hash(presented).encode()
        found = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.hash.encode()):
                found = token
        return found


def load_tokens(path: str | Path, organizations: set[str] | None = None,
                actors: Mapping[str, str] | None = None) -> TokenTable:
    """Read a tokens file; with `organizations`, each token's must exist in the policy, and
    with `actors` (actor id → organization), each actor a token names must belong to its
    organization."""
    out = Collector()
    check_private(Path(path))
    try:
        documents = load_documents(Path(path))
    except SourceError as exc:
        raise TokenError([exc.diagnostic]) from None
    if len(documents) != 1:
        raise TokenError([Diagnostic("a tokens file holds one document", str(path))])
    doc = documents[0]
    parsed = out.validate(doc, (), TokensFile, doc.data or {}, "tokens file")
    if parsed is None:
        raise TokenError(out.diagnostics)
    seen: set[str] = set()
    for index, token in enumerate(parsed.tokens):
        if token.id in seen or token.hash in {t.hash for t in parsed.tokens[:index]}:
            out.add(doc, ("tokens", index), f"token `{token.id}` is listed twice",
                    code="duplicate")
        seen.add(token.id)
        if organizations is not None and token.organization not in organizations:
            out.reference(doc, ("tokens", index, "organization"), token.organization,
                          organizations, "organization")
        if organizations is not None and token.actors and actors is not None:
            for position, actor in enumerate(token.actors):
                if actors.get(actor) != token.organization:
                    out.add(doc, ("tokens", index, "actors", position),
                            f"actor `{actor}` is not an actor of organization "
                            f"`{token.organization}`", code="unknown-reference")
    if out.has_errors:
        raise TokenError(out.diagnostics)
    return TokenTable(parsed.tokens)


def check_private(path: Path) -> None:
    """Refuse a tokens file that its group or others may read or write (like key files):
    whoever can change it can give themselves any scope."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # load_documents reports a missing or unreadable file
    if mode & 0o077:
        raise TokenError([Diagnostic(
            f"the tokens file may be read or changed by others (mode {oct(mode & 0o777)})",
            str(path), code="permissions", hint=f"chmod 600 {path}")])


def write_tokens(path: Path, text: str) -> None:
    """Write a tokens file with mode 0600 (replacing it atomically if it exists)."""
    import os

    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)
