"""Records the worker sends, held until the broker has them: nothing is committed past a lost send.

Source: the worker's outputs (:class:`recommender_stream.processor.Output`: lists on
``cadenza.recommendations``, dead letters on ``cadenza.dlq``), handed to :meth:`send`.
Destination: the Kafka producer. ``send`` returns once the record is in the producer's
buffer (no round trip per play); :meth:`settle`, which the worker's consumer awaits
before every offset commit (:mod:`recommender_stream.transport`), waits for each
record's delivery report and sends again, with backoff, every record whose delivery
failed, until all are delivered. So an offset is committed only after what its plays
caused is in Kafka; if the worker dies first, the plays are processed again (at least
once) rather than lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("cadenza.recommender.delivery")

#: Sends kept before delivered ones are dropped from the list (a few commit intervals).
PRUNE_AT: Final = 4096


@dataclass(frozen=True)
class Pending:
    topic: str
    key: bytes | None
    value: bytes
    delivery: asyncio.Future[Any]


Send = Callable[[str, bytes | None, bytes], Awaitable[asyncio.Future[Any]]]


@dataclass
class DeliveryGuard:
    """Sends through ``send_raw`` (the producer's ``send``: buffered, returns a delivery
    future) and keeps each record until its delivery is known."""

    send_raw: Send
    retry_first_s: float = 0.2
    retry_max_s: float = 5.0
    pending: list[Pending] = field(default_factory=list)
    #: Records sent again after a failed delivery, and deliveries that failed.
    resent: int = 0
    failed: int = 0

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        delivery = await self.send_raw(topic, key, value)
        self.pending.append(Pending(topic, key, value, delivery))
        if len(self.pending) >= PRUNE_AT:
            # Delivered records need no keeping; failed and unknown ones stay for settle.
            self.pending = [p for p in self.pending if not _delivered(p.delivery)]

    async def settle(self) -> None:
        """Return once every record sent so far is delivered, sending failed ones again."""
        delay = self.retry_first_s
        while self.pending:
            batch, self.pending = self.pending, []
            failed: list[Pending] = []
            for done, item in enumerate(batch):
                try:
                    await asyncio.shield(item.delivery)
                except asyncio.CancelledError:
                    self.pending = [*failed, *batch[done:], *self.pending]
                    raise
                except Exception as err:
                    self.failed += 1
                    log.warning("a record for %s was not delivered (%r); sending it again", item.topic, err)
                    failed.append(item)
            if not failed:
                continue
            await asyncio.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)
            for item in failed:
                try:
                    delivery = await self.send_raw(item.topic, item.key, item.value)
                except Exception as err:  # the producer refused at once: try again next round
                    log.warning("could not send a record for %s again (%r)", item.topic, err)
                    delivery = asyncio.get_running_loop().create_future()
                    delivery.set_exception(err)
                self.resent += 1
                self.pending.append(Pending(item.topic, item.key, item.value, delivery))


def _delivered(delivery: asyncio.Future[Any]) -> bool:
    return delivery.done() and not delivery.cancelled() and delivery.exception() is None
