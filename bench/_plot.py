"""Bench only: one PNG figure, drawn by the caller and saved on leaving the block.

Used by ``bench/_e2e_report.py`` and ``bench/_faults_report.py``: they draw their results on
the axes this yields; the figure is laid out and written to ``path`` (``bench/results/*.png``
or the script's ``--plot``) at 110 dpi with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def saved_figure(path: Path, rows: int, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(figure, axes)`` of ``plt.subplots(rows, 1, **subplots)``; saved to ``path`` and closed
    when the block ends (neither when it raises)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, **subplots)
    yield fig, axes
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
