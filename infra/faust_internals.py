"""Every use of a faust-streaming or aiokafka private, in one place, for the exact releases in
:data:`PINNED`.

Cadenza's recommender workers (``recommender_stream``) and the gateway's Kafka feed
(``gateway/feed.py``) need a few things the two libraries' public APIs do not offer. Each
override below names the upstream behaviour it works around. A newer release may rename or
change any of them without notice, so a worker refuses to start on another version
(:func:`require_pinned`) and ``tests/infra/test_lock.py`` fails. To upgrade: re-read each
override against the new release's source, run the tests, then change :data:`PINNED`
together with ``requirements.lock``.

* :class:`SafeTableManager` / :class:`SafeRecovery`: table recovery without the races that
  drop stream events after a restart or takeover (faust-streaming issue #596).
* :class:`FetchWaitApp`: a ``faust.App`` whose consumer's fetch waits ``fetch_wait_ms``, not
  Faust's hard-coded 1,500 ms, and which awaits ``app.before_commit()`` before every offset
  commit (Faust flushes the producer before committing but ignores what the flush delivered).
* :func:`force_metadata_update`: fresh partition metadata from an ``AIOKafkaConsumer``
  (aiokafka has no public call for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any, ClassVar, Final

import aiokafka
import faust
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

# --- the releases these overrides were written and tested against ------------------------

#: Distribution name -> the exact version the code below was written and tested against.
PINNED: Final[Mapping[str, str]] = {
    "faust-streaming": "0.15.3",
    "aiokafka": "0.14.0",
}


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(
    installed: Callable[[str], str | None] = installed_version,
    pinned: Mapping[str, str] = PINNED,
) -> list[str]:
    """One line per pinned package whose installed version differs (empty when all match)."""
    problems = []
    for name, want in pinned.items():
        have = installed(name)
        if have != want:
            problems.append(f"{name} {have or 'not installed'} is installed, Cadenza needs {name}=={want}")
    return problems


def refusal(problems: list[str]) -> str:
    """The message a worker exits with when :func:`mismatches` found ``problems``."""
    return (
        "recommender_stream: refusing to start: "
        + "; ".join(problems)
        + ". Its recovery and transport rely on internals of exactly these releases "
        "(infra/faust_internals.py). Install the lock: `bash infra/bootstrap.sh`."
    )


def require_pinned(installed: Callable[[str], str | None] = installed_version) -> None:
    """Exit with :func:`refusal`'s message unless the pinned versions are installed."""
    problems = mismatches(installed)
    if problems:
        raise SystemExit(refusal(problems))


# --- aiokafka: partition metadata -------------------------------------------------------


async def force_metadata_update(consumer: aiokafka.AIOKafkaConsumer) -> None:
    """Refresh ``consumer``'s cluster metadata now, so ``partitions_for_topic`` sees topics and
    partitions created since it started (aiokafka refreshes on its own only every
    ``metadata_max_age_ms``; ``AIOKafkaConsumer._client`` is private)."""
    await consumer._client.force_metadata_update()


# --- faust: table recovery --------------------------------------------------------------

#: Never assigned: while it is the fetcher's only "active" partition, aiokafka returns nothing.
_HOLD: Final = TP("__cadenza.recovery.hold", -1)


