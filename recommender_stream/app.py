"""The Faust app: agents, the listener table, the catalogue and trending feeds, ``/metrics``.

Sources: ``cadenza.plays`` (the ``plays`` agent, in the consumer group
``<topic prefix>recommender``: each listener's events land on one worker), and, read by
every worker in full without a group, ``cadenza.tracks.new`` (new tracks placed in the
catalogue) and ``cadenza.trending`` (newest window per cluster). Destinations:
``cadenza.recommendations`` (key = user), ``cadenza.dlq``, and the ``listeners`` table,
changelogged to ``<app id>-listeners-changelog`` so a restarted or replacement worker
recovers it. Logic lives in :mod:`recommender_stream.processor`; this module is wiring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import faust
from aiokafka import TopicPartition
from pymongo.errors import PyMongoError

from infra.faust_internals import SafeTableManager, force_metadata_update
from infra.kafka_clients import aio_consumer
from infra.mongo import client as mongo_client
from infra.prometheus import app_registry, exposition
from infra.settings import RECOMMENDER_TABLE, Settings
from recommender_stream.catalogue import Catalogue
from recommender_stream.catalogue_loader import load_catalogue, load_model
from recommender_stream.delivery import DeliveryGuard
from recommender_stream.errors import CatalogueError
from recommender_stream.listener import Limits
from recommender_stream.processor import Output, Processor, Record
from recommender_stream.transport import WorkerApp
from schemas.cluster_model import current_version
from schemas.topics import DLQ, PLAYS, RECOMMENDATIONS, TRACKS_NEW, TRENDING

log = logging.getLogger("cadenza.recommender")
TABLE: Final = RECOMMENDER_TABLE
MODEL_CHECK_S: Final = 5.0
PRODUCER_LINGER_S: Final = 0.005


def app_id(settings: Settings) -> str:
    return settings.recommender_group


def changelog_topic(settings: Settings) -> str:
    """Created by ``cadenza stack up`` (``infra.kafka_clients.ensure_topics``) before any worker
    starts: workers starting together would race to create it."""
    return settings.recommender_changelog


def table_store(settings: Settings) -> str:
    """RocksDB (through rocksdict) when chosen and installed, else memory + changelog recovery."""
    if settings.faust_store == "memory":
        return "memory://"
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        log.warning("rocksdict is not installed: the listener table lives in memory")
        return "memory://"
    return "rocksdb://"


def app_options(settings: Settings, datadir: Path, web_port: int) -> dict[str, Any]:
    """The options of a worker's :class:`WorkerApp` (also used by ``bench/_faust_floor.py``,
    which measures Faust alone configured the same way)."""
    store = table_store(settings)
    return {
        "broker": [f"kafka://{h}" for h in settings.bootstrap_servers.split(",")],
        # Read by WorkerApp (recommender_stream.transport), not by Faust's settings.
        "fetch_wait_ms": settings.faust_fetch_wait_ms,
        "store": store,
        "table_store_options": {"use_rocksdict": True} if store == "rocksdb://" else None,
        "datadir": str(datadir),
        "web_port": web_port,
        "web_bind": "127.0.0.1",
        "web_host": "127.0.0.1",
        "topic_replication_factor": settings.kafka_replication_factor,
        "topic_partitions": PLAYS.partitions,
        "processing_guarantee": "at_least_once",
        "producer_acks": -1,
        # Let records gather for a few ms: a produce request per handful of plays rather
        # than per play or two (each one costs the worker and the broker a round).
        "producer_linger": PRODUCER_LINGER_S,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_every": 500,
        "broker_commit_interval": 1.0,
        "table_cleanup_interval": 60.0,
        # A worker that dies is noticed after this long, and its partitions move on. Brokers
        # refuse less than group.min.session.timeout.ms (6 s by default, 1 s on the local stack).
        "broker_session_timeout": settings.faust_session_timeout_s,
        "broker_heartbeat_interval": settings.faust_session_timeout_s / 3,
        "key_serializer": "json",
        "value_serializer": "json",
    }


@dataclass
class Runtime:
    """What one worker holds besides Faust's own objects."""

    settings: Settings
    processor: Processor
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    #: Sends outputs to their topics; replaceable in component tests.
    send: Callable[[list[Output]], Awaitable[None]] | None = None
    #: What was sent and is not yet known to be delivered (see :mod:`recommender_stream.delivery`).
    delivery: DeliveryGuard | None = None


