"""``cadenza recommender``: run Faust recommender workers (entry point ``cadenza.cli: recommender_stream``);
also registers ``cadenza evaluate replay`` (:mod:`recommender_stream.replay_cli`).

One worker runs in this process; ``--workers N`` starts N worker processes on
consecutive web ports (``CADENZA_FAUST_PORT`` + i) in one consumer group, so Kafka
spreads the plays partitions (and so the listeners) over them. Ctrl-C / SIGTERM
stops them all.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import typer

from infra.settings import get_settings


def recommender(
    workers: int = typer.Option(1, "--workers", min=1, max=32, help="Worker processes in the group."),
) -> None:
    """Real-time recommendations: plays -> per-listener state -> ranked "up next" lists on
    cadenza.recommendations; bad events -> dlq; /metrics on CADENZA_FAUST_PORT (+i per worker)."""
    settings = get_settings()
    if workers == 1:
        from recommender_stream.worker import main

        main(["--web-port", str(settings.faust_port)])
        return
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "recommender_stream.worker", "--web-port", str(settings.faust_port + i)]
        )
        for i in range(workers)
    ]

    def stop(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while any(p.poll() is None for p in procs):
        time.sleep(0.5)
    raise typer.Exit(max(p.returncode or 0 for p in procs))


def register(app: typer.Typer) -> None:
    from recommender_stream import replay_cli

    app.command("recommender")(recommender)
    replay_cli.register(app)
