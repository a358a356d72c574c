"""The progress bar of ``cadenza simulate``: sockets connected, then seconds of sending and of drain.

Sources: the stages and elapsed times the runner (:mod:`simulator.run`) and its
sockets (:mod:`simulator.sockets`) report, and the counts of the run's
:class:`simulator.report.Tally`. Destination: a rich progress bar on the console, or
nothing (no console: ``--progress`` off, e.g. in tests and benchmarks).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from simulator.report import Tally


class Bar:
    """The progress bar (or nothing): elapsed seconds of the schedule, then of the drain."""

    def __init__(self, console: Console | None, tally: Tally) -> None:
        self.tally = tally
        self.progress: Progress | None = None
        if console is not None:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                console=console,
            )
        self.task: Any = None
        self.total = 0.0

    def __enter__(self) -> Bar:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def stage(self, description: str, total: float) -> None:
        if self.progress is None:
            return
        if self.task is not None:
            self.progress.update(self.task, completed=self.total)
        self.task, self.total = self.progress.add_task(description, total=total, counts=""), total

    def update(self, done: float) -> None:
        if self.progress is None or self.task is None:
            return
        t = self.tally
        counts = (
            f"sent {t.sent} · accepted {len(t.accepted)} · failed {sum(t.failed.values())} · "
            f"recommendations {len(t.arrivals)}"
        )
        self.progress.update(self.task, completed=done, counts=counts)
