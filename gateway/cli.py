"""``cadenza gateway``, ``cadenza token create`` and ``cadenza user …`` (entry point
``cadenza.cli: gateway``; the accounts commands are :mod:`gateway.user_cli`).

``cadenza gateway`` serves the web player, the API, ``/ws``, ``/audio`` and ``/metrics``
with uvicorn on ``CADENZA_GATEWAY_HOST:CADENZA_GATEWAY_PORT`` (``--port`` to run more
gateways side by side). It refuses to start (:func:`infra.settings.gateway_refusal`)
without a strong ``CADENZA_TOKEN_SECRET`` unless it is a demo gateway on loopback, and
never serves demo sign-in on another address. ``cadenza token create USER`` prints a
signed token for a listener, valid for ``--ttl`` seconds (default ``CADENZA_TOKEN_TTL_S``).
"""

from __future__ import annotations

import time

import typer

from infra.errors import ConfigError
from infra.logs import setup_logging
from infra.settings import gateway_refusal, get_settings

token_app = typer.Typer(help="Listener tokens (signed with CADENZA_TOKEN_SECRET).")


def gateway(
    port: int | None = typer.Option(None, "--port", help="Port (default CADENZA_GATEWAY_PORT)."),
    host: str | None = typer.Option(None, "--host", help="Bind address (default CADENZA_GATEWAY_HOST)."),
) -> None:
    """The gateway: web player at /, API, websockets (/ws), audio (/audio/ID), /metrics, /ops.

    Reads recommendations and trending windows from Kafka and pushes them to the
    listeners connected here; publishes the plays the player reports."""
    settings = get_settings()
    bind = host or settings.gateway_host
    refusal = gateway_refusal(settings.token_secret.get_secret_value(), bind, settings.demo_signin)
    if refusal is not None:
        raise ConfigError(f"the gateway will not start: {refusal}")

    import uvicorn

    from gateway.app import create_app

    setup_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=bind,
        port=port or settings.gateway_port,
        log_level=settings.log_level.lower(),
        loop=settings.event_loop,
        http="httptools",  # C parser: a fraction of h11's cost per request
        ws_max_size=64 * 1024,
        ws_per_message_deflate=False,  # lists are small; compression would double memory per socket
        ws_ping_interval=None,  # the gateway sends its own pings, answered by the player
        proxy_headers=False,
    )


@token_app.command("create")
def token_create(
    user: str = typer.Argument(..., help="Listener id: 1-128 letters, digits, _ . @ or -."),
    ttl: int | None = typer.Option(
        None, "--ttl", min=1, help="Lifetime in seconds (default CADENZA_TOKEN_TTL_S)."
    ),
) -> None:
    """Print a signed token for USER (paste it in the player's sign-in screen)."""
    from gateway import tokens

    settings = get_settings()
    refusal = gateway_refusal(
        settings.token_secret.get_secret_value(), settings.gateway_host, settings.demo_signin
    )
    if refusal is not None:
        raise ConfigError(f"no token signed: {refusal}")
    try:
        token = tokens.issue(
            settings.token_secret.get_secret_value(), user, now=time.time(), ttl_s=ttl or settings.token_ttl_s
        )
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="USER") from None
    print(token)


def register(app: typer.Typer) -> None:
    from gateway.user_cli import user_app

    app.command("gateway")(gateway)
    app.add_typer(token_app, name="token")
    app.add_typer(user_app, name="user")
