"""The gateway: websockets, play reporting, audio, catalogue API, web player and ops (Starlette).

Sources: browsers (HTTP and ``/ws``, identified only by their token), Kafka
(:mod:`gateway.feed`: ``cadenza.recommendations`` and ``cadenza.trending``), MongoDB
(``tracks``), the audio files under the audio root, the model registry (similar
tracks) and the broker's offsets (lag). Destinations: browsers, ``cadenza.plays``
(:mod:`gateway.plays`), ``cadenza.dlq`` (feed records that are not JSON), ``/metrics``.

Every route is a thin adapter: the logic lives in the modules it calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from gateway import catalogue, tokens
from gateway.audio import audio_response, resolve_audio
from gateway.errors import AuthError, BadRequestError, NotFoundError, UnavailableError
from gateway.feed import Feed
from gateway.hub import CLOSE_UNAUTHORIZED, Connection, Hub
from gateway.metrics import GatewayMetrics
from gateway.plays import parse_report, play_event, record
from infra.kafka_clients import aio_producer
from infra.mongo import client as mongo_client
from infra.offsets import LagRow, lag_rows
from infra.settings import Settings
from schemas.codec import dead_letter, encode
from schemas.topics import DLQ, PLAYS

log = logging.getLogger("cadenza.gateway")
STATIC: Final = Path(__file__).resolve().parent / "static"
COOKIE: Final = "cadenza_token"
LAG_EVERY_S: Final = 5.0
#: Longest a play waits for Kafka's acknowledgement before the player is told to retry.
PUBLISH_TIMEOUT_S: Final = 5.0
MAX_BODY: Final = 16 * 1024
VERSION: Final = "1"


@dataclass
class Gateway:
    """What one gateway process holds."""

    settings: Settings
    hub: Hub
    metrics: GatewayMetrics
    feed: Feed
    similar: catalogue.Similar
    audio_paths: catalogue.AudioPaths = field(default_factory=catalogue.AudioPaths)
    producer: AIOKafkaProducer | None = None
    mongo: Any = None
    lag: list[LagRow] = field(default_factory=list)
    lag_error: str | None = "not read yet"
    lag_read: float = 0.0
    clock: Callable[[], float] = time.time
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def db(self) -> Any:
        return self.mongo[self.settings.mongodb_db]

    async def query(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking MongoDB call in a worker thread; 503 if MongoDB is unreachable."""
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except PyMongoError as err:
            self.metrics.errors["mongodb"] += 1
            raise UnavailableError(
                f"MongoDB is unreachable ({type(err).__name__}); try again shortly"
            ) from None

    async def refresh_lag(self) -> None:
        if self.mongo is None:  # a component app without its clients
            return
        if time.monotonic() - self.lag_read < LAG_EVERY_S:
            return
        self.lag_read = time.monotonic()
        try:
            self.lag = await anyio.to_thread.run_sync(lag_rows, self.settings)
            self.lag_error = None
        except Exception as err:
            self.lag_error = f"{type(err).__name__}: {err}"

    def send_dead_letter(self, rec: Any, reason: str) -> None:
        if self.producer is None:
            return
        letter = dead_letter(
            topic=rec.topic,
            value=rec.value,
            key=rec.key,
            partition=rec.partition,
            offset=rec.offset,
            error=ValueError(reason),
            stage="gateway",
        )
        task = asyncio.ensure_future(
            self.producer.send(self.settings.topic(DLQ), key=rec.key, value=encode(letter))
        )
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def parse_track_id(text: str) -> int:
    """A track id from a URL segment: 1-16 ASCII digits, positive and below 2**53."""
    if not (0 < len(text) <= 16 and text.isascii() and text.isdigit()):
        raise NotFoundError(f"no track {text[:40]!r}")
    value = int(text)
    if not 0 < value < 2**53:
        raise NotFoundError(f"no track {value}")
    return value


