"""Bench only: what Faust itself costs per play, without Cadenza's logic.

Started by ``bench.recommender`` as ``python -m bench.recommender.faust_floor --mode M --web-port P``
after the real worker has drained its backlog. A Faust app configured as the
recommender's (:func:`recommender_stream.app.app_options`: broker, acks, linger, commits,
table store, event loop) reads the whole plays topic, from the start, in its own consumer
group ``<recommender group>-floor-<mode>``, and does per play only:

- ``noop``: nothing (fetch, dispatch to the agent, ack, commit: Faust's floor);
- ``table``: plus one write of a small value to a changelogged table, keyed by listener;
- ``send``: plus that write and one record of the size of a Recommendation sent to
  ``<prefix>floor-sink``, as the real agent sends its list.

``GET /count`` on the web port answers how many plays the agent has taken.
"""

from __future__ import annotations

import argparse
from typing import Any

import faust

import recommender_stream.app as worker_app
from infra.logs import setup_logging
from infra.settings import get_settings
from recommender_stream.transport import WorkerApp
from recommender_stream.worker import use_event_loop
from schemas.events import Recommendation
from schemas.topics import PLAYS, TopicSpec

MODES = ("noop", "table", "send")
SINK = TopicSpec("floor-sink", "user_id", Recommendation, 1, "bench only: the floor's sends")
SINK_VALUE = b"x" * 1500  # about one Recommendation of 10 tracks as JSON


def create_floor_app(mode: str, web_port: int) -> faust.App:
    settings = get_settings()
    datadir = settings.data_dir / "faust" / f"floor-{mode}-{web_port}"
    app = WorkerApp(
        f"{settings.recommender_group}-floor-{mode}",
        **worker_app.app_options(settings, datadir, web_port),
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    plays = app.topic(settings.topic(PLAYS), partitions=PLAYS.partitions, **raw)
    sink = app.topic(settings.topic(SINK.name), partitions=1, **raw).get_topic_name()
    table = app.Table("floor", partitions=PLAYS.partitions)
    taken = [0]

    @app.agent(plays, name="plays")
    async def on_plays(stream: Any) -> None:
        producer = None
        async for event in stream.events():
            taken[0] += 1
            if mode == "noop":
                continue
            table[event.message.key.decode()] = taken[0]
            if mode == "send":
                producer = producer or await app.maybe_start_producer()
                await producer.send(sink, event.message.key, SINK_VALUE, None, None, None)

    @app.page("/count")
    async def count(web: Any, request: Any) -> Any:
        return web.text(str(taken[0]))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recommender.faust_floor")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--web-port", type=int, required=True)
    args = parser.parse_args()
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    use_event_loop(settings.event_loop)
    worker = faust.Worker(create_floor_app(args.mode, args.web_port), loglevel=settings.log_level)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
