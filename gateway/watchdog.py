"""The gateway's watchdog: a feed that cannot make progress ends the process, so its supervisor
starts a fresh one instead of a gateway serving stale lists as "ok".

Source: :class:`gateway.feed.Feed` (``progress_at``: the last fetch that answered, and
its task). Destinations: ``/healthz`` (503 with the reason once stalled, read from
:attr:`Watchdog.stalled`), the log, and SIGTERM to this process (uvicorn shuts down
gracefully; supervisord, systemd or an orchestrator restarts it).

A stall is ``CADENZA_CONSUMER_STALL_S`` seconds without an answered fetch: no broker
reachable at all, or a feed task that died. One broker lost from a cluster is not a
stall: the client fetches from the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("cadenza.gateway.watchdog")


def stall_reason(*, now: float, progress_at: float, limit_s: float, task_done: bool) -> str | None:
    """Why the feed counts as stalled, or None while it is fine (pure)."""
    if task_done:
        return "the feed task ended"
    if now - progress_at > limit_s:
        return f"no answer from Kafka for {now - progress_at:.0f} s (limit {limit_s:.0f} s)"
    return None


def terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Watchdog:
    """Checks the feed every ``every_s``; on a stall, records why and calls ``on_stall``."""

    limit_s: float
    every_s: float = 5.0
    on_stall: Callable[[], None] = terminate_self
    stalled: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def watch(self, progress_at: Callable[[], float], feed_task: asyncio.Task[None]) -> None:
        while self.stalled is None:
            await asyncio.sleep(self.every_s)
            reason = stall_reason(
                now=time.monotonic(),
                progress_at=progress_at(),
                limit_s=self.limit_s,
                task_done=feed_task.done(),
            )
            if reason is not None:
                self.stalled = reason
                log.error("gateway stalled: %s; exiting so that it is restarted", reason)
                self.on_stall()
