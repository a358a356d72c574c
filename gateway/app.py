"""The gateway: websockets, play reporting, audio, catalogue API, web player and ops (Starlette).

Sources: browsers (HTTP and ``/ws``, identified only by their token), Kafka
(:mod:`gateway.feed`: ``cadenza.recommendations``, ``cadenza.trending`` and, for the
in-memory catalogue of :mod:`gateway.library`, ``cadenza.tracks.new`` and
``cadenza.tracks.assigned``), MongoDB (``tracks``; ``accounts``, polled by
:mod:`gateway.revocations`, and ``signin_failures``), the audio files under the audio
root, the model registry (similar tracks) and the broker's offsets (lag). Destinations:
browsers, ``cadenza.plays`` (:mod:`gateway.plays`), ``cadenza.dlq`` (feed records that
are not JSON), ``/metrics``.

This module builds the app and its lifespan (clients opened, accounts read, feed, catalogue
load, accounts poll, heartbeat and trending pump started, all closed at shutdown); the
routes live in :mod:`gateway.routes`, the state they share in :class:`gateway.state.Gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiokafka.errors import KafkaError
from starlette.applications import Starlette

from gateway import accounts, catalogue
from gateway.feed import Feed
from gateway.hub import Hub
from gateway.library import Library
from gateway.metrics import GatewayMetrics
from gateway.routes import api, login, ops, player, ws
from gateway.routes.access import Guard
from gateway.signin import Signin
from gateway.state import Gateway
from infra.kafka_clients import aio_producer
from infra.mongo import client as mongo_client
from infra.settings import Settings

log = logging.getLogger("cadenza.gateway")
#: Longest the start waits for the first read of ``accounts`` (then the poll goes on trying).
ACCOUNTS_START_S = 5.0


def create_app(settings: Settings, *, start_feed: bool = True) -> Starlette:
    """The gateway app; ``start_feed=False`` skips Kafka and MongoDB clients (tests of pure routes)."""
    metrics = GatewayMetrics()
    hub = Hub(settings.ws_queue_size, settings.gateway_latest_kept, metrics)
    library = Library(settings)
    feed = Feed(settings, hub, library=library if library.enabled else None)
    gw = Gateway(settings, hub, metrics, feed, catalogue.Similar(settings.models_path), library)
    gw.feed.dead_letter = gw.send_dead_letter
    guard = Guard(gw)
    signin = Signin(gw)

    async def changed_accounts(since: datetime | None, overlap_s: float) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await gw.query(accounts.changed_since, gw.db, since, overlap_s)
        return found

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if start_feed:
            gw.mongo = mongo_client(settings)
            gw.producer = aio_producer(
                settings, linger_ms=settings.gateway_producer_linger_ms, client_id="cadenza-gateway"
            )
            try:
                await gw.producer.start()
            except KafkaError as err:
                log.warning(
                    "gateway: Kafka unreachable at start (%s); plays will get 503 until it is back", err
                )
                gw.producer = None
            try:  # which tokens to refuse, before the first request
                await asyncio.wait_for(gw.revocations.read(changed_accounts, full=True), ACCOUNTS_START_S)
            except Exception as err:
                log.warning("gateway: accounts not read at start (%s); the poll goes on trying", err)
            gw.tasks.append(asyncio.create_task(gw.revocations.run(changed_accounts), name="accounts"))
            gw.tasks.append(asyncio.create_task(signin.prune_forever(), name="signin-failures"))
            feed_task = asyncio.create_task(gw.feed.run(), name="gateway-feed")
            gw.tasks.append(feed_task)
            if library.enabled:  # loads in the background: /readyz does not wait for it
                gw.tasks.append(asyncio.create_task(library.run(lambda: gw.db), name="catalogue"))
            watch = gw.watchdog.watch(lambda: gw.feed.progress_at, feed_task)
            gw.tasks.append(asyncio.create_task(watch, name="watchdog"))
        gw.tasks.append(asyncio.create_task(hub.heartbeat(settings.gateway_heartbeat_s), name="heartbeat"))
        gw.tasks.append(
            asyncio.create_task(hub.trending_pump(settings.gateway_trending_interval_s), name="trending")
        )
        # The objects made at start-up (modules, app, clients) live as long as the process:
        # keep them out of every later garbage collection, so pauses stay short.
        gc.collect()
        gc.freeze()
        app.state.gateway = gw
        try:
            yield
        finally:
            library.stop()
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
        *player.pages(),
        *ops.routes(gw),
        *api.routes(gw, guard),
        *login.routes(gw, guard, signin),
        ws.route(gw, guard),
        player.static(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gw
    return app
