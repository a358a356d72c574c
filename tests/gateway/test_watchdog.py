"""The gateway's watchdog ends a process whose feed cannot make progress (gateway.watchdog)."""

from __future__ import annotations

import asyncio
import time

from gateway.watchdog import Watchdog, stall_reason


def test_stall_reasons() -> None:
    assert stall_reason(now=100, progress_at=95, limit_s=10, task_done=False) is None
    assert "no answer from Kafka for 15 s" in str(
        stall_reason(now=110, progress_at=95, limit_s=10, task_done=False)
    )
    assert stall_reason(now=100, progress_at=100, limit_s=10, task_done=True) == "the feed task ended"


def test_a_stalled_feed_triggers_the_exit_and_a_healthy_one_does_not() -> None:
    async def scenario(progress: float, feed_ends: bool) -> tuple[str | None, int]:
        calls: list[int] = []
        dog = Watchdog(limit_s=0.2, every_s=0.05, on_stall=lambda: calls.append(1))

        async def feed() -> None:
            if not feed_ends:
                await asyncio.sleep(10)

        task = asyncio.create_task(feed())
        stamp = time.monotonic() + progress
        watcher = asyncio.create_task(dog.watch(lambda: stamp if progress < 0 else time.monotonic(), task))
        await asyncio.sleep(0.5)
        watcher.cancel()
        task.cancel()
        return dog.stalled, len(calls)

    assert asyncio.run(scenario(0.0, False)) == (None, 0)
    reason, calls = asyncio.run(scenario(-5.0, False))
    assert reason is not None and "no answer from Kafka" in reason and calls == 1
    reason, calls = asyncio.run(scenario(0.0, True))
    assert reason == "the feed task ended" and calls == 1
