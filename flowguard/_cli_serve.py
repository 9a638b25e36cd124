"""`flowguard serve` and `flowguard token`: the HTTP service from the command line."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import click
import yaml

from flowguard._cli_citizen import citizen_options, citizen_settings
from flowguard._cli_common import fail_input, out
from flowguard.errors import Diagnostic, InputError
from flowguard.server.tokens import SCOPES, load_tokens, new_token, write_tokens


@click.command("serve")
@click.option("--policy", "-p", "policy", required=True, envvar="FLOWGUARD_POLICY",
              help="Policy directory or file.")
@click.option("--registry", "-r", "registry", envvar="FLOWGUARD_REGISTRY",
              help="Registry database URL (or a read-only file).")
@click.option("--audit", "audit", envvar="FLOWGUARD_AUDIT", help="Audit log URL.")
@click.option("--log-key", envvar="FLOWGUARD_LOG_KEY", help="The audit log's signing key.")
@click.option("--pseudonym-key", envvar="FLOWGUARD_PSEUDONYM_KEY",
              help="The key that pseudonymises subjects in the audit log.")
@click.option("--tokens", required=True, envvar="FLOWGUARD_TOKENS",
              help="Tokens file (hashes, organizations, scopes).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--batch-limit", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--max-body", default=1024 * 1024, show_default=True, type=click.IntRange(1024),
              help="Largest request body in bytes.")
@click.option("--checkpoint-every", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--checkpoint-seconds", default=60.0, show_default=True, type=float)
@click.option("--witness", "witnesses", multiple=True,
              help="Submit every checkpoint to this witness: URL=VKEY (repeatable).")
@click.option("--witness-quorum", default=0, show_default=True, type=click.IntRange(0),
              help="Serve as the log's checkpoint the latest one cosigned by this many "
                   "of the --witness keys.")
@click.option("--docs", is_flag=True, default=False,
              help="Serve the interactive API page at /docs (it loads its script from a CDN).")
@click.option("--replay-window", default=600.0, show_default=True,
              type=click.FloatRange(1, min_open=False),
              help="Seconds a request id stays refused for its token.")
@click.option("--max-connections", default=2048, show_default=True,
              type=click.IntRange(16), help="Concurrent connections per worker.")
@click.option("--request-timeout", default=30.0, show_default=True,
              type=click.FloatRange(0.1), help="Seconds for a request's headers and body.")
@click.option("--keep-alive-timeout", default=5.0, show_default=True,
              type=click.FloatRange(0.1), help="Seconds an idle connection stays open.")
@click.option("--max-header-bytes", default=64 * 1024, show_default=True,
              type=click.IntRange(1024), help="Largest request line and headers.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="Serve HTTPS with this certificate chain (PEM); needs --tls-key.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False),
              help="The private key of --tls-cert (PEM).")
@citizen_options
def serve(policy: str, registry: str | None, audit: str | None, log_key: str | None,
          pseudonym_key: str | None, tokens: str, host: str, port: int, workers: int,
          batch_limit: int, max_body: int, checkpoint_every: int,
          checkpoint_seconds: float, replay_window: float, max_connections: int,
          request_timeout: float, keep_alive_timeout: float, max_header_bytes: int,
          tls_cert: str | None, tls_key: str | None, witnesses: Sequence[str] = (),
          witness_quorum: int = 0, docs: bool = False, **citizen: str | None) -> None:
    """Serve the check API over HTTP (OpenAPI at /openapi.json; /docs with --docs)."""
    import uvicorn

    if workers > 1:  # every worker's metrics, summed whichever answers a scrape
        import tempfile  # set before prometheus_client is imported (server/metrics.py)

        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                              tempfile.mkdtemp(prefix="flowguard-metrics-"))
    from flowguard.server.app import CONFIG_ENV, ServerConfig, create_app
    from flowguard.server.limits import serve_problem, uvicorn_limits

    config = ServerConfig(policy=policy, registry=registry, audit=audit, log_key=log_key,
                          pseudonym_key=pseudonym_key, tokens=tokens, batch_limit=batch_limit,
                          max_body_bytes=max_body, checkpoint_every=checkpoint_every,
                          checkpoint_seconds=checkpoint_seconds,
                          witnesses=tuple(witnesses), witness_quorum=witness_quorum, docs=docs,
                          replay_window_seconds=replay_window, max_connections=max_connections,
                          request_timeout=request_timeout,
                          keep_alive_timeout=keep_alive_timeout,
                          max_header_bytes=max_header_bytes,
                          citizen=citizen_settings(citizen, host, port))
    problem = serve_problem(config, workers, tls_cert, tls_key)
    if problem is not None:
        fail_input(InputError([problem]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # request lines could carry ids; flowguard logs what it needs itself
    options = {"host": host, "port": port, "access_log": False, "log_level": "warning",
               "timeout_graceful_shutdown": 30, **uvicorn_limits(config, tls_cert, tls_key)}
    try:
        if workers == 1:
            uvicorn.run(create_app(config), **options)
        else:
            create_app(config)  # fail here, once, if anything cannot be loaded
            os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
            uvicorn.run("flowguard.server.app:app_from_env", factory=True, workers=workers,
                        **options)
    except InputError as exc:
        fail_input(exc)


@click.group("token")
def token() -> None:
    """Manage the HTTP service's bearer tokens."""


@token.command("new")
@click.option("--file", "file", required=True, help="Tokens file to add the token to.")
@click.option("--id", "token_id", required=True, help="A name for logs and the audit trail.")
@click.option("--organization", required=True, help="The organization the token acts for.")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(list(SCOPES)), help="Repeat for several.")
def token_new(file: str, token_id: str, organization: str, scopes: Sequence[str]) -> None:
    """Create a token: print it once, store only its hash."""
    path = Path(file)
    try:
        existing = load_tokens(path).tokens if path.exists() else ()
        if any(t.id == token_id for t in existing):
            raise InputError([Diagnostic(f"token `{token_id}` exists already", file,
                                         code="duplicate")])
    except InputError as exc:
        fail_input(exc)
    secret, digest = new_token()
    entries = [t.model_dump(mode="json") for t in existing]
    entries.append({"id": token_id, "hash": digest, "organization": organization,
                    "scopes": list(dict.fromkeys(scopes))})
    write_tokens(path, yaml.safe_dump({"tokens": entries}, sort_keys=False))
    out.print(secret, markup=False)
