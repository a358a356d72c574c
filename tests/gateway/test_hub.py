"""The fan-out hub: right listener only, slow connections flagged, latest list per listener."""

from __future__ import annotations

import asyncio
import json

from gateway.hub import CLOSE_SLOW, Hub


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_push_reaches_only_that_listeners_connections() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=4)
        a1, a2, b = hub.connect("a"), hub.connect("a"), hub.connect("b")
        assert hub.push("a", "for-a") == 2
        assert a1.pending[0][0] == a2.pending[0][0] == "for-a"
        assert not b.pending and a1.wake.is_set() and not b.wake.is_set()
        assert hub.latest("a") == "for-a" and hub.latest("b") is None
        assert hub.count() == 3 and hub.listeners() == 2
        hub.disconnect(a1)
        assert hub.push("a", "again") == 1
        hub.disconnect(a2)
        assert hub.listeners() == 1 and hub.metrics.connections == 1

    run(scenario())


def test_a_full_queue_marks_the_connection_slow_without_touching_others() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=2)
        slow, fast = hub.connect("s"), hub.connect("f")
        for i in range(2):
            assert hub.push("s", f"m{i}") == 1
        assert slow.closing is None
        assert hub.push("s", "m2") == 0
        assert hub.push("s", "m3") == 0
        assert slow.closing == CLOSE_SLOW and hub.metrics.slow_disconnects == 1
        assert hub.push("f", "ok") == 1 and fast.closing is None
        assert hub.latest("s") == "m3"  # remembered for the next connection all the same

    run(scenario())


def test_broadcast_reaches_everyone_and_the_latest_cache_is_bounded() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=4, latest_kept=3)
        conns = [hub.connect(u) for u in ("a", "b", "c")]
        assert hub.broadcast(7, '{"w":"hot"}', 60.0)
        assert all(c.next_message() is None for c in conns)  # nothing before the flush
        assert hub.flush_trending() == 3 and hub.flush_trending() == 0
        expected = '{"type":"batch","messages":[{"w":"hot"}]}'
        assert [text for text, _ in (c.next_message() or ("", 0.0) for c in conns)] == [expected] * 3
        assert hub.trending == {7: '{"w":"hot"}'} and hub.metrics.trending_flushes == 1
        for user in ("u1", "u2", "u3", "u1", "u4"):
            hub.remember(user, user)
        assert [hub.latest(u) for u in ("u1", "u2", "u3", "u4")] == ["u1", None, "u3", "u4"]

    run(scenario())


def test_the_heartbeat_pings_and_closes_silent_sockets() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=8)
        quiet, chatty = hub.connect("q"), hub.connect("c")
        beat = asyncio.create_task(hub.heartbeat(0.02))
        for _ in range(6):
            await asyncio.sleep(0.02)
            chatty.heard()
        beat.cancel()
        assert any('"ping"' in text for text, _ in chatty.pending) and chatty.closing is None
        assert quiet.closing == CLOSE_SLOW

    run(scenario())


def test_a_burst_of_trending_windows_keeps_the_newest_per_cluster_and_never_closes() -> None:
    """The streaming job emits every open window of every updated cluster per micro-batch:
    far more than a queue holds. Each connection gets one batch frame per flush with one
    window per cluster, the newest, and stays open; an older window arriving late is not
    forwarded; windows a slow writer has not sent yet merge with the next flush's."""

    async def scenario() -> None:
        hub = Hub(queue_size=4)
        conn = hub.connect("a")
        for end in range(10):  # ten sliding windows ...
            for cluster in range(8):  # ... of eight clusters: 80 messages
                assert hub.broadcast(cluster, f'"c{cluster}-w{end}"', 60.0 * end)
        assert not hub.broadcast(3, '"c3-stale"', 0.0)
        assert hub.trending[3] == '"c3-w9"'
        assert hub.flush_trending() == 1
        assert conn.closing is None and hub.metrics.slow_disconnects == 0
        # Not sent yet: the next flush's windows merge in, newest per cluster.
        assert hub.broadcast(2, '"c2-w10"', 600.0) and hub.broadcast(9, '"c9-w10"', 600.0)
        assert hub.flush_trending() == 1
        frames = []
        while (message := conn.next_message()) is not None:
            frames.append(json.loads(message[0]))
        assert len(frames) == 1 and frames[0]["type"] == "batch"
        expected = {f"c{c}-w9" for c in range(8)} - {"c2-w9"} | {"c2-w10", "c9-w10"}
        assert set(frames[0]["messages"]) == expected and len(frames[0]["messages"]) == 9
        # A new connection is greeted with the latest list, then every cluster's newest window.
        hub.push("b", "list-b")
        b = hub.connect("b")
        hub.greet(b)
        greeted = []
        while (message := b.next_message()) is not None:
            greeted.append(message[0])
        assert greeted[0] == "list-b" and len(greeted) == 2
        assert set(json.loads(greeted[1])["messages"]) == set(json.loads(hub_batch(hub))["messages"])

    run(scenario())


def hub_batch(hub: Hub) -> str:
    return '{"type":"batch","messages":[' + ",".join(hub.trending.values()) + "]}"


def test_the_trending_pump_flushes_at_most_once_per_interval() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=4)
        conn = hub.connect("a")
        pump = asyncio.create_task(hub.trending_pump(0.05))
        try:
            for i in range(40):  # 40 windows in ~0.2 s: about four flushes, not 40 frames
                hub.broadcast(i % 3, f'"w{i}"', float(i))
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.12)
        finally:
            pump.cancel()
        frames = []
        while (message := conn.next_message()) is not None:
            frames.append(json.loads(message[0]))
        # Never read by a writer: every flush merged into one held frame with the newest per cluster.
        assert len(frames) == 1 and set(frames[0]["messages"]) == {"w37", "w38", "w39"}
        assert 2 <= hub.metrics.trending_flushes <= 8

    run(scenario())
