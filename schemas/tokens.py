"""Listener tokens: signed, expiring, and the only source of a listener's identity.

The token format, shared by whoever signs tokens and the gateway that checks them:
``cadenza token create USER``, the gateway's demo sign-in page and the clients that stand
in for listeners (the simulator, the benches) call :func:`issue` with the secret
``CADENZA_TOKEN_SECRET``; the gateway reads every token it is sent with :func:`decode`
(through :func:`gateway.tokens.verify`, which adds the expiry and turns a refusal into HTTP
401 or websocket close 4401). A browser sends the token back as ``Authorization: Bearer
…``, as the ``cadenza_token`` cookie (for ``<audio>``, which cannot set headers) or, on
``/ws``, as the subprotocol ``cadenza.token.<token>``.

Format: ``base64url(payload JSON) "." base64url(HMAC-SHA256(secret, payload))`` with
payload ``{"sub": user, "iat": issued, "iat_ms": issued in milliseconds, "exp": expires, "v": 1}``
(seconds since the epoch). ``iat_ms`` came later and is optional: a token without it was
issued at ``iat``, to the second (the gateway compares issue times with an account's
``tokens_valid_after``, :mod:`gateway.revocations`, which needs better than a second).
Pure functions, standard library only: the clock is a parameter.
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

from schemas.errors import SchemaError

VERSION: Final = 1
MAX_TOKEN_CHARS: Final = 1024
#: The pattern of ``schemas.events.UserId``.
USER_RE: Final = re.compile(r"^[A-Za-z0-9_.@\-]{1,128}$")


@dataclass(frozen=True)
class Claims:
    user_id: str
    issued: int
    expires: int
    #: Issue time in milliseconds (None for tokens signed before it was added).
    issued_ms: int | None = None

    @property
    def issued_at(self) -> float:
        """Issue time in seconds, to the millisecond when the token says so."""
        return self.issued_ms / 1000 if self.issued_ms is not None else float(self.issued)


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
    claims = {
        "sub": check_user(user_id),
        "iat": int(now),
        "iat_ms": int(now * 1000),
        "exp": int(now) + int(ttl_s),
        "v": VERSION,
    }
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{payload}.{_sign(secret.encode('utf-8'), payload)}"


def decode(secret: str, token: str) -> Claims:
    """The claims of a token signed with ``secret`` (its expiry is not checked here);
    :class:`SchemaError` (``reason``: malformed, or an invalid signature) otherwise."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise SchemaError("malformed token")
    payload, signature = token.split(".")
    if not (payload.isascii() and signature.isascii()):
        raise SchemaError("malformed token")
    expected = _sign(secret.encode("utf-8"), payload)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise SchemaError("invalid token signature")
    try:
        claims = json.loads(_unb64(payload))
        user, issued, expires = claims["sub"], int(claims["iat"]), int(claims["exp"])
        if claims.get("v") != VERSION or not isinstance(user, str):
            raise ValueError("unknown token version")
        check_user(user)
        precise = claims.get("iat_ms")
        issued_ms = None if precise is None else int(precise)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise SchemaError("malformed token") from None
    return Claims(user, issued, expires, issued_ms)
