"""Listener tokens: signed, expiring, and the only source of a listener's identity.

Sources: ``cadenza token create USER`` and the demo sign-in page (both call
:func:`issue`), the secret ``CADENZA_TOKEN_SECRET``. Destination: the browser, which
sends the token back as ``Authorization: Bearer …``, as the ``cadenza_token`` cookie
(for ``<audio>``, which cannot set headers) or, on ``/ws``, as the subprotocol
``cadenza.token.<token>`` (see :mod:`gateway.routes.access`; ``?token=`` only for older
clients, and redacted from logs); every request is checked with :func:`verify`.

Format: ``base64url(payload JSON) "." base64url(HMAC-SHA256(secret, payload))`` with
payload ``{"sub": user, "iat": issued, "exp": expires, "v": 1}`` (seconds since the
epoch). Pure functions: the clock is a parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Final

from gateway.errors import AuthError

VERSION: Final = 1
MAX_TOKEN_CHARS: Final = 1024
#: The pattern of ``schemas.events.UserId``.
USER_RE: Final = re.compile(r"^[A-Za-z0-9_.@\-]{1,128}$")


@dataclass(frozen=True)
class Claims:
    user_id: str
    issued: int
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest())


def check_user(user_id: str) -> str:
    """``user_id`` if it is 1-128 letters, digits, ``_ . @ -``; else ValueError."""
    if not USER_RE.fullmatch(user_id):
        raise ValueError("a user name is 1-128 letters, digits, _ . @ or -")
    return user_id


def issue(secret: str, user_id: str, *, now: float, ttl_s: int) -> str:
    """A token for ``user_id`` valid from ``now`` for ``ttl_s`` seconds."""
    if ttl_s <= 0:
        raise ValueError("a token's lifetime must be positive")
    claims = {"sub": check_user(user_id), "iat": int(now), "exp": int(now) + int(ttl_s), "v": VERSION}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{payload}.{_sign(secret.encode('utf-8'), payload)}"


def verify(secret: str, token: str | None, *, now: float) -> Claims:
    """The token's claims; :class:`AuthError` if it is missing, malformed, forged or expired."""
    if not token:
        raise AuthError("no token: sign in, or pass one from `cadenza token create USER`")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise AuthError("malformed token")
    payload, signature = token.split(".")
    if not (payload.isascii() and signature.isascii()):
        raise AuthError("malformed token")
    expected = _sign(secret.encode("utf-8"), payload)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise AuthError("invalid token signature")
    try:
        claims = json.loads(_unb64(payload))
        user, issued, expires = claims["sub"], int(claims["iat"]), int(claims["exp"])
        if claims.get("v") != VERSION or not isinstance(user, str):
            raise ValueError("unknown token version")
        check_user(user)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise AuthError("malformed token") from None
    if now >= expires:
        raise AuthError("token expired: sign in again")
    return Claims(user, issued, expires)
