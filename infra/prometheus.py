"""Prometheus text exposition (format 0.0.4) for Cadenza's ``/metrics`` pages, without a client library.

Sources: counters, gauges and histograms kept by each service in memory
(``recommender_stream.metrics``, ``gateway.metrics``). Destination: the text a
Prometheus server scrapes. Pure formatting; one process's values only.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Latency buckets (seconds) shared by every histogram.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Labels = Mapping[str, str | int]


def _escape(value: str | int) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(labels: Labels | None) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels | None, float | int]]
) -> list[str]:
    """Lines of one metric family: HELP, TYPE and one line per labelled sample."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{label_text(labels)} {value}" for labels, value in samples]
    return lines


@dataclass
class Histogram:
    """Cumulative-bucket histogram of durations (seconds)."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.n += 1
        self.total += seconds
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1

    def lines(self, name: str, help_text: str, labels: Labels | None = None) -> list[str]:
        base = dict(labels or {})
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f"{name}_bucket{label_text({**base, 'le': le})} {cumulative}")
        out.append(f"{name}_sum{label_text(base)} {self.total:.6f}")
        out.append(f"{name}_count{label_text(base)} {self.n}")
        return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    return out


def histogram_delta(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, Any]:
    """Count, mean and bucket upper bounds of p50/p99 of a histogram between two scrapes."""
    buckets: list[tuple[float, float]] = []
    for key, value in after.items():
        if key.startswith(f'{name}_bucket{{le="'):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), value - before.get(key, 0.0)))
    buckets.sort()
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)

    def upper(q: float) -> float | None:
        for bound, cumulative in buckets:
            if count and cumulative >= q * count:
                return bound * 1e3
        return None

    return {
        "count": int(count),
        "mean_ms": total / count * 1e3 if count else None,
        "p50_le_ms": upper(0.5),
        "p99_le_ms": upper(0.99),
    }


#: When this process started (``process_start_time_seconds``, the name Prometheus clients
#: use), for the crash-loop alert in ``infra/deploy/prometheus/rules.yml``.
PROCESS_STARTED = time.time()


def process_lines() -> list[str]:
    """The ``process_start_time_seconds`` family of this process."""
    return family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        [(None, round(PROCESS_STARTED, 3))],
    )
