"""infra.prometheus: per-app registries over prometheus_client, and reading /metrics text back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import GatewayMetrics
from infra.prometheus import (
    LATENCY_BUCKETS_S,
    app_registry,
    exposition,
    histogram_delta,
    latency_histogram,
    parse_metrics,
    samples,
)


class Odd:
    """A collector with awkward label values and a counter beside a gauge of the same stem."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("odd_things", "Open things.", 3)
        yield CounterMetricFamily("odd_things_total", "Things ever.", 7)
        family = CounterMetricFamily("odd_labelled_total", "Labelled.", labels=["b", "a"])
        family.add_metric(['quote " back \\ newline \n end', "x"], 2)
        yield family


def test_an_app_registry_has_the_process_metrics_and_its_collectors() -> None:
    registry = app_registry(Odd())
    assert registry is not REGISTRY
    assert (registry.get_sample_value("process_start_time_seconds") or 0) > 1e9
    assert registry.get_sample_value("odd_things") == 3
    assert registry.get_sample_value("odd_things_total") == 7


def test_two_apps_in_one_process_do_not_collide() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.plays_accepted = 4
    registries = [app_registry(first), app_registry(second)]
    assert [r.get_sample_value("cadenza_gateway_plays_accepted_total") for r in registries] == [4, 0]
    assert REGISTRY.get_sample_value("cadenza_gateway_plays_accepted_total") is None


def test_exposition_is_prometheus_text_that_parses_back() -> None:
    body, media_type = exposition(app_registry(Odd()))
    assert media_type == CONTENT_TYPE_LATEST
    text = body.decode()
    assert "# TYPE odd_things gauge\nodd_things 3.0\n" in text
    assert "# TYPE odd_things_total counter\nodd_things_total 7.0\n" in text
    labelled = [f for f in text_string_to_metric_families(text) if f.name == "odd_labelled"]
    assert labelled[0].samples[0].labels == {"a": "x", "b": 'quote " back \\ newline \n end'}


def test_no_created_series_are_exported() -> None:
    histogram = latency_histogram("odd_seconds", "Durations.")
    histogram.observe(0.2)
    registry = CollectorRegistry()
    registry.register(histogram)
    assert not [k for k in samples(histogram) if "_created" in k]
    assert registry.get_sample_value("odd_seconds_created") is None


def test_parse_metrics_keys_are_the_sample_lines() -> None:
    values = parse_metrics(exposition(app_registry(Odd()))[0].decode())
    assert values["odd_things"] == 3
    assert values["odd_things_total"] == 7
    assert values['odd_labelled_total{a="x",b="quote \\" back \\\\ newline \\n end"}'] == 2
    assert "process_start_time_seconds" in values


def test_parse_metrics_keeps_the_label_order_of_the_text() -> None:
    text = '# TYPE m counter\nm_total{topic="plays",stage="s"} 2\nuntyped{z="1",a="2"} 1.5\n'
    assert parse_metrics(text) == {'m_total{topic="plays",stage="s"}': 2, 'untyped{z="1",a="2"}': 1.5}


def test_parse_metrics_refuses_what_is_not_prometheus_text() -> None:
    with pytest.raises(ValueError):
        parse_metrics("<html>not metrics</html>\n")


def test_latency_histograms_share_the_buckets() -> None:
    histogram = latency_histogram("odd_seconds", "Durations.")
    for seconds in (0.0004, 0.0005, 0.003, 7.0):
        histogram.observe(seconds)
    values = samples(histogram)
    assert values['odd_seconds_bucket{le="0.0005"}'] == 2  # a bound counts as inside its bucket
    assert values['odd_seconds_bucket{le="0.005"}'] == 3
    assert values['odd_seconds_bucket{le="2.5"}'] == 3
    assert values['odd_seconds_bucket{le="+Inf"}'] == 4
    assert len([k for k in values if k.startswith("odd_seconds_bucket")]) == len(LATENCY_BUCKETS_S) + 1


def test_histogram_delta_between_two_scrapes() -> None:
    histogram = latency_histogram("odd_seconds", "Durations.")
    histogram.observe(1.0)
    before = samples(histogram)
    for seconds in [0.002] * 60 + [0.02] * 39 + [0.2]:
        histogram.observe(seconds)
    delta = histogram_delta(before, samples(histogram), "odd_seconds")
    assert delta["count"] == 100
    assert delta["mean_ms"] == pytest.approx((0.002 * 60 + 0.02 * 39 + 0.2) * 10)
    assert delta["p50_le_ms"] == pytest.approx(2.5)
    assert delta["p99_le_ms"] == pytest.approx(25.0)
    assert histogram_delta(before, before, "odd_seconds") == {
        "count": 0,
        "mean_ms": None,
        "p50_le_ms": None,
        "p99_le_ms": None,
    }
