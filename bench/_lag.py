"""Bench only: consumer lag sampled in a thread while a benchmark runs.

Used by ``bench/e2e.py`` and ``bench/faults.py``. Data comes from
:func:`infra.offsets.lag_rows` (the broker's committed and log-end offsets, and the Spark
queries' checkpoints: the source of ``cadenza lag`` and ``/metrics``), read every ``every``
seconds and summed per consumer (a group or a Spark query). Each read is kept twice, for
the two ways the scripts use it:

- :attr:`LagSampler.samples`: ``(wall time when the read returned, {consumer: lag})``, the
  successful reads only; with :attr:`~LagSampler.kinds` (consumer -> ``group``/``query``),
  :attr:`~LagSampler.errors` (failed reads counted by message) and
  :attr:`~LagSampler.read_s` (seconds each round took). ``bench/e2e.py`` reads these for
  its per-phase lag figures, ``results["lag"]`` and ``lag_series`` in its JSON and plot.
- :attr:`LagSampler.rows`: one timeline row per round, ``{"t": seconds since the sampler
  was made (when the round began), "lag": {...}, <extra>, "error": "..."}`` ("lag"
  missing when the read failed, "error" only when something failed). ``bench/faults.py``
  writes them as ``timeline`` in its JSON and plots them.

``keep`` chooses the rows that count (default: all), ``extra`` adds fields to each
timeline row in place (read in the same round, after the lag: what it set before a failure
stays), and ``steady`` paces rounds every
``every`` s from their start (True) or waits ``every`` s after each round (False).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from infra.offsets import LagRow, lag_rows
from infra.settings import Settings

Sample = tuple[float, dict[str, int]]


class LagSampler(threading.Thread):
    """:func:`lag_rows` every ``every`` s, summed per consumer, until :meth:`stop`."""

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
