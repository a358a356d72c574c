"""Progress bars and end-of-run tables of the ETL commands, drawn with rich.

Source: ``progress(done, total)`` callbacks of the batch job (:mod:`etl.job`), the
feature import (:mod:`etl.import_features`) and the sample-data generator, and their
summaries as ``(label, value)`` rows. Destination: the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


@contextmanager
def progress_bar(description: str, console: Console | None = None) -> Iterator[Callable[[int, int], None]]:
    """A live bar; yields the ``progress(done, total)`` callback that moves it."""
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def summary_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table of a run's figures."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for label, value in rows:
        table.add_row(label, value)
    return table
