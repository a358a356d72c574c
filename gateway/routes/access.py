"""Who a request speaks for, and the JSON errors routes answer with.

Source: the token of an HTTP request or websocket, in this order: ``Authorization:
Bearer``, a websocket subprotocol ``cadenza.token.<token>`` (browsers cannot set
headers on a websocket), the ``cadenza_token`` cookie (set by demo sign-in and by
``POST /api/session``, which is how ``<audio>`` is authorised) and, unless
``CADENZA_GATEWAY_QUERY_TOKEN`` is off, ``?token=`` for older clients (redacted from
logs by :mod:`infra.logs`). It is checked against the gateway's secret at the gateway's
clock (:mod:`gateway.tokens`), then against the standing of the listener's account
(:mod:`gateway.revocations`: disabled, deleted, tokens revoked). A request authenticated by
the cookie alone that changes state (POST, PUT, PATCH, DELETE), and a websocket opened with
it, must come from the gateway's own pages: its ``Origin`` (else ``Referer``) names the
request's ``Host`` or one of ``CADENZA_GATEWAY_ALLOWED_ORIGINS``, else 403 (websocket close
4403) and nothing is done; sign-in forms refuse an ``Origin`` of another site the same way.
Destinations: the listener's
:class:`gateway.tokens.Claims` for the routes of :mod:`gateway.routes`; a JSON error
``{"error": …, "field"?: …}`` otherwise (401 bad token, 403 cross-site, 400 unreadable body, 404
unknown track, 413 body too large, 429 over a rate, 503 MongoDB unreachable), each
refused token and each limit hit counted in :class:`gateway.metrics.GatewayMetrics`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from gateway import tokens
from gateway.errors import (
    AuthError,
    ForbiddenError,
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
#: Methods that change state: with the cookie alone, they must come from the gateway's pages.
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CROSS_SITE: Final = (
    "refused: this request carries the session cookie but comes from another site (its Origin "
    "or Referer is not this gateway's); send the token as 'Authorization: Bearer …' instead"
)

Handler = Callable[[Request, tokens.Claims], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def token_source(conn: HTTPConnection, *, query: bool = True) -> tuple[str | None, str]:
    """The token ``conn`` carries and where it was (``bearer``, ``protocol``, ``cookie``,
    ``query``; ``none``), in the order of the module's docstring."""
    header = conn.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), "bearer"
    if conn.scope["type"] == "websocket":
        for offered in conn.scope.get("subprotocols") or ():
            if isinstance(offered, str) and offered.startswith(TOKEN_PROTOCOL):
                return offered[len(TOKEN_PROTOCOL) :], "protocol"
    cookie = conn.cookies.get(COOKIE)
    if cookie:
        return cookie, "cookie"
    found = conn.query_params.get("token") if query else None
    return found, "query" if found else "none"


def token_of(conn: HTTPConnection, *, query: bool = True) -> str | None:
    """The token ``conn`` carries (see the module's docstring for where, in which order)."""
    return token_source(conn, query=query)[0]


def origin_of(conn: HTTPConnection) -> tuple[str, str] | None:
    """(scheme, host[:port]) of the page that sent ``conn``: its ``Origin``, else its
    ``Referer``; None when it names none (``Origin: null`` names none)."""
    for header in ("origin", "referer"):
        value = conn.headers.get(header)
        if value is None:
            continue
        try:
            parts = urlsplit(value.strip())
        except ValueError:  # e.g. a broken IPv6 literal
            return None
        if parts.scheme and parts.netloc:
            return parts.scheme.lower(), parts.netloc.lower()
        return None  # "null", or something that is not a URL
    return None


def same_site(conn: HTTPConnection, allowed: Iterable[str] = ()) -> bool | None:
    """Whether ``conn`` comes from the gateway's own pages: True when its Origin (or Referer)
    names the request's Host or an ``allowed`` origin, False when it names another, None when
    it names none."""
    found = origin_of(conn)
    if found is None:
        return None
    scheme, netloc = found
    if netloc == conn.headers.get("host", "").strip().lower():
        return True
    return f"{scheme}://{netloc}" in {a.strip().rstrip("/").lower() for a in allowed}


def set_token_cookie(response: Response, token: str, max_age: int, *, secure: bool) -> None:
    """The ``cadenza_token`` cookie: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    response.set_cookie(COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure)


def refusal(err: GatewayError, metrics: GatewayMetrics) -> Response | None:
    """The JSON answer to an error a route raised on purpose (counting limits hit); None if unknown."""
    if isinstance(err, AuthError):
        return error(401, str(err))
    if isinstance(err, ForbiddenError):
        return error(403, str(err))
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
        self.allowed_origins = tuple(gw.settings.gateway_allowed_origins)

    def token(self, conn: HTTPConnection) -> str | None:
        return token_of(conn, query=self.query)

    def claims(self, conn: HTTPConnection) -> tokens.Claims:
        """The listener of ``conn``: :class:`AuthError` for a bad or revoked token,
        :class:`ForbiddenError` for the cookie used from another site."""
        token, source = token_source(conn, query=self.query)
        try:
            claims = tokens.verify(self.secret, token, now=self.gw.clock())
            refused = self.gw.revocations.refusal(claims)
            if refused is not None:
                raise AuthError(refused)
        except AuthError:
            self.gw.metrics.auth_failures += 1
            raise
        changes = conn.scope["type"] == "websocket" or conn.scope["method"] in UNSAFE_METHODS
        if source == "cookie" and changes and not same_site(conn, self.allowed_origins):
            self.gw.metrics.auth_failures += 1
            raise ForbiddenError(CROSS_SITE)
        return claims

    def refuse_cross_site(self, conn: HTTPConnection) -> None:
        """:class:`ForbiddenError` when ``conn`` says it comes from another site's page (sign-in
        forms: a page elsewhere must not sign a browser in under an account of its choosing)."""
        if same_site(conn, self.allowed_origins) is False:
            raise ForbiddenError("refused: this sign-in comes from another site's page")

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
