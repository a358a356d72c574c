"""The recommender worker's ``faust.App``: the worker's fetch wait instead of Faust's fixed
1,500 ms, and no offset committed past a send that failed.

The overrides of Faust's and aiokafka's internals this needs live in
:mod:`infra.faust_internals` (:class:`~infra.faust_internals.FetchWaitApp`); this module
adds what is the worker's own: settling the :class:`~recommender_stream.delivery.DeliveryGuard`
before every commit.
"""

from __future__ import annotations

from typing import Any

from infra.faust_internals import FAUST_FETCH_WAIT_MS, FetchWaitApp
from recommender_stream.delivery import DeliveryGuard

__all__ = ["FAUST_FETCH_WAIT_MS", "WorkerApp"]


class WorkerApp(FetchWaitApp):
    """A Faust app whose fetches wait at most ``fetch_wait_ms`` (``Settings.faust_fetch_wait_ms``)
    and whose sends are settled before each offset commit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Set by ``create_app``; settled before every offset commit.
        self.delivery: DeliveryGuard | None = None
        super().__init__(*args, **kwargs)

    async def before_commit(self) -> None:
        # Faust's own flush does not say what it delivered: resend what failed first
        # (recommender_stream.delivery), so no offset passes a record whose send failed.
        if self.delivery is not None:
            await self.delivery.settle()
