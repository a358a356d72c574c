"""``POST /api/login``: sign in with an account's name and password.

Source: the browser's ``{"name": …, "password": …}`` (at most 16 KiB, :mod:`gateway.routes.params`)
and its address; the check itself is :mod:`gateway.signin`. Destinations: on success the
same answer and ``cadenza_token`` cookie as demo sign-in (HttpOnly, SameSite=Strict, Secure
when ``CADENZA_GATEWAY_HTTPS``) plus the account's role; otherwise a JSON error: 401 for a
wrong name or password (one message for both), 403 for a disabled account or a form posted
from another site, 429 with ``Retry-After`` while the name or the address is locked out,
404 when ``CADENZA_PASSWORD_SIGNIN`` is off, 503 when MongoDB cannot be reached.
"""

from __future__ import annotations

import math
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import tokens
from gateway.passwords import MAX_PASSWORD_CHARS
from gateway.routes.access import Guard, error, set_token_cookie
from gateway.routes.api import iso
from gateway.routes.params import json_body
from gateway.signin import Signin
from gateway.state import Gateway

WRONG: Final = "wrong name or password"


def routes(gw: Gateway, guard: Guard, signin: Signin) -> list[BaseRoute]:
    settings, secret = gw.settings, guard.secret

    async def login(request: Request) -> Response:
        if not settings.password_signin:
            return error(404, "password sign-in is off on this server (CADENZA_PASSWORD_SIGNIN=false)")
        guard.refuse_cross_site(request)
        body = await json_body(request)
        body = body if isinstance(body, dict) else {}
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not name:
            return error(422, "enter your name", field="name")
        if not isinstance(password, str) or not password:
            return error(422, "enter your password", field="password")
        try:
            tokens.check_user(name)
        except ValueError:
            gw.signins.count("bad_credentials")
            return error(401, WRONG)
        if len(password) > MAX_PASSWORD_CHARS:
            gw.signins.count("bad_credentials")
            return error(401, WRONG)
        address = request.client.host if request.client else "unknown"
        outcome = await signin.attempt(name, password, address)
        if outcome.result in ("locked", "rate"):
            wait = max(1, math.ceil(outcome.retry_after_s))
            minutes = max(1, math.ceil(wait / 60))
            what = "for this name" if outcome.result == "locked" else "from your address"
            return error(
                429,
                f"too many failed sign-ins {what}: try again in {minutes} minute{'s' if minutes > 1 else ''}",
                headers={"Retry-After": str(wait)},
                retry_after_s=wait,
            )
        if outcome.result == "disabled":
            return error(403, "this account is disabled: ask your operator")
        if outcome.result != "ok":
            return error(401, WRONG)
        now = gw.clock()
        token = tokens.issue(secret, name, now=now, ttl_s=settings.token_ttl_s)
        expires = tokens.verify(secret, token, now=now).expires
        response = JSONResponse(
            {"token": token, "user_id": name, "expires": iso(expires), "role": outcome.role}
        )
        set_token_cookie(response, token, settings.token_ttl_s, secure=settings.gateway_https)
        return response

    return [Route("/api/login", guard.open(login), methods=["POST"])]
