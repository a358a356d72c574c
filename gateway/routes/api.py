"""The listener's HTTP API: demo sign-in, session cookie, catalogue, recommendations, plays and audio
(password sign-in is :mod:`gateway.routes.login`).

Sources: the browser's requests (the listener from their token, :mod:`gateway.routes.access`;
bodies read by :mod:`gateway.routes.params`, at most 16 KiB), the in-memory catalogue
(:mod:`gateway.library`: search, tracks, similar tracks, genres) or, until it is loaded
and for tracks it does not hold, MongoDB ``tracks`` (:mod:`gateway.catalogue`, read in
worker threads) and the model registry (similar tracks), the hub's latest list per
listener and the audio files under the audio root.
Destinations: JSON (and audio bytes, :mod:`gateway.audio`) for the browser; the
``cadenza_token`` cookie (``POST /api/session``: how ``<audio>``, which cannot send a
header, is authorised without a token in its URL); each accepted play, within the
listener's rate (:class:`gateway.plays.PlayRate`), published to ``cadenza.plays``
(:mod:`gateway.intake`, which also takes plays sent on ``/ws``) before its 202. The
listener's recently played tracks (``GET /api/me/recent``) are their history in MongoDB
``plays`` (:mod:`gateway.history`) with each track's fields as the catalogue gives them. Every
route is a thin adapter: the logic lives in the modules it calls.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import catalogue, history, tokens
from gateway.audio import audio_response, resolve_audio
from gateway.errors import BadRequestError
from gateway.intake import PlayIntake
from gateway.routes.access import COOKIE, Guard, error, set_token_cookie
from gateway.routes.params import int_param, json_body, parse_track_id
from gateway.state import Gateway

VERSION: Final = "1"


def routes(gw: Gateway, guard: Guard) -> list[BaseRoute]:
    """The API and audio routes of the gateway ``gw``; all but config and sign-in need a token."""
    settings, hub, secret, authed = gw.settings, gw.hub, guard.secret, guard.authed
    intake = PlayIntake(gw)
    secure = settings.gateway_https

    # --- sign-in -----------------------------------------------------------------------------

    async def config(request: Request) -> Response:
        """Which sign-in the player shows: demo (a name only), password (accounts), or neither (tokens)."""
        return JSONResponse(
            {
                "demo_signin": settings.demo_signin,
                "password_signin": settings.password_signin,
                "version": VERSION,
            }
        )

    async def signin(request: Request) -> Response:
        """Demo sign-in: anyone, as any name that has no account (loopback gateways only)."""
        if not settings.demo_signin:
            return error(
                404, "demo sign-in is off: ask your operator for a token (`cadenza token create USER`)"
            )
        guard.refuse_cross_site(request)
        body = await json_body(request)
        name = body.get("name") if isinstance(body, dict) else None
        try:
            user = tokens.check_user(name if isinstance(name, str) else "")
        except ValueError as err:
            return error(422, str(err), field="name")
        if gw.revocations.has_account(user):
            return error(403, f"{user} has an account: sign in with its password", field="name")
        token = tokens.issue(secret, user, now=gw.clock(), ttl_s=settings.token_ttl_s)
        found = tokens.verify(secret, token, now=gw.clock())
        response = JSONResponse({"token": token, "user_id": user, "expires": iso(found.expires)})
        set_token_cookie(response, token, settings.token_ttl_s, secure=secure)
        return response

    async def me(request: Request, who: tokens.Claims) -> Response:
        return JSONResponse(
            {"user_id": who.user_id, "expires": iso(who.expires), "role": gw.revocations.role(who.user_id)}
        )

    async def session(request: Request, who: tokens.Claims) -> Response:
        """The request's (checked) token as the ``HttpOnly`` cookie, until the token expires."""
        response = await me(request, who)
        max_age = max(1, int(who.expires - gw.clock()))
        token = guard.token(request) or ""
        set_token_cookie(response, token, max_age, secure=secure)
        return response

    async def end_session(request: Request) -> Response:
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=secure)
        return response

    # --- catalogue -----------------------------------------------------------------------------

    async def tracks(request: Request, who: tokens.Claims) -> Response:
        p = request.query_params
        page, per_page = int_param(p.get("page"), 1), int_param(p.get("per_page"), 50)
        q, genre, artist = p.get("q"), p.get("genre"), p.get("artist")
        index = gw.library.index
        if index is not None:
            return JSONResponse(index.search(q, genre, artist, page=page, per_page=per_page))
        search = partial(catalogue.search, page=page, per_page=per_page)
        return JSONResponse(
            await gw.query(search, gw.db, q, genre, artist, limiter=gw.library.fallback_limiter())
        )

    async def track(request: Request, who: tokens.Claims) -> Response:
        tid = parse_track_id(request.path_params["track_id"])
        index = gw.library.index
        found = index.one(tid) if index is not None else None
        return JSONResponse(found if found is not None else await gw.query(catalogue.one, gw.db, tid))

    async def similar(request: Request, who: tokens.Claims) -> Response:
        tid = parse_track_id(request.path_params["track_id"])
        limit = int_param(request.query_params.get("limit"), 20)
        index = gw.library.for_similar()
        found = index.similar(tid, limit) if index is not None else None
        if found is None:  # not loaded, another model, or a track it does not hold
            found = await gw.query(gw.similar.of, gw.db, tid, limit, limiter=gw.library.fallback_limiter())
        return JSONResponse(found)

    async def genre_list(request: Request, who: tokens.Claims) -> Response:
        index = gw.library.index
        if index is not None:
            return JSONResponse(index.genres())
        return JSONResponse(await gw.query(catalogue.genres, gw.db, limiter=gw.library.fallback_limiter()))

    async def recent(request: Request, who: tokens.Claims) -> Response:
        """The listener's latest play of each track, newest first (``limit``: 1 … 200, else 50)."""
        limit = history.bounded_limit(int_param(request.query_params.get("limit"), history.DEFAULT_LIMIT))
        db = gw.db
        played = await gw.query(history.read_plays, db, who.user_id, limit)
        index = gw.library.index  # (read on the event loop: the index is not thread-safe)
        found: dict[int, dict[str, Any]] = {}
        if index is not None:
            found = {p.track_id: t for p in played if (t := index.one(p.track_id)) is not None}
        missing = [p.track_id for p in played if p.track_id not in found]
        if missing:  # not loaded yet, or tracks it does not hold
            found |= await gw.query(history.read_tracks, db, missing)
        return JSONResponse(history.answer(played, found, limit))

    async def recommendations(request: Request, who: tokens.Claims) -> Response:
        latest = hub.latest(who.user_id)
        return Response(latest_data(latest), media_type="application/json")

    # --- plays ---------------------------------------------------------------------------------

    async def plays(request: Request, who: tokens.Claims) -> Response:
        intake.admit(who.user_id)  # 429 before the body is read
        body = await json_body(request)
        try:
            event = await intake.publish(who.user_id, body)
        except BadRequestError as err:
            return error(422, err.message, field=err.field)
        return JSONResponse({"event_id": str(event.event_id)}, status_code=202)

    # --- audio ---------------------------------------------------------------------------------

    async def audio(request: Request, who: tokens.Claims) -> Response:
        tid = parse_track_id(request.path_params["track_id"])
        cached, relative = gw.audio_paths.probe(tid)
        if not cached:
            relative = await gw.query(gw.audio_paths.get, gw.db, tid)
        file = resolve_audio(settings.audio_root, relative)
        return await audio_response(request, file)

    return [
        Route("/api/config", config),
        Route("/api/signin", guard.open(signin), methods=["POST"]),
        Route("/api/session", authed(session), methods=["POST"]),
        Route("/api/session", end_session, methods=["DELETE"]),
        Route("/api/me", authed(me)),
        Route("/api/me/recent", authed(recent)),
        Route("/api/tracks", authed(tracks)),
        Route("/api/tracks/{track_id}", authed(track)),
        Route("/api/tracks/{track_id}/similar", authed(similar)),
        Route("/api/genres", authed(genre_list)),
        Route("/api/recommendations", authed(recommendations)),
        Route("/api/plays", authed(plays), methods=["POST"]),
        Route("/audio/{track_id}", authed(audio), methods=["GET", "HEAD"]),
    ]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def latest_data(envelope: str | None) -> str:
    """The ``data`` of a stored ``{"type": "recommendations", "data": …}`` text, or an empty list."""
    if envelope is None:
        return '{"items": []}'
    prefix = '{"type":"recommendations","data":'
    return envelope[len(prefix) : -1] if envelope.startswith(prefix) else '{"items": []}'
