"""Faust's table recovery without the races that drop stream events after a restart.

When a worker has had to replay the changelog (a restart, a takeover), faust-streaming
0.15.3's fetcher is already running while ``Recovery`` hands the stream partitions back, and
the consumer can hand over plays that faust then throws away while its position moves past
them:

* from "Done reading from changelog topics" until the stream partitions are resumed no
  partition is active; faust passes that live, now empty, set to aiokafka's
  ``fetched_records``, which reads an empty set as "every partition", and
  ``Consumer.getmany`` discards the stream records it gets back;
* ``on_recovery_completed`` resumes the stream partitions, awaits ``perform_seek()``, and
  only then calls ``app.flow_control.resume()``, which empties the stream buffers, plays
  fetched during the seek included (https://github.com/faust-streaming/faust/issues/596).

``perform_seek`` does not bring them back: aiokafka's ``seek_to_committed`` leaves alone the
partitions with no committed offset (or 0), and anything dropped after a partition's seek.
The restarted worker then logs "Worker ready" and processes nothing (or skips plays).

``SafeRecovery.on_recovery_completed`` keeps the fetcher's set non-empty (``_HOLD``, a
partition that never exists) so nothing more is handed over, seeks every stream partition
back (to its committed offset, or to its first offset where nothing is committed), and
only then empties the buffers and resumes the partitions and the flow, with no ``await``
in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

#: Never assigned: while it is the fetcher's only "active" partition, aiokafka returns nothing.
_HOLD: Final = TP("__cadenza.recovery.hold", -1)


class SafeRecovery(Recovery):
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
    """The stock table manager, recovering with :class:`SafeRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SafeRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
