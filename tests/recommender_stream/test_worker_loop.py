"""The worker's event loop choice (CADENZA_EVENT_LOOP): made before Faust creates its loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from recommender_stream.worker import use_event_loop


@pytest.fixture(autouse=True)
def restore_policy() -> Iterator[None]:
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


@pytest.mark.parametrize(("name", "kind"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)])
def test_the_chosen_loop_is_the_one_new_loops_are(name: str, kind: type) -> None:
    use_event_loop(name)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, kind)
        assert isinstance(loop, uvloop.Loop) == (name == "uvloop")
    finally:
        loop.close()