def token_of(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return conn.cookies.get(COOKIE) or conn.query_params.get("token")


def create_app(settings: Settings, *, start_feed: bool = True) -> Starlette:
    """The gateway app; ``start_feed=False`` skips Kafka and MongoDB clients (tests of pure routes)."""
    metrics = GatewayMetrics()
    hub = Hub(settings.ws_queue_size, settings.gateway_latest_kept, metrics)
    gw = Gateway(settings, hub, metrics, Feed(settings, hub), catalogue.Similar(settings.models_path))
    gw.feed.dead_letter = gw.send_dead_letter
    secret = settings.token_secret.get_secret_value()

    def claims(conn: HTTPConnection) -> tokens.Claims:
        try:
            return tokens.verify(secret, token_of(conn), now=gw.clock())
        except AuthError:
            metrics.auth_failures += 1
            raise

    def authed(
        handler: Callable[[Request, tokens.Claims], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                who = claims(request)
            except AuthError as err:
                return error(401, str(err))
            try:
                return await handler(request, who)
            except NotFoundError as err:
                return error(404, str(err))
            except UnavailableError as err:
                return error(503, str(err))

        return endpoint

    # --- pages and ops ---------------------------------------------------------------------

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def ops_page(request: Request) -> Response:
        return FileResponse(STATIC / "ops.html")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {"mongodb": "no client"}
        if gw.mongo is not None:
            try:
                await gw.query(lambda: gw.mongo.admin.command("ping"))
                checks["mongodb"] = "ok"
            except UnavailableError as err:
                checks["mongodb"] = str(err)
        if gw.producer is None:
            checks["kafka"] = "producer not started"
        else:
            try:
                await asyncio.wait_for(gw.producer.client.force_metadata_update(), 5.0)
                checks["kafka"] = "ok" if gw.producer.client.cluster.brokers() else "no broker"
            except (TimeoutError, KafkaError) as err:
                checks["kafka"] = f"unreachable: {type(err).__name__}"
        checks["feed"] = "ok" if gw.feed.ready.is_set() else (gw.feed.error or "catching up")
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
        )

    async def metrics_page(request: Request) -> Response:
        await gw.refresh_lag()
        text = metrics.prometheus(gw.lag, gw.lag_error)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def ops_api(request: Request) -> Response:
        await gw.refresh_lag()
        groups = [r.to_dict() for r in gw.lag if r.kind == "group"]
        streams = [r.to_dict() for r in gw.lag if r.kind == "query"]
        return JSONResponse(
            {
                "groups": groups,
                "streams": streams,
                "lag_error": gw.lag_error,
                "rates": metrics.rates(),
                "listeners": hub.listeners(),
                "ts": time.time(),
            }
        )

    # --- sign-in -----------------------------------------------------------------------------

    async def config(request: Request) -> Response:
        return JSONResponse({"demo_signin": settings.demo_signin, "version": VERSION})

    async def signin(request: Request) -> Response:
        if not settings.demo_signin:
            return error(
                404, "demo sign-in is off: ask your operator for a token (`cadenza token create USER`)"
            )
        body = await json_body(request)
        name = body.get("name") if isinstance(body, dict) else None
        try:
            user = tokens.check_user(name if isinstance(name, str) else "")
        except ValueError as err:
            return error(422, str(err), field="name")
        token = tokens.issue(secret, user, now=gw.clock(), ttl_s=settings.token_ttl_s)
        found = tokens.verify(secret, token, now=gw.clock())
        response = JSONResponse({"token": token, "user_id": user, "expires": iso(found.expires)})
        response.set_cookie(COOKIE, token, max_age=settings.token_ttl_s, httponly=True, samesite="strict")
        return response

    async def me(request: Request, who: tokens.Claims) -> Response:
        return JSONResponse({"user_id": who.user_id, "expires": iso(who.expires)})

    # --- catalogue -----------------------------------------------------------------------------

    async def tracks(request: Request, who: tokens.Claims) -> Response:
        p = request.query_params
        page, per_page = int_param(p.get("page"), 1), int_param(p.get("per_page"), 50)
        result = await gw.query(
            partial(catalogue.search, page=page, per_page=per_page),
            gw.db,
            p.get("q"),
            p.get("genre"),
            p.get("artist"),
        )
        return JSONResponse(result)

    async def track(request: Request, who: tokens.Claims) -> Response:
        tid = parse_track_id(request.path_params["track_id"])
        return JSONResponse(await gw.query(catalogue.one, gw.db, tid))

    async def similar(request: Request, who: tokens.Claims) -> Response:
        tid = parse_track_id(request.path_params["track_id"])
        limit = int_param(request.query_params.get("limit"), 20)
        return JSONResponse(await gw.query(gw.similar.of, gw.db, tid, limit))

    async def genre_list(request: Request, who: tokens.Claims) -> Response:
        return JSONResponse(await gw.query(catalogue.genres, gw.db))

    async def recommendations(request: Request, who: tokens.Claims) -> Response:
        latest = hub.latest(who.user_id)
        return Response(latest_data(latest), media_type="application/json")

    # --- plays ---------------------------------------------------------------------------------

    async def plays(request: Request, who: tokens.Claims) -> Response:
        body = await json_body(request)
        try:
            report = parse_report(body)
        except BadRequestError as err:
            metrics.plays_refused[err.field] += 1
            return error(422, err.message, field=err.field)
        try:  # the cached lookup the audio route uses: no MongoDB read per play of a known track
            await gw.query(gw.audio_paths.get, gw.db, report.track_id)
        except NotFoundError:
            metrics.plays_refused["track_id"] += 1
            return error(422, f"no track {report.track_id} in the catalogue", field="track_id")
        if gw.producer is None:
            return error(503, "the gateway is not connected to Kafka")
        event = play_event(who.user_id, report)
        key, value = record(event)
        try:
            # A broker that just died holds a send until its partitions have a new leader; the
            # player retries instead (same event_id: downstream counts each event id once).
            await asyncio.wait_for(
                gw.producer.send_and_wait(settings.topic(PLAYS), key=key, value=value), PUBLISH_TIMEOUT_S
            )
        except (KafkaError, TimeoutError) as err:
            metrics.errors["kafka_publish"] += 1
            return error(
                503,
                f"could not publish the play to Kafka ({type(err).__name__}); retry with the same event_id",
            )
        metrics.plays_accepted += 1
        return JSONResponse({"event_id": str(event.event_id)}, status_code=202)

    # --- audio ---------------------------------------------------------------------------------

    async def audio(request: Request, who: tokens.Claims) -> Response:
        tid = parse_track_id(request.path_params["track_id"])
        relative = await gw.query(gw.audio_paths.get, gw.db, tid)
        file = resolve_audio(settings.audio_root, relative)
        return await audio_response(request, file)

    # --- websocket -----------------------------------------------------------------------------

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            who = claims(websocket)
        except AuthError as err:
            await websocket.close(CLOSE_UNAUTHORIZED, str(err)[:120])
            return
        conn = hub.connect(who.user_id)
        metrics.connections_total += 1
        try:
            await websocket.send_text(json.dumps({"type": "hello", "user_id": who.user_id}))
            hub.greet(conn)
            await serve(websocket, conn, metrics)
        finally:
            hub.disconnect(conn)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if start_feed:
            gw.mongo = mongo_client(settings)
            gw.producer = aio_producer(settings, linger_ms=1, client_id="cadenza-gateway")
            try:
                await gw.producer.start()
            except KafkaError as err:
                log.warning(
                    "gateway: Kafka unreachable at start (%s); plays will get 503 until it is back", err
                )
                gw.producer = None
            gw.tasks.append(asyncio.create_task(gw.feed.run(), name="gateway-feed"))
        gw.tasks.append(asyncio.create_task(hub.heartbeat(settings.gateway_heartbeat_s), name="heartbeat"))
        # The objects made at start-up (modules, app, clients) live as long as the process:
        # keep them out of every later garbage collection, so pauses stay short.
        gc.collect()
        gc.freeze()
        app.state.gateway = gw
        try:
            yield
        finally:
            for task in gw.tasks:
                task.cancel()
            for task in gw.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if gw.producer is not None:
                await gw.producer.stop()
            if gw.mongo is not None:
                gw.mongo.close()

    routes = [
        Route("/", index),
        Route("/ops", ops_page),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_page),
        Route("/api/ops", ops_api),
        Route("/api/config", config),
        Route("/api/signin", signin, methods=["POST"]),
        Route("/api/me", authed(me)),
        Route("/api/tracks", authed(tracks)),
        Route("/api/tracks/{track_id}", authed(track)),
        Route("/api/tracks/{track_id}/similar", authed(similar)),
        Route("/api/genres", authed(genre_list)),
        Route("/api/recommendations", authed(recommendations)),
        Route("/api/plays", authed(plays), methods=["POST"]),
        Route("/audio/{track_id}", authed(audio), methods=["GET", "HEAD"]),
        WebSocketRoute("/ws", ws),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gw
    return app


async def serve(websocket: WebSocket, conn: Connection, metrics: GatewayMetrics) -> None:
    """Run one connection with two tasks: a writer draining its queue, a reader taking
    the browser's pongs; returns when the browser leaves or the hub closes the
    connection (too slow, or silent: code 4408)."""

    async def writer() -> int:
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            while conn.closing is None and (message := conn.next_message()) is not None:
                text, queued = message
                await websocket.send_text(text)
                metrics.pushed(time.perf_counter() - queued)
            if conn.closing is not None:
                return conn.closing

    async def reader() -> None:
        while True:
            await websocket.receive_text()
            conn.heard()

    tasks = [asyncio.ensure_future(writer()), asyncio.ensure_future(reader())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
    finished = next(iter(done))
    code = None if finished.cancelled() or finished.exception() is not None else finished.result()
    if code is None:
        return  # the browser went away (WebSocketDisconnect) or the socket broke
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, "too slow or silent"), 1.0)


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def int_param(value: str | None, default: int) -> int:
    if value is None or not (0 < len(value) <= 9) or not value.isdigit():
        return default
    return int(value)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def latest_data(envelope: str | None) -> str:
    """The ``data`` of a stored ``{"type": "recommendations", "data": …}`` text, or an empty list."""
    if envelope is None:
        return '{"items": []}'
    prefix = '{"type":"recommendations","data":'
    return envelope[len(prefix) : -1] if envelope.startswith(prefix) else '{"items": []}'
