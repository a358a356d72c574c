"""infra/settings/: one settings class per component, all of them together in ``Settings``,
read from the same ``CADENZA_*`` variables."""

from __future__ import annotations

import pytest

from infra.settings import COMPONENTS, GatewaySettings, KafkaSettings, Settings, StreamSettings
from infra.settings_doc import components, settings_markdown


def test_every_setting_belongs_to_exactly_one_component() -> None:
    owners: dict[str, list[str]] = {}
    for cls in COMPONENTS:
        for name in cls.model_fields:  # type: ignore[attr-defined]
            owners.setdefault(name, []).append(cls.__name__)
    assert set(owners) == set(Settings.model_fields)
    assert {n: o for n, o in owners.items() if len(o) != 1} == {}


def test_a_component_reads_its_own_variables_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_GATEWAY_PORT", "8123")
    monkeypatch.setenv("CADENZA_TOPIC_PREFIX", "t1.")
    assert GatewaySettings().gateway_port == 8123  # type: ignore[call-arg]
    assert not hasattr(GatewaySettings(), "topic_prefix")  # type: ignore[call-arg]
    assert KafkaSettings().topic("plays") == "t1.plays"  # type: ignore[call-arg]
    whole = Settings()  # type: ignore[call-arg]
    assert (whole.gateway_port, whole.topic("plays")) == (8123, "t1.plays")


def test_a_component_keeps_its_own_rules() -> None:
    with pytest.raises(ValueError, match="whole number of trending_slide"):
        StreamSettings(trending_window="10 minutes", trending_slide="3 minutes")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="whole number of trending_slide"):
        Settings(trending_window="10 minutes", trending_slide="3 minutes")  # type: ignore[call-arg]


def test_the_cluster_profile_changes_defaults_across_components() -> None:
    s = Settings(stack_profile="cluster")  # type: ignore[call-arg]
    assert (s.kafka_replication_factor, s.faust_workers, s.gateways) == (3, 2, 2)
    assert s.spark_master == "spark://127.0.0.1:7077"
    assert Settings(stack_profile="cluster", gateways=1).gateways == 1  # type: ignore[call-arg]


def test_the_readme_table_has_one_section_per_component_and_every_variable_once() -> None:
    text = settings_markdown()
    for heading, module, _names in components():
        assert f"**{heading}** (`{module}`)" in text
    for name in Settings.model_fields:
        assert text.count(f"| `CADENZA_{name.upper()}` |") == 1