def create_app(settings: Settings, *, web_port: int | None = None) -> tuple[faust.App, Runtime]:
    datadir = settings.data_dir / "faust" / f"worker-{web_port or settings.faust_port}"
    datadir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        app_id(settings),
        **app_options(settings, datadir, web_port or settings.faust_port),
        # Faust's stock recovery can drop the plays a restarted worker fetches (infra.faust_internals).
        TableManager=SafeTableManager,
    )
    runtime = Runtime(
        settings,
        Processor(
            catalogue=Catalogue(model=None, dims=0),
            limits=Limits(settings.reco_last_n, settings.reco_half_life_s, settings.reco_seen_events),
            k=settings.reco_k,
            half_life_s=settings.reco_half_life_s,
        ),
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    plays = app.topic(settings.topic(PLAYS), partitions=PLAYS.partitions, **raw)
    outputs = {
        "recommendations": app.topic(settings.topic(RECOMMENDATIONS), **raw),
        "dlq": app.topic(settings.topic(DLQ), **raw),
    }
    # Keys and values of the table use the app's JSON serializers (see create_app); the
    # values are ListenerStates, which encode themselves (``ListenerState.__json__``).
    listeners = app.Table(TABLE, partitions=PLAYS.partitions)

    names = {name: topic.get_topic_name() for name, topic in outputs.items()}

    async def send_raw(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        # Straight to the producer (the records are bytes already): returns once the record
        # is in the producer's buffer, with the future of its delivery.
        producer = await app.maybe_start_producer()
        return cast(asyncio.Future, await producer.send(topic, key, value, None, None, None))

    # Awaited by the consumer before each offset commit (transport._Consumer): a failed
    # send is sent again, and the plays that caused it are not committed until it lands.
    delivery = app.delivery = DeliveryGuard(send_raw)
    runtime.delivery = delivery

    async def send(items: list[Output]) -> None:
        for item in items:
            await delivery.send(names[item.topic], item.key, item.value)

    runtime.send = send

    @app.agent(plays, name="plays")
    async def on_plays(stream: Any) -> None:
        # One event at a time: Faust acks an event when the next is taken, after its
        # outputs are handed to the producer and its table write is made. (Faust's
        # ``take_events`` batching was tried and dropped: it can ack an event that
        # arrives while a batch is being processed without ever yielding it.)
        async for event in stream.events():
            await runtime.ready.wait()
            m = event.message
            record = Record(m.topic, m.partition, m.offset, m.key, m.value)
            assert runtime.send is not None
            await runtime.send(runtime.processor.on_plays([record], listeners))

    @app.task
    async def feeds() -> None:
        assert runtime.send is not None
        await follow_feeds(runtime, runtime.send)

    # This worker's own registry: the processor's metrics and the process_* metrics.
    registry = app_registry(runtime.processor.metrics)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        body, media_type = exposition(registry)
        # As a header: aiohttp refuses a content_type argument that carries a charset.
        return web.bytes(body, headers={"Content-Type": media_type})

    return app, runtime


def _load(settings: Settings) -> Catalogue:
    """The current model's catalogue from MongoDB; :class:`CatalogueError` on any failure."""
    mongo = mongo_client(settings)
    try:
        return load_catalogue(mongo[settings.mongodb_db], load_model(settings.models_path)).catalogue
    except PyMongoError as err:
        raise CatalogueError(f"MongoDB: {err}; is it up?") from None
    finally:
        mongo.close()


async def follow_feeds(runtime: Runtime, send: Any) -> None:
    """Load the catalogue, then follow tracks.new and trending on every partition (no group)."""
    settings = runtime.settings
    loop = asyncio.get_running_loop()
    consumer = aio_consumer(settings, group_id=None, fetch_max_wait_ms=settings.faust_fetch_wait_ms)
    await consumer.start()
    try:
        names = {settings.topic(TRACKS_NEW): "tracks", settings.topic(TRENDING): "trending"}
        tps = [
            TopicPartition(topic, p)
            for topic in names
            for p in sorted(consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
        ]
        consumer.assign(tps)
        track_tps = [tp for tp in tps if names[tp.topic] == "tracks"]
        starts = await consumer.end_offsets(track_tps)  # before loading: nothing falls in between
        runtime.processor.replace_catalogue(
            await load_until_done(lambda: loop.run_in_executor(None, _load, settings))
        )
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        await consumer.seek_to_beginning(*[tp for tp in tps if names[tp.topic] == "trending"])
        runtime.ready.set()
        log.info(
            "recommender ready: %d tracks, model %s",
            len(runtime.processor.catalogue),
            runtime.processor.catalogue.version,
        )
        last_check = loop.time()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            for tp, records in batches.items():
                for r in records:
                    record = Record(tp.topic, tp.partition, r.offset, r.key, r.value)
                    if names[tp.topic] == "tracks":
                        outputs = runtime.processor.on_track(record)
                    else:
                        outputs = runtime.processor.on_trending(record)
                    await send(outputs)
            if loop.time() - last_check > MODEL_CHECK_S:
                last_check = loop.time()
                if current_version(settings.models_path) != runtime.processor.catalogue.version:
                    try:
                        catalogue = await loop.run_in_executor(None, _load, settings)
                    except CatalogueError as err:  # keep serving the old one; try at the next check
                        log.warning("model changed but the catalogue could not be reloaded: %s", err)
                        continue
                    runtime.processor.replace_catalogue(catalogue)
                    log.info(
                        "model changed: catalogue reloaded under %s", runtime.processor.catalogue.version
                    )
    finally:
        await consumer.stop()


async def load_until_done(
    load: Callable[[], Awaitable[Catalogue]], first_s: float = 1.0, max_s: float = 30.0
) -> Catalogue:
    """``load()``, tried again with backoff (``first_s`` doubling to ``max_s``) while it raises
    :class:`CatalogueError` (MongoDB unreachable or a model file being written): a worker
    that starts during a MongoDB hiccup waits for it instead of crashing."""
    delay = first_s
    while True:
        try:
            return await load()
        except CatalogueError as err:
            log.warning("catalogue not loaded (%s); trying again in %.0f s", err, delay)
            await asyncio.sleep(delay)
            delay = min(max_s, delay * 2)


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await force_metadata_update(consumer)
    return set(consumer.partitions_for_topic(topic) or {0})
