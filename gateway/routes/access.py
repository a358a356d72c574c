"""Who a request speaks for, and the JSON errors routes answer with.

Source: the token of an HTTP request or websocket (``Authorization: Bearer``, the
``cadenza_token`` cookie set by demo sign-in, or ``?token=``), checked against the
gateway's secret at the gateway's clock (:mod:`gateway.tokens`). Destinations: the
listener's :class:`gateway.tokens.Claims` for the routes of :mod:`gateway.routes`; a
JSON error (401 for a bad token, 404 unknown track, 503 MongoDB unreachable) otherwise,
and each refused token counted in :class:`gateway.metrics.GatewayMetrics`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from gateway import tokens
from gateway.errors import AuthError, NotFoundError, UnavailableError
from gateway.state import Gateway

COOKIE: Final = "cadenza_token"

Handler = Callable[[Request, tokens.Claims], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def token_of(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return conn.cookies.get(COOKIE) or conn.query_params.get("token")


class Guard:
    """The listener behind a request or websocket, verified with the gateway's token secret."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.secret = gw.settings.token_secret.get_secret_value()

    def claims(self, conn: HTTPConnection) -> tokens.Claims:
        try:
            return tokens.verify(self.secret, token_of(conn), now=self.gw.clock())
        except AuthError:
            self.gw.metrics.auth_failures += 1
            raise

    def authed(self, handler: Handler) -> Endpoint:
        """``handler`` behind a token check (401), its 404s and 503s answered as JSON errors."""

        async def endpoint(request: Request) -> Response:
            try:
                who = self.claims(request)
            except AuthError as err:
                return error(401, str(err))
            try:
                return await handler(request, who)
            except NotFoundError as err:
                return error(404, str(err))
            except UnavailableError as err:
                return error(503, str(err))

        return endpoint
