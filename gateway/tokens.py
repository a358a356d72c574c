"""The gateway's check of listener tokens: every request's token, through :func:`verify`.

Source: the token a request carries (see :mod:`gateway.routes.access`: ``Authorization:
Bearer …``, the ``cadenza_token`` cookie, the ``/ws`` subprotocol ``cadenza.token.<token>``;
``?token=`` only for older clients, and redacted from logs) and the secret
``CADENZA_TOKEN_SECRET``. Destination: the listener's :class:`Claims`, or :class:`AuthError`
(HTTP 401, websocket close 4401). The format, :func:`issue` and :func:`check_user` are
:mod:`schemas.tokens`, shared with the clients that sign tokens (``cadenza token create``,
the simulator); they are named here too, for the gateway's own callers.
"""

from __future__ import annotations

from gateway.errors import AuthError
from schemas.errors import SchemaError
from schemas.tokens import Claims, check_user, decode, issue

__all__ = ["Claims", "check_user", "issue", "verify"]


def verify(secret: str, token: str | None, *, now: float) -> Claims:
    """The token's claims; :class:`AuthError` if it is missing, malformed, forged or expired."""
    if not token:
        raise AuthError("no token: sign in, or pass one from `cadenza token create USER`")
    try:
        claims = decode(secret, token)
    except SchemaError as err:
        raise AuthError(err.reason) from None
    if now >= claims.expires:
        raise AuthError("token expired: sign in again")
    return claims
