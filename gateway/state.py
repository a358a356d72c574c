"""What one gateway process holds: its settings, hub, metrics, Kafka feed, in-memory catalogue,
clients, lag readings and the accounts' standing (:mod:`gateway.revocations`).

Sources: the clients the app's lifespan (:mod:`gateway.app`) opens (MongoDB, the Kafka
producer), the in-memory catalogue (:mod:`gateway.library`), the broker's offsets
(consumer lag, read at most every ``LAG_EVERY_S`` seconds) and feed records that are not
JSON. Destinations: the routes of :mod:`gateway.routes` (MongoDB reads run in worker
threads, 503 when MongoDB is unreachable or its client was never opened; the catalogue;
the lag rows of ``/metrics`` and ``/api/ops``; the per-listener plays rate), and
``cadenza.dlq`` (the dead letters of :mod:`gateway.feed`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from aiokafka import AIOKafkaProducer
from pymongo.errors import PyMongoError

from gateway import catalogue
from gateway.errors import UnavailableError
from gateway.feed import Feed
from gateway.hub import Hub
from gateway.library import Library
from gateway.metrics import GatewayMetrics
from gateway.plays import PlayRate
from gateway.revocations import Revocations
from gateway.signin_metrics import SigninMetrics
from gateway.watchdog import Watchdog
from infra.offsets import LagRow, lag_rows
from infra.settings import Settings
from schemas.codec import dead_letter_for, encode
from schemas.topics import DLQ

LAG_EVERY_S: Final = 5.0


@dataclass
class Gateway:
    """What one gateway process holds."""

    settings: Settings
    hub: Hub
    metrics: GatewayMetrics
    feed: Feed
    similar: catalogue.Similar
    library: Library
    audio_paths: catalogue.AudioPaths = field(default_factory=catalogue.AudioPaths)
    producer: AIOKafkaProducer | None = None
    mongo: Any = None
    lag: list[LagRow] = field(default_factory=list)
    lag_error: str | None = "not read yet"
    lag_read: float = 0.0
    clock: Callable[[], float] = time.time
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    #: Each listener's token bucket for ``POST /api/plays``.
    plays_limiter: PlayRate = field(init=False)
    #: Ends the process when the feed stalls (``/healthz`` reads ``watchdog.stalled``).
    watchdog: Watchdog = field(init=False)
    #: Each account's standing, polled from MongoDB: which tokens are refused.
    revocations: Revocations = field(init=False)
    #: Password sign-ins by result (``/metrics``).
    signins: SigninMetrics = field(default_factory=SigninMetrics)

    def __post_init__(self) -> None:
        s = self.settings
        self.plays_limiter = PlayRate(s.plays_rate_per_s, s.plays_burst, kept=s.gateway_latest_kept)
        self.watchdog = Watchdog(s.consumer_stall_s)
        self.revocations = Revocations(self.hub, s.accounts_poll_s)

    @property
    def db(self) -> Any:
        """The database; 503 (:class:`UnavailableError`) when no client was opened (``start_feed=False``)."""
        if self.mongo is None:
            raise UnavailableError("MongoDB is not connected to this gateway; try again shortly")
        return self.mongo[self.settings.mongodb_db]

    async def query(
        self, fn: Callable[..., Any], *args: Any, limiter: anyio.CapacityLimiter | None = None
    ) -> Any:
        """Run a blocking MongoDB call in a worker thread (at most ``limiter``'s at once, if
        given); 503 if MongoDB is unreachable."""
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)
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

    def send_dead_letter(self, rec: Any, error: BaseException) -> None:
        """``rec`` to ``cadenza.dlq`` with ``error``'s class and message (stage ``gateway``)."""
        if self.producer is None:
            return
        letter = dead_letter_for(rec, error, "gateway")
        task = asyncio.ensure_future(
            self.producer.send(self.settings.topic(DLQ), key=rec.key, value=encode(letter))
        )
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
