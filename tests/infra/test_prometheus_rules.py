"""infra/deploy/prometheus/rules.yml parses, has the alerts ops needs, and names only metrics
Cadenza exports (from the gateway's and the recommender's real /metrics text)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.feed import Feed
from gateway.hub import Hub
from gateway.metrics import GatewayMetrics
from infra.offsets import LagRow
from infra.prometheus import process_lines
from infra.settings import Settings
from recommender_stream.metrics import Metrics

RULES = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "prometheus" / "rules.yml"
METRIC = re.compile(r"\b((?:cadenza|process)_[a-z0-9_]+)\b")


def exported(tmp_path: Path) -> set[str]:
    row = LagRow(kind="group", name="g", topic="t", partition=0, committed=1, end=2, lag=1, state="Stable")
    text = GatewayMetrics().prometheus([row], None) + "\n".join(
        Feed(Settings(data_dir=tmp_path), Hub(4)).prometheus()
    )
    text += Metrics().prometheus({"worker": 1}) + "\n".join(process_lines())
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


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
