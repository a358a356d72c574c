"""Records the worker sends are kept until delivered, sent again when a delivery fails, and
the worker's consumer commits no offset before that (recommender_stream.delivery)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from recommender_stream.app import create_app
from recommender_stream.delivery import DeliveryGuard


class Producer:
    """Buffered sends whose delivery the test decides: ``fail`` holds values to fail once."""

    def __init__(self, fail: set[bytes] = frozenset(), hold: bool = False) -> None:  # type: ignore[assignment]
        self.fail, self.hold = set(fail), hold
        self.sent: list[bytes] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        self.sent.append(value)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if value in self.fail:
            self.fail.discard(value)
            fut.set_exception(RuntimeError("broker said no"))
        elif not self.hold:
            fut.set_result(len(self.sent))
        self.futures.append(fut)
        return fut


def test_a_failed_delivery_is_sent_again_before_settle_returns() -> None:
    async def scenario() -> tuple[list[bytes], int, int, int]:
        producer = Producer(fail={b"b"})
        guard = DeliveryGuard(producer.send, retry_first_s=0.01)
        for value in (b"a", b"b", b"c"):
            await guard.send("reco", b"k", value)
        await guard.settle()
        return producer.sent, guard.resent, guard.failed, len(guard.pending)

    sent, resent, failed, pending = asyncio.run(scenario())
    assert sent == [b"a", b"b", b"c", b"b"]
    assert (resent, failed, pending) == (1, 1, 0)


def test_settle_waits_for_deliveries_not_yet_known() -> None:
    async def scenario() -> tuple[bool, bool]:
        producer = Producer(hold=True)
        guard = DeliveryGuard(producer.send)
        await guard.send("reco", None, b"a")
        settling = asyncio.create_task(guard.settle())
        await asyncio.sleep(0.1)
        waited = not settling.done()
        producer.futures[0].set_result(1)
        await asyncio.wait_for(settling, 1)
        return waited, settling.done()

    assert asyncio.run(scenario()) == (True, True)


def test_a_failure_that_keeps_failing_keeps_settle_waiting() -> None:
    async def scenario() -> int:
        producer = Producer()

        async def always_fail(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
            producer.fail.add(value)
            return await producer.send(topic, key, value)

        guard = DeliveryGuard(always_fail, retry_first_s=0.01, retry_max_s=0.02)
        await guard.send("reco", None, b"a")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(guard.settle(), 0.3)
        return len(producer.sent)

    assert asyncio.run(scenario()) > 3


def test_the_workers_consumer_settles_deliveries_before_it_commits(tmp_path: Path) -> None:
    """Regression: sends were fire-and-forget (a failure only logged) and Faust committed
    the plays' offsets anyway, so a recommendation whose send failed was lost."""
    app, runtime = create_app(Settings(data_dir=tmp_path, faust_store="memory"), web_port=1)
    assert runtime.delivery is app.delivery  # type: ignore[attr-defined]

    async def scenario() -> tuple[bool, list[bytes]]:
        producer = Producer(fail={b"lost?"})
        guard = runtime.delivery
        assert guard is not None
        guard.send_raw = producer.send
        guard.retry_first_s = 0.01
        await guard.send("reco", None, b"lost?")
        committed: list[bool] = []

        async def faust_commit(self: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
            committed.append(True)
            return True

        consumer = app.consumer
        base = type(consumer).__mro__[1]
        original = base._commit_offsets
        base._commit_offsets = faust_commit
        try:
            ok = await consumer._commit_offsets({})
        finally:
            base._commit_offsets = original
        return ok and committed == [True], producer.sent

    ok, sent = asyncio.run(scenario())
    assert ok
    assert sent == [b"lost?", b"lost?"]  # sent again before the commit went ahead
