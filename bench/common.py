"""Bench only: what the benchmarks share (each is run as ``python -m bench.<name>``).

- **the run guard**: :func:`bounded` (an argparse number type within bounds: a clear usage
  error instead of a crash deep in a run, e.g. ``--backlog 0`` dividing by zero), :func:`run`
  (SIGINT/SIGTERM raise ``KeyboardInterrupt`` at once so a runner's ``finally`` stops what it
  started; exit 130) and :func:`raise_nofile` (open-files limit up to the hard one);
- **a temporary stack**: :func:`temporary_stack`, a local stack (Kafka + FerretDB) of the
  bench's own, on free ports in a temporary data dir, always brought down;
- **results**: :data:`RESULTS_DIR` (``bench/results/``, every bench's default output),
  :func:`write_json` and :func:`saved_figure` (a PNG drawn by the caller);
- **figures**: :func:`pct` and :func:`percentiles`, :func:`ms` (a duration for a table) and
  :func:`cpu_seconds` (of a process, from ``/proc``);
- **consumer lag**: :class:`LagSampler`, sampled in a thread while a bench runs
  (``bench.e2e``, ``bench.faults``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where used: ``import bench.common`` stays light (bench.etl's child)
    from infra.offsets import LagRow
    from infra.settings import Settings
    from infra.stack.manager import LocalStack

#: Where every bench writes its JSON (and PNG) unless told otherwise (``--out``, ``--plot``).
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# --- the run guard ------------------------------------------------------------------------------


def bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside [{low:g}, {high:g}]")
        return value

    return parse


def interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(main: Callable[[], None]) -> None:
    """``main()`` with Ctrl-C and SIGTERM raising ``KeyboardInterrupt`` at once, also inside
    ``asyncio.run`` (which would otherwise turn Ctrl-C into a cancellation that aiokafka's
    ``stop()`` can swallow), so every ``finally`` stops what it started; then exit 130."""
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        main()
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'SIGINT'}); everything started was stopped", file=sys.stderr)
        sys.exit(130)


def raise_nofile() -> int:
    """Raise this process's (so its children's) open-files soft limit to the hard one."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


# --- a temporary stack ---------------------------------------------------------------------------


@contextmanager
def temporary_stack(
    prefix: str = "cadenza-bench-", *, data: str | None = None, up: bool = True, **overrides: Any
) -> Iterator[tuple[LocalStack, Path]]:
    """``(stack, temporary dir)``: a local stack (Kafka + FerretDB) of the bench's own, its data
    dir the temporary dir (or its sub-directory ``data``), Kafka and FerretDB on free ports,
    then ``overrides`` (:class:`infra.settings.Settings` fields). Brought up first unless
    ``up=False``, and down when the block ends, also on error or Ctrl-C."""
    from infra.settings import Settings
    from infra.stack.manager import LocalStack
    from infra.stack.process import free_port

    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        settings = Settings(
            data_dir=Path(tmp) / data if data else Path(tmp),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            ferretdb_port=free_port(),
            **overrides,
        )
        stack = LocalStack(settings)
        try:
            if up:
                stack.up()
            yield stack, Path(tmp)
        finally:
            stack.down()


# --- results -------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy numbers as Python numbers; anything else JSON cannot write, as its ``str()``."""
    return value.item() if isinstance(value, np.generic) else str(value)


def write_json(path: Path, results: dict[str, Any]) -> None:
    """``results`` as indented JSON in ``path`` (its directory made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=_plain) + "\n")


@contextmanager
def saved_figure(path: Path, rows: int, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(figure, axes)`` of ``plt.subplots(rows, 1, **subplots)`` for the caller to draw on;
    laid out, saved to ``path`` (``bench/results/*.png`` or a runner's ``--plot``) at 110 dpi
    with matplotlib's Agg backend (no display needed) and closed when the block ends (neither
    when it raises)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, **subplots)
    yield fig, axes
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- figures -------------------------------------------------------------------------------------


def pct(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile of ``values`` (None when there are none)."""
    return float(np.percentile(values, q)) if len(values) else None


