"""The Faust app: agents, the listener table, the catalogue and trending feeds, ``/metrics``.

Sources: ``cadenza.plays`` (the ``plays`` agent, in the consumer group
``<topic prefix>recommender``: each listener's events land on one worker), the start-up
catalogue (the current model's snapshot ``<models_path>/<version>/catalogue.npz`` when it
is usable, else a scan of MongoDB ``tracks``: :mod:`recommender_stream.catalogue_loader`),
and, read by every worker without a group, ``cadenza.tracks.new`` (new tracks placed in
the catalogue: from the offsets the catalogue covers) and ``cadenza.trending`` (newest
window per cluster, from the beginning). Destinations:
``cadenza.recommendations`` (key = user), ``cadenza.dlq``, and the ``listeners`` table,
changelogged to ``<app id>-listeners-changelog`` so a restarted or replacement worker
recovers it. Logic lives in :mod:`recommender_stream.processor`; this module is wiring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import faust
from aiokafka import TopicPartition
from pymongo.errors import PyMongoError

from infra.faust_internals import SafeTableManager, force_metadata_update
from infra.kafka_clients import aio_consumer
from infra.mongo import client as mongo_client
from infra.prometheus import app_registry, exposition
from infra.settings import RECOMMENDER_TABLE, Settings
from recommender_stream.catalogue import Catalogue
from recommender_stream.catalogue_loader import (
    catalogue_from_snapshot,
    load_catalogue,
    load_model,
    replay_from,
)
from recommender_stream.delivery import DeliveryGuard
from recommender_stream.errors import CatalogueError
from recommender_stream.listener import Limits
from recommender_stream.processor import Output, Processor, Record
from recommender_stream.ranking import ranking_params
from recommender_stream.transport import WorkerApp
from schemas.catalogue_snapshot import SnapshotError, load_snapshot, snapshot_path
from schemas.cluster_model import current_version
from schemas.topics import DLQ, PLAYS, RECOMMENDATIONS, TRACKS_NEW, TRENDING

log = logging.getLogger("cadenza.recommender")
TABLE: Final = RECOMMENDER_TABLE
MODEL_CHECK_S: Final = 5.0
PRODUCER_LINGER_S: Final = 0.005
#: Where a catalogue came from (the ``source`` label of the catalogue load metrics).
SNAPSHOT: Final = "snapshot"
SCAN: Final = "scan"
T = TypeVar("T")


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
            params=ranking_params(settings),
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


@dataclass(frozen=True)
class Initial:
    """A loaded catalogue and where it came from."""

    catalogue: Catalogue
    #: :data:`SNAPSHOT` or :data:`SCAN`.
    source: str
    #: The snapshot's path, or why no snapshot was used.
    detail: str
    seconds: float
    #: Tracks of a snapshot left out (no cluster); 0 after a scan (it logs its own).
    left_out: int = 0
    #: From a snapshot: the ``tracks.new`` offset per partition to read again from.
    replay: dict[int, int] | None = None


def _catalogue(settings: Settings, tracks_new: tuple[dict[int, int], dict[int, int]] | None) -> Initial:
    """The current model's catalogue from its snapshot when usable, else from a scan of MongoDB
    (:func:`_load`; :class:`CatalogueError` when that fails).

    ``tracks_new``: the first and next offsets of ``tracks.new`` per partition now (at
    start-up): the snapshot is used only if the offsets it covers are still in the log, and
    :attr:`Initial.replay` says where to read from. None (on a model change): any snapshot of
    the version is used (the tracks that arrived since are kept by the processor)."""
    started = time.monotonic()
    try:
        model = load_model(settings.models_path)
        if model is None:
            raise SnapshotError("no current model")
        path = snapshot_path(settings.models_path, model.version)
        snapshot = load_snapshot(path, model.version)
        replay = None
        if tracks_new is not None:
            replay = replay_from(snapshot, settings.topic(TRACKS_NEW), *tracks_new)
        loaded = catalogue_from_snapshot(snapshot, model)
        seconds = time.monotonic() - started
        return Initial(loaded.catalogue, SNAPSHOT, str(path), seconds, loaded.left_out, replay)
    except (SnapshotError, CatalogueError) as err:
        reason = str(err)
    catalogue = _load(settings)
    return Initial(catalogue, SCAN, f"no usable snapshot: {reason}", time.monotonic() - started)


async def _replay(
    consumer: Any, runtime: Runtime, send: Any, topic: str, ends: dict[TopicPartition, int]
) -> int:
    """Apply ``tracks.new`` from the consumer's positions up to ``ends`` (the log ends taken
    at start-up), so that the catalogue holds every track announced before the worker
    started; returns how many records were applied."""
    applied = 0
    pending = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=200, max_records=2000)
        for tp, records in batches.items():
            for r in records:
                await send(runtime.processor.on_track(Record(topic, tp.partition, r.offset, r.key, r.value)))
                applied += 1
        pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    return applied


async def follow_feeds(runtime: Runtime, send: Any) -> None:
    """Load the catalogue, then follow tracks.new and trending on every partition (no group).

    The catalogue comes from the current model's snapshot when it exists and covers
    offsets of ``tracks.new`` that retention has kept: ``tracks.new`` is then read again
    from those offsets up to the log's end at start, before the worker says it is ready,
    so a play of a track announced since the snapshot finds it. Otherwise MongoDB's
    ``tracks`` is scanned (tried again while it fails) and ``tracks.new`` is followed from
    its end at start. Either way one log line says which, with counts and seconds
    (``catalogue: N tracks from snapshot PATH in S s, R replayed from tracks.new``)."""
    settings = runtime.settings
    metrics = runtime.processor.metrics
    loop = asyncio.get_running_loop()
    consumer = aio_consumer(settings, group_id=None, fetch_max_wait_ms=settings.faust_fetch_wait_ms)
    await consumer.start()
    try:
        tracks_topic = settings.topic(TRACKS_NEW)
        names = {tracks_topic: "tracks", settings.topic(TRENDING): "trending"}
        tps = [
            TopicPartition(topic, p)
            for topic in names
            for p in sorted(consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
        ]
        consumer.assign(tps)
        track_tps = [tp for tp in tps if names[tp.topic] == "tracks"]
        started = loop.time()
        starts = await consumer.end_offsets(track_tps)  # before loading: nothing falls in between
        firsts = await consumer.beginning_offsets(track_tps)
        window = (
            {tp.partition: o for tp, o in firsts.items()},
            {tp.partition: o for tp, o in starts.items()},
        )
        initial = await load_until_done(lambda: loop.run_in_executor(None, _catalogue, settings, window))
        runtime.processor.replace_catalogue(initial.catalogue)
        loaded = len(initial.catalogue)
        for tp, offset in starts.items():
            consumer.seek(tp, offset if initial.replay is None else initial.replay[tp.partition])
        await consumer.seek_to_beginning(*[tp for tp in tps if names[tp.topic] == "trending"])
        replayed = 0
        if initial.replay is not None:
            replayed = await _replay(consumer, runtime, send, tracks_topic, starts)
        seconds = loop.time() - started
        if initial.source == SNAPSHOT:
            log.info(
                "catalogue: %d tracks from snapshot %s in %.2f s, %d replayed from tracks.new (%d left out)",
                loaded,
                initial.detail,
                seconds,
                replayed,
                initial.left_out,
            )
        else:
            log.info(
                "catalogue: %d tracks from a scan of MongoDB in %.2f s (%s)", loaded, seconds, initial.detail
            )
        metrics.catalogue_loaded(initial.source, seconds)
        runtime.ready.set()
        log.info(
            "recommender ready: %d tracks, model %s, catalogue from %s in %.2f s",
            len(runtime.processor.catalogue),
            runtime.processor.catalogue.version,
            initial.source,
            seconds,
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
                        reloaded = await loop.run_in_executor(None, _catalogue, settings, None)
                    except CatalogueError as err:  # keep serving the old one; try at the next check
                        log.warning("model changed but the catalogue could not be reloaded: %s", err)
                        continue
                    # Tracks that arrived since and that it lacks are placed again.
                    runtime.processor.replace_catalogue(reloaded.catalogue)
                    metrics.catalogue_loaded(reloaded.source, reloaded.seconds)
                    log.info(
                        "model changed: catalogue reloaded under %s, %d tracks from %s in %.2f s (%s)",
                        runtime.processor.catalogue.version,
                        len(reloaded.catalogue),
                        reloaded.source,
                        reloaded.seconds,
                        reloaded.detail,
                    )
    finally:
        await consumer.stop()


async def load_until_done(load: Callable[[], Awaitable[T]], first_s: float = 1.0, max_s: float = 30.0) -> T:
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
