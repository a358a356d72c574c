"""infra/deploy/prometheus/rules.yml parses, has the alerts ops needs, and names only metrics
Cadenza exports (from the gateway's and the recommender's real /metrics registries)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.feed import Feed
from gateway.hub import Hub
from gateway.metrics import ConsumerLag, GatewayMetrics
from infra.offsets import LagRow
from infra.prometheus import app_registry, exposition
from infra.settings import Settings
from recommender_stream.metrics import Metrics

RULES = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "prometheus" / "rules.yml"
METRIC = re.compile(r"\b((?:cadenza|process)_[a-z0-9_]+)\b")


def exported(tmp_path: Path) -> set[str]:
    """Every series name of the two apps' /metrics pages (registries built as their routes
    build them), with a sample in each labelled family."""
    row = LagRow(kind="group", name="g", topic="t", partition=0, committed=1, end=2, lag=1, state="Stable")
    gateway = GatewayMetrics()
    gateway.errors["mongodb"] += 1
    gateway.plays_refused["track_id"] += 1
    gateway.feed_messages["recommendations"] += 1
    feed = Feed(Settings(data_dir=tmp_path), Hub(4))
    feed.letters.counts[("plays", "recommender_stream")] += 1
    recommender = Metrics(worker=1)
    recommender.dead_letter("SchemaError")
    registries = [
        app_registry(gateway, feed, ConsumerLag(lambda: ([row], None))),
        app_registry(recommender),
    ]
    names: set[str] = set()
    for registry in registries:
        body, _ = exposition(registry)
        for family in text_string_to_metric_families(body.decode()):
            assert family.samples, family.name
            names |= {sample.name for sample in family.samples}
    return names


def test_the_rules_name_only_exported_metrics(tmp_path: Path) -> None:
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for group in doc["groups"] for r in group["rules"]]
    names = {r["alert"] for r in rules}
    assert {
        "CadenzaConsumerLagGrowing",
        "CadenzaFeedDead",
        "CadenzaDeadLetterSpike",
        "CadenzaCrashLooping",
    } <= names
    known = exported(tmp_path)
    for rule in rules:
        used = set(METRIC.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= known, (rule["alert"], used - known)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
