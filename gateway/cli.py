"""``cadenza gateway`` and ``cadenza token create`` (entry point ``cadenza.cli: gateway``).

``cadenza gateway`` serves the web player, the API, ``/ws``, ``/audio`` and ``/metrics``
with uvicorn on ``CADENZA_GATEWAY_HOST:CADENZA_GATEWAY_PORT`` (``--port`` to run more
gateways side by side). ``cadenza token create USER`` prints a signed token for a
listener, valid for ``--ttl`` seconds (default ``CADENZA_TOKEN_TTL_S``).
"""

from __future__ import annotations

import time

import typer

from infra.logs import setup_logging
from infra.settings import get_settings

token_app = typer.Typer(help="Listener tokens (signed with CADENZA_TOKEN_SECRET).")


def gateway(
    port: int | None = typer.Option(None, "--port", help="Port (default CADENZA_GATEWAY_PORT)."),
    host: str | None = typer.Option(None, "--host", help="Bind address (default CADENZA_GATEWAY_HOST)."),
) -> None:
    """The gateway: web player at /, API, websockets (/ws), audio (/audio/ID), /metrics, /ops.

    Reads recommendations and trending windows from Kafka and pushes them to the
    listeners connected here; publishes the plays the player reports."""
    import uvicorn

    from gateway.app import create_app

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    if settings.token_secret.get_secret_value() == "change-me-in-production" and not settings.demo_signin:
        typer.secho(
            "warning: CADENZA_TOKEN_SECRET is the default; set a secret of your own in production",
            err=True,
            fg="yellow",
        )
    uvicorn.run(
        create_app(settings),
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        log_level=settings.log_level.lower(),
        ws_max_size=64 * 1024,
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
    try:
        token = tokens.issue(
            settings.token_secret.get_secret_value(), user, now=time.time(), ttl_s=ttl or settings.token_ttl_s
        )
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="USER") from None
    print(token)


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
    app.add_typer(token_app, name="token")
