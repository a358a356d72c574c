"""The ``plays`` agent in Faust's test context (in process, no broker): state, outputs, dead letters."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from infra.prometheus import parse_metrics, samples
from infra.settings import Settings
from recommender_stream.app import create_app
from recommender_stream.catalogue import Catalogue
from recommender_stream.processor import Output
from schemas.codec import decode, encode, encode_key
from schemas.events import DeadLetter, PlayEvent, PlayKind, Recommendation


def test_agent_updates_the_table_and_emits_lists_and_dead_letters(tmp_path: Path) -> None:
    app, runtime = create_app(Settings(data_dir=tmp_path, faust_store="memory", reco_k=4), web_port=1)
    catalogue = Catalogue(model=None, dims=2)
    for i in range(12):
        catalogue.add(i + 1, i % 2, np.array([5.0 * (i % 2), 0.1 * i]), f"t{i + 1}")
    runtime.processor.catalogue = catalogue
    runtime.ready.set()
    sent: list[Output] = []

    async def collect(items: list[Output]) -> None:
        sent.extend(items)

    runtime.send = collect
    agent = app.agents["plays"]
    first = PlayEvent(user_id="alice", track_id=3, kind=PlayKind.PLAY)

    async def run() -> None:
        async with agent.test_context() as ctx:
            await ctx.put(key=encode_key("alice"), value=encode(first))
            await ctx.put(key=encode_key("alice"), value=encode(first))  # redelivered
            await ctx.put(
                key=encode_key("alice"), value=encode(PlayEvent(user_id="alice", track_id=5, kind="like"))
            )
            await ctx.put(key=encode_key("bob"), value=b"{broken")
            await ctx.put(
                key=encode_key("bob"), value=encode(PlayEvent(user_id="bob", track_id=99, kind="play"))
            )

    asyncio.run(run())
    lists = [decode(Recommendation, o.value) for o in sent if o.topic == "recommendations"]
    letters = [decode(DeadLetter, o.value) for o in sent if o.topic == "dlq"]
    # The duplicate is answered again (its first answer may have been lost in a crash),
    # from the same state: it is not counted twice.
    assert [r.user_id for r in lists] == ["alice", "alice", "alice"]
    assert lists[0].cause_event_id == lists[1].cause_event_id == first.event_id
    assert [i.track_id for i in lists[1].items] == [i.track_id for i in lists[0].items]
    assert all(len(r.items) == 4 for r in lists)
    assert {i.cluster for i in lists[2].items} == {0}  # both plays were cluster 0 (odd ids)
    assert not {3, 5} & {i.track_id for i in lists[2].items}
    assert [d.error_class for d in letters] == ["SchemaError", "UnknownTrackError"]
    metrics = runtime.processor.metrics
    assert samples(metrics)[f'cadenza_recommender_duplicates_total{{worker="{metrics.worker}"}}'] == 1


def test_the_workers_session_follows_the_setting_and_the_local_brokers_accept_it(tmp_path: Path) -> None:
    """The session timeout is the setting (heartbeats three per session), and the local
    brokers accept it: their group.min.session.timeout.ms is no longer than the default."""
    from infra.stack.kafka import server_properties

    settings = Settings(data_dir=tmp_path, faust_store="memory", faust_session_timeout_s=2.5)
    app, _ = create_app(settings, web_port=1)
    assert app.conf.broker_session_timeout == 2.5
    assert abs(app.conf.broker_heartbeat_interval - 2.5 / 3) < 1e-9
    props = dict(
        line.split("=", 1) for line in server_properties(Settings(data_dir=tmp_path), tmp_path).splitlines()
    )
    assert int(props["group.min.session.timeout.ms"]) <= Settings().faust_session_timeout_s * 1000


def test_the_workers_consumer_waits_for_fetches_as_long_as_the_setting_not_fausts_fixed_1500_ms(
    tmp_path: Path,
) -> None:
    """aiokafka keeps one fetch in flight per broker: a fetch for quiet partitions alone holds
    back the plays for the whole wait, so the worker's wait is the setting (Faust's is 1.5 s)."""
    import asyncio

    import faust

    from recommender_stream.transport import FAUST_FETCH_WAIT_MS

    async def fetch_wait(app: faust.App) -> int:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)
        return int(consumer._fetch_max_wait_ms)

    settings = Settings(data_dir=tmp_path, faust_store="memory", faust_fetch_wait_ms=40)
    app, _ = create_app(settings, web_port=1)
    assert asyncio.run(fetch_wait(app)) == 40
    stock = faust.App(
        "stock", broker="kafka://127.0.0.1:1", store="memory://", datadir=str(tmp_path / "stock")
    )
    assert asyncio.run(fetch_wait(stock)) == FAUST_FETCH_WAIT_MS


def test_the_metrics_page_is_prometheus_text_from_the_workers_own_registry(tmp_path: Path) -> None:
    app, runtime = create_app(Settings(data_dir=tmp_path, faust_store="memory"), web_port=1)
    metrics = runtime.processor.metrics
    metrics.event_in()
    metrics.dead_letter("SchemaError")
    metrics.recommendation_out(0.003)
    response = asyncio.run(app.web.views["/metrics"].get(None))
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    families = list(text_string_to_metric_families(response.body.decode()))
    types = {sample.name: family.type for family in families for sample in family.samples}
    assert types["cadenza_recommender_events_total"] == "counter"
    assert types["cadenza_recommender_processing_seconds_bucket"] == "histogram"
    assert types["process_start_time_seconds"] == "gauge"
    assert not [name for name in types if name.endswith("_created")]
    values = parse_metrics(response.body.decode())
    worker = f'worker="{os.getpid()}"'
    assert values[f"cadenza_recommender_events_total{{{worker}}}"] == 1
    assert values[f"cadenza_recommender_duplicates_total{{{worker}}}"] == 0
    assert values[f'cadenza_recommender_dead_letters_total{{reason="SchemaError",{worker}}}'] == 1
    assert values[f'cadenza_recommender_processing_seconds_bucket{{le="0.0025",{worker}}}'] == 0
    assert values[f'cadenza_recommender_processing_seconds_bucket{{le="0.005",{worker}}}'] == 1
