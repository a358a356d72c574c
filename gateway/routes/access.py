"""Who a request speaks for, and the JSON errors routes answer with.

Source: the token of an HTTP request or websocket, in this order: ``Authorization:
Bearer``, a websocket subprotocol ``cadenza.token.<token>`` (browsers cannot set
headers on a websocket), the ``cadenza_token`` cookie (set by demo sign-in and by
``POST /api/session``, which is how ``<audio>`` is authorised) and, unless
``CADENZA_GATEWAY_QUERY_TOKEN`` is off, ``?token=`` for older clients (redacted from
logs by :mod:`infra.logs`). It is checked against the gateway's secret at the gateway's
clock (:mod:`gateway.tokens`). Destinations: the listener's
:class:`gateway.tokens.Claims` for the routes of :mod:`gateway.routes`; a JSON error
``{"error": …, "field"?: …}`` otherwise (401 bad token, 400 unreadable body, 404
unknown track, 413 body too large, 429 over a rate, 503 MongoDB unreachable), each
refused token and each limit hit counted in :class:`gateway.metrics.GatewayMetrics`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from gateway import tokens
from gateway.errors import (
    AuthError,
    GatewayError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UnavailableError,
    UnreadableBodyError,
)
from gateway.metrics import GatewayMetrics
from gateway.state import Gateway

COOKIE: Final = "cadenza_token"
#: The subprotocol the gateway speaks on ``/ws``; a client offers it with its token's.
WS_PROTOCOL: Final = "cadenza.v1"
#: Prefix of the subprotocol entry that carries the token (never echoed back).
TOKEN_PROTOCOL: Final = "cadenza.token."

Handler = Callable[[Request, tokens.Claims], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def token_of(conn: HTTPConnection, *, query: bool = True) -> str | None:
    """The token ``conn`` carries (see the module's docstring for where, in which order)."""
    header = conn.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if conn.scope["type"] == "websocket":
        for offered in conn.scope.get("subprotocols") or ():
            if isinstance(offered, str) and offered.startswith(TOKEN_PROTOCOL):
                return offered[len(TOKEN_PROTOCOL) :]
    cookie = conn.cookies.get(COOKIE)
    if cookie:
        return cookie
    return conn.query_params.get("token") if query else None


def refusal(err: GatewayError, metrics: GatewayMetrics) -> Response | None:
    """The JSON answer to an error a route raised on purpose (counting limits hit); None if unknown."""
    if isinstance(err, AuthError):
        return error(401, str(err))
    if isinstance(err, NotFoundError):
        return error(404, str(err))
    if isinstance(err, UnavailableError):
        return error(503, str(err))
    if isinstance(err, UnreadableBodyError):
        metrics.refused["body_too_deep"] += 1
        return error(400, str(err), field="body")
    if isinstance(err, PayloadTooLargeError):
        # The rest of the body is not read: close the connection rather than drain it.
        metrics.refused["body_too_large"] += 1
        return error(413, str(err), field="body", headers={"Connection": "close"})
    if isinstance(err, RateLimitedError):
        retry = str(max(1, math.ceil(err.retry_after_s)))
        return error(429, str(err), headers={"Retry-After": retry})
    return None


class Guard:
    """The listener behind a request or websocket, verified with the gateway's token secret."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.secret = gw.settings.token_secret.get_secret_value()
        self.query = gw.settings.gateway_query_token

    def token(self, conn: HTTPConnection) -> str | None:
        return token_of(conn, query=self.query)

    def claims(self, conn: HTTPConnection) -> tokens.Claims:
        try:
            return tokens.verify(self.secret, self.token(conn), now=self.gw.clock())
        except AuthError:
            self.gw.metrics.auth_failures += 1
            raise

    def open(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` (no token needed) with its deliberate errors answered as JSON."""
        metrics = self.gw.metrics

        async def answered(request: Request) -> Response:
            try:
                return await endpoint(request)
            except GatewayError as err:
                response = refusal(err, metrics)
                if response is None:
                    raise
                return response

        return answered

    def authed(self, handler: Handler) -> Endpoint:
        """``handler`` behind a token check (401), its deliberate errors answered as JSON."""

        async def endpoint(request: Request) -> Response:
            who = self.claims(request)
            return await handler(request, who)

        return self.open(endpoint)