def percentiles(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """p50, p95, p99 and max of ``values`` (None each when there are none): the simulator's
    own summary, so a bench and ``cadenza simulate`` report latencies the same way."""
    from simulator.report import latency_summary  # here: ``import bench.common`` stays light

    return latency_summary(values)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process, all threads (Linux ``/proc``; 0 when unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- consumer lag --------------------------------------------------------------------------------

Sample = tuple[float, dict[str, int]]


class LagSampler(threading.Thread):
    """:func:`infra.offsets.lag_rows` every ``every`` s, summed per consumer, until :meth:`stop`.

    The rows are the broker's committed and log-end offsets and the Spark queries'
    checkpoints (the source of ``cadenza lag`` and ``/metrics``), summed per consumer (a
    group or a Spark query). Each read is kept twice, for the two ways the benches use it:

    - :attr:`samples`: ``(wall time when the read returned, {consumer: lag})``, the
      successful reads only; with :attr:`kinds` (consumer -> ``group``/``query``),
      :attr:`errors` (failed reads counted by message) and :attr:`read_s` (seconds each round
      took). ``bench.e2e`` reads these for its per-phase lag figures, ``results["lag"]`` and
      ``lag_series`` in its JSON and plot.
    - :attr:`rows`: one timeline row per round, ``{"t": seconds since the sampler was made
      (when the round began), "lag": {...}, <extra>, "error": "..."}`` ("lag" missing when
      the read failed, "error" only when something failed). ``bench.faults`` writes them as
      ``timeline`` in its JSON and plots them.

    ``keep`` chooses the rows that count (default: all), ``extra`` adds fields to each
    timeline row in place (read in the same round, after the lag: what it set before a
    failure stays), and ``steady`` paces rounds every ``every`` s from their start (True) or
    waits ``every`` s after each round (False)."""

    def __init__(
        self,
        settings: Settings,
        every: float,
        *,
        keep: Callable[[LagRow], bool] | None = None,
        extra: Callable[[dict[str, Any]], None] | None = None,
        steady: bool = True,
    ) -> None:
        super().__init__(name="lag-sampler", daemon=True)
        self.settings, self.every = settings, every
        self.keep, self.extra, self.steady = keep, extra, steady
        self.t0 = time.time()
        self.samples: list[Sample] = []
        self.rows: list[dict[str, Any]] = []
        self.kinds: dict[str, str] = {}
        self.errors: Counter[str] = Counter()
        self.read_s: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            self.rows.append(self.read())
            took = time.monotonic() - started
            self.read_s.append(took)
            self.halt.wait(max(0.0, self.every - took) if self.steady else self.every)

    def read(self) -> dict[str, Any]:
        """One round: the lag (kept in :attr:`samples` too), then ``extra``; failures noted."""
        from infra.offsets import lag_rows

        row: dict[str, Any] = {"t": time.time() - self.t0}
        try:
            totals: dict[str, int] = {}
            for r in lag_rows(self.settings):
                if self.keep is None or self.keep(r):
                    totals[r.name] = totals.get(r.name, 0) + r.lag
                    self.kinds[r.name] = r.kind
            self.samples.append((time.time(), totals))
            row["lag"] = dict(totals)
            if self.extra is not None:
                self.extra(row)
        except Exception as err:  # e.g. a broker just died: note it, keep sampling
            self.errors[f"{type(err).__name__}: {str(err)[:80]}"] += 1
            row["error"] = f"{type(err).__name__}: {err}"[:200]
        return row

    def stop(self, timeout: float = 30.0) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(timeout)

    def latest(self) -> dict[str, int]:
        return dict(self.samples[-1][1]) if self.samples else {}

    def between(self, start: float = -math.inf, end: float = math.inf) -> list[Sample]:
        return [(t, lag) for t, lag in list(self.samples) if start <= t <= end]

    def zero_after(self, since: float, until: float) -> dict[str, float | None]:
        """Per consumer, seconds from ``since`` to its first sample with lag 0 (None: not by ``until``)."""
        out: dict[str, float | None] = dict.fromkeys(self.kinds)
        for t, lag in self.between(since, until):
            for name, value in lag.items():
                if value == 0 and out.get(name) is None:
                    out[name] = t - since
        return out

    def peak(self, start: float = -math.inf, end: float = math.inf) -> dict[str, int]:
        """Per consumer seen so far, its largest lag in the samples from ``start`` to ``end`` (0: none)."""
        window = self.between(start, end)
        return {name: max((lag.get(name, 0) for _, lag in window), default=0) for name in self.kinds}
