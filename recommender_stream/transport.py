"""Faust's Kafka transport with the worker's fetch wait instead of Faust's fixed 1,500 ms.

aiokafka keeps one fetch in flight per broker, and a fetch leaves out the partitions whose
records are still buffered. While the plays partitions are being worked through, the
next fetch can therefore ask only for partitions that are quiet (Faust's assignor topic,
the table's changelog) and the broker holds it for the whole fetch wait: the plays that
arrive meanwhile wait with it. Faust hard-codes that wait at 1,500 ms
(``faust.transport.drivers.aiokafka``), which was the constant 1.5-2 s step in the
latency of ``bench/e2e.py`` at 200 plays/s while the worker was three quarters idle.

:class:`WorkerApp` is a ``faust.App`` whose consumer waits at most ``fetch_wait_ms``
(``Settings.faust_fetch_wait_ms``); everything else is Faust's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from recommender_stream.delivery import DeliveryGuard

#: Faust's own value, kept when an app is not a :class:`WorkerApp`.
FAUST_FETCH_WAIT_MS = 1500


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by the consumer's fetcher, which is built when the consumer starts.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", FAUST_FETCH_WAIT_MS)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        # Faust flushes the producer before committing but does not look at what the flush
        # delivered: settle first, so no offset passes a record whose send failed
        # (recommender_stream.delivery). Faust's own code path from here on.
        delivery = getattr(self.app, "delivery", None)
        if isinstance(delivery, DeliveryGuard):
            await delivery.settle()
        return bool(await super()._commit_offsets(offsets, start_new_transaction))


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = _Consumer


class WorkerApp(faust.App):
    """A Faust app on :class:`_Transport`: ``fetch_wait_ms`` bounds each fetch's wait."""

    def __init__(self, *args: Any, fetch_wait_ms: int = FAUST_FETCH_WAIT_MS, **kwargs: Any) -> None:
        self.fetch_wait_ms = fetch_wait_ms
        #: Set by ``create_app``; settled before every offset commit.
        self.delivery: DeliveryGuard | None = None
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
