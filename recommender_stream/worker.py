"""Run one Faust recommender worker in this process (``python -m recommender_stream.worker``).

Source: settings from the environment; ``--web-port`` overrides ``CADENZA_FAUST_PORT``
(each worker on a machine needs its own). Runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio

import faust

from infra.faust_internals import require_pinned
from infra.logs import setup_logging
from infra.settings import get_settings
from recommender_stream.app import create_app


def use_event_loop(name: str) -> None:
    """Make ``name`` ("uvloop" or "asyncio") the loop Faust's worker creates (before it does)."""
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="recommender_stream.worker")
    parser.add_argument("--web-port", type=int, default=None)
    args = parser.parse_args(argv)
    require_pinned()  # infra/faust_internals.py relies on internals of these exact releases
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    use_event_loop(settings.event_loop)
    app, _ = create_app(settings, web_port=args.web_port)
    worker = faust.Worker(app, loglevel=settings.log_level)
    # Faust's terminal spinner (on at WARNING and above) sets the root logger to DEBUG, so
    # every debug call on the hot path (one per record produced) built a LogRecord.
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
