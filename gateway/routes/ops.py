"""Health, readiness, Prometheus metrics and the ops page's data: ``/healthz``, ``/readyz``,
``/metrics``, ``/api/ops``.

Sources: the gateway's :class:`gateway.state.Gateway` (a MongoDB ping, the producer's
broker metadata, whether :mod:`gateway.feed` has caught up, the in-memory catalogue's
state, consumer lag from the broker's offsets) and
:class:`gateway.metrics.GatewayMetrics` (counters, rates, the hub's listeners).
Destinations: load balancers and orchestrators (``/healthz`` always 200 while the process
serves; ``/readyz`` 503 until MongoDB, Kafka, the feed and the first read of ``accounts``
are ok, whether or not the
catalogue is loaded yet), Prometheus (``/metrics``) and the ``/ops`` page
(``/api/ops``). No token needed.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.errors import KafkaError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import UnavailableError
from gateway.metrics import ConsumerLag
from gateway.state import Gateway
from infra.prometheus import app_registry, exposition


def routes(gw: Gateway) -> list[BaseRoute]:
    """The ops routes of the gateway ``gw``."""
    metrics, hub = gw.metrics, gw.hub
    # This app's own registry: its counters, the feed's gauges, consumer lag, process_* metrics.
    registry = app_registry(
        metrics, gw.signins, gw.feed, gw.library, ConsumerLag(lambda: (gw.lag, gw.lag_error))
    )

    async def healthz(request: Request) -> Response:
        if gw.watchdog.stalled is not None:  # the process is on its way out (gateway.watchdog)
            return JSONResponse({"status": "stalled", "reason": gw.watchdog.stalled}, status_code=503)
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
        checks["accounts"] = "ok" if gw.revocations.loaded else "not read yet"
        ok = all(v == "ok" for v in checks.values())
        # The in-memory catalogue is reported, never waited for: MongoDB answers until it is loaded.
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks, "catalogue": gw.library.status()},
            status_code=200 if ok else 503,
        )

    async def metrics_page(request: Request) -> Response:
        await gw.refresh_lag()
        body, media_type = exposition(registry)
        return Response(body, media_type=media_type)

    async def ops_api(request: Request) -> Response:
        await gw.refresh_lag()
        # The ops page's columns: a group's name, a query's name and what it processed.
        groups = [{**r.to_dict(), "group": r.name} for r in gw.lag if r.kind == "group"]
        streams = [
            {**r.to_dict(), "query": r.name, "processed": r.committed} for r in gw.lag if r.kind == "query"
        ]
        return JSONResponse(
            {
                "groups": groups,
                "streams": streams,
                "lag_error": gw.lag_error,
                "rates": metrics.rates(),
                "listeners": hub.listeners(),
                "catalogue": gw.library.status(),
                "dead_letters": {
                    "counts": [
                        {"topic": t, "stage": st, "count": n}
                        for (t, st), n in sorted(gw.feed.letters.counts.items())
                    ],
                    "unreadable": gw.feed.letters.unreadable,
                    "recent": list(gw.feed.letters.recent),
                },
                "ts": time.time(),
            }
        )

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_page),
        Route("/api/ops", ops_api),
    ]
