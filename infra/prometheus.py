"""Cadenza's Prometheus metrics through ``prometheus_client``, and reading a ``/metrics`` page back.

Sources: each service's collectors (:mod:`gateway.metrics`, :mod:`gateway.feed`,
:mod:`recommender_stream.metrics`), prometheus_client's ``ProcessCollector``, and for
the readers the text a ``/metrics`` page served. Destinations: one
``CollectorRegistry`` per app (:func:`app_registry`), its exposition for the
``/metrics`` pages (:func:`exposition`: prometheus_client's ``generate_latest`` and
``CONTENT_TYPE_LATEST``), and for benches and tests flat
``{'name{labels}': value}`` dicts (:func:`parse_metrics`, through prometheus_client's
parser; :func:`samples`) and histogram summaries (:func:`histogram_delta`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

#: Latency buckets (seconds) shared by every histogram.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Cadenza exports no ``<name>_created`` series (prometheus_client adds one to every counter
# and histogram by default): dashboards and rules.yml know only the names below.
disable_created_metrics()


def latency_histogram(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Histogram:
    """A histogram of durations (seconds) over :data:`LATENCY_BUCKETS_S`, in no registry:
    the collector that owns it yields it (``yield from histogram.collect()``)."""
    return Histogram(name, documentation, labelnames, buckets=LATENCY_BUCKETS_S, registry=None)


def app_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of one app (never prometheus_client's global one, so apps and tests in one
    process do not collide): the ``process_*`` metrics, among them
    ``process_start_time_seconds`` for the crash-loop alert, then ``collectors``."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The body and Content-Type of a ``/metrics`` answer (Prometheus text format 0.0.4)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> ``{'name{labels}': value}``, labels in the order of the text.

    Keys are spelled like the sample lines (``cadenza_gateway_refused_total{reason="plays_rate"}``;
    prometheus_client writes labels in name order). Raises ``ValueError`` on text that is
    not the Prometheus format.
    """
    return {
        sample.name + _label_key(sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def samples(*collectors: Collector) -> dict[str, float]:
    """What ``collectors`` export now, as :func:`parse_metrics` reads their ``/metrics`` text."""
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return parse_metrics(generate_latest(registry).decode())


def _label_key(labels: Mapping[str, str]) -> str:
    # The label part of a parse_metrics key (a dict key, not exposition text).
    if not labels:
        return ""
    escaped = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for v in labels.values())
    return "{" + ",".join(f'{k}="{v}"' for k, v in zip(labels, escaped, strict=True)) + "}"


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