class SafeRecovery(Recovery):
    """Faust's table recovery without the races that drop stream events after a restart.

    When a worker has had to replay the changelog (a restart, a takeover), faust-streaming
    0.15.3's fetcher is already running while ``Recovery`` hands the stream partitions back,
    and the consumer can hand over plays that faust then throws away while its position
    moves past them:

    * from "Done reading from changelog topics" until the stream partitions are resumed no
      partition is active; faust passes that live, now empty, set to aiokafka's
      ``fetched_records``, which reads an empty set as "every partition", and
      ``Consumer.getmany`` discards the stream records it gets back;
    * ``on_recovery_completed`` resumes the stream partitions, awaits ``perform_seek()``, and
      only then calls ``app.flow_control.resume()``, which empties the stream buffers, plays
      fetched during the seek included (https://github.com/faust-streaming/faust/issues/596).

    ``perform_seek`` does not bring them back: aiokafka's ``seek_to_committed`` leaves alone
    the partitions with no committed offset (or 0), and anything dropped after a partition's
    seek. The restarted worker then logs "Worker ready" and processes nothing (or skips plays).

    :meth:`on_recovery_completed` keeps the fetcher's set non-empty (``_HOLD``, a partition
    that never exists) so nothing more is handed over, seeks every stream partition back (to
    its committed offset, or to its first offset where nothing is committed), and only then
    empties the buffers and resumes the partitions and the flow, with no ``await`` in between.
    Privates used: ``Consumer._get_active_partitions()`` (the set the running fetcher reads),
    ``Consumer._committed_offset``, ``app._fetcher``, ``Recovery._set_recovery_ended``,
    ``Recovery._is_changelog_tp`` and ``Recovery._wait``.
    """

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """``Recovery.on_recovery_completed``: hold the fetcher, seek, clear, then resume."""
        app: Any = self.app
        consumer = app.consumer
        active = consumer._get_active_partitions()  # the set the running fetcher reads
        active.add(_HOLD)
        try:
            self.log.info("Restore complete!")
            await app.on_rebalance_complete.send()
            self._set_recovery_ended()
            callbacks = [
                asyncio.ensure_future(
                    table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
                )
                for table in self.tables.values()
            ]
            if callbacks:
                await asyncio.wait(callbacks)
            if app.consumer_generation_id != generation_id:
                self.log.warning("Recovery rebalancing again (generation %r)", app.consumer_generation_id)
                return
            streams = {tp for tp in consumer.assignment() if not self._is_changelog_tp(tp)}
            if streams:
                self.log.info("Seek stream partitions to committed offsets.")
                timeout = app.conf.broker_request_timeout
                await self._wait(consumer.perform_seek(), timeout=timeout)
                await self._wait(self._seek_uncommitted(streams), timeout=timeout)
        finally:
            active.discard(_HOLD)
        self.completed.set()
        app.flow_control.resume()  # empties the stream buffers: nothing of this generation is in them
        consumer.resume_partitions(streams)
        consumer.resume_flow()
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _seek_uncommitted(self, tps: Iterable[TP]) -> None:
        """Seek the partitions ``perform_seek`` left alone (nothing committed) to their start."""
        consumer: Any = self.app.consumer
        missing = [tp for tp in tps if not consumer._committed_offset.get(tp)]
        if missing and self.app.conf.consumer_auto_offset_reset == "earliest":
            await consumer.seek_wait(await consumer.earliest_offsets(*missing))


class SafeTableManager(TableManager):
    """The stock table manager, recovering with :class:`SafeRecovery` (``_recovery`` is the
    private slot faust's own ``recovery`` property fills)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SafeRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


# --- faust: the consumer's fetch wait and commits ---------------------------------------

#: Faust's own fetch wait (``faust.transport.drivers.aiokafka``), kept by a plain ``faust.App``.
FAUST_FETCH_WAIT_MS = 1500


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    # Faust builds the aiokafka consumer with fetch_max_wait_ms=1500 hard-coded and no
    # setting for it. aiokafka keeps one fetch in flight per broker, and a fetch leaves out
    # the partitions whose records are still buffered: while the plays partitions are being
    # worked through, the next fetch can ask only for quiet partitions (the assignor topic,
    # the table's changelog) and the broker holds it for the whole wait, and the plays that
    # arrive meanwhile wait with it (the constant 1.5-2 s step in bench.e2e's latency at
    # 200 plays/s). ``_create_worker_consumer`` is private; ``_fetch_max_wait_ms`` is read by
    # aiokafka's fetcher, which is built when the consumer starts.
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", FAUST_FETCH_WAIT_MS)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # Faust flushes the producer before committing but does not look at what the flush
    # delivered, so an offset can pass a record whose send failed. ``_commit_offsets`` is the
    # private step every commit goes through: the app settles its sends first.
    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        before_commit = getattr(self.app, "before_commit", None)
        if before_commit is not None:
            await before_commit()
        return bool(await super()._commit_offsets(offsets, start_new_transaction))


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = _Consumer


class FetchWaitApp(faust.App):
    """A ``faust.App`` on the transport above: ``fetch_wait_ms`` bounds each fetch's wait, and
    :meth:`before_commit` runs before every offset commit (override it)."""

    def __init__(self, *args: Any, fetch_wait_ms: int = FAUST_FETCH_WAIT_MS, **kwargs: Any) -> None:
        self.fetch_wait_ms = fetch_wait_ms
        super().__init__(*args, **kwargs)

    async def before_commit(self) -> None:
        """Awaited before every offset commit; nothing here."""

    def _new_transport(self) -> Any:  # faust's private factory of the app's transport
        return _Transport(self.conf.broker_consumer, self)
