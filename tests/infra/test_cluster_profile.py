"""The cluster profile's pure parts: settings defaults, broker configs, group assignments.

The profile itself (three brokers, Spark standalone, faults under load) runs in
``python -m bench.faults``: a second stack next to the test run's own would not fit the CI budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    KafkaTimeoutError,
    NotCoordinatorError,
)

from infra import groups
from infra.errors import ConfigError, UnreachableError
from infra.groups import parse_group
from infra.settings import Settings, get_settings
from infra.stack.kafka import KafkaBroker, server_properties


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_the_cluster_profile_changes_defaults_and_keeps_explicit_settings() -> None:
    local = Settings()
    assert (local.bootstrap_servers, local.spark_master, local.kafka_replication_factor) == (
        "127.0.0.1:9092",
        "local[*]",
        1,
    )
    cluster = Settings(stack_profile="cluster", kafka_port=19092, spark_master_port=17077)
    assert cluster.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19192,127.0.0.1:19292"
    assert cluster.spark_master == "spark://127.0.0.1:17077"
    assert (cluster.kafka_replication_factor, cluster.faust_workers, cluster.gateways) == (3, 2, 2)
    mine = Settings(stack_profile="cluster", kafka_replication_factor=2, gateways=3, spark_master="local[2]")
    assert (mine.kafka_replication_factor, mine.gateways, mine.spark_master) == (2, 3, "local[2]")
    assert Settings(stack_profile="cluster", kafka_bootstrap="k1:9092").bootstrap_servers == "k1:9092"


def test_an_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="CADENZA_STACK_PROFILE"):
        get_settings(stack_profile="kubernetes")


def test_three_brokers_form_one_quorum_with_replicated_internal_topics(tmp_path: Path) -> None:
    settings = Settings(
        stack_profile="cluster", data_dir=tmp_path, kafka_port=19092, kafka_controller_port=19093
    )
    configs = [_props(server_properties(settings, tmp_path / f"d{i}", i)) for i in range(3)]
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    voters = {c["controller.quorum.voters"] for c in configs}
    assert voters == {"1@127.0.0.1:19093,2@127.0.0.1:19193,3@127.0.0.1:19293"}
    assert [c["listeners"] for c in configs] == [
        f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{p + 1}" for p in (19092, 19192, 19292)
    ]
    for c in configs:
        assert c["offsets.topic.replication.factor"] == "3"
        assert c["transaction.state.log.replication.factor"] == "3"
        assert c["min.insync.replicas"] == "2"
        assert c["unclean.leader.election.enable"] == "false"
    brokers = [KafkaBroker(settings, i) for i in range(3)]
    assert [b.name for b in brokers] == ["kafka", "kafka-2", "kafka-3"]
    assert len({b.home for b in brokers}) == 3
    assert len({b.proc.pid_file for b in brokers}) == 3


def test_a_single_broker_keeps_replication_one(tmp_path: Path) -> None:
    props = _props(server_properties(Settings(data_dir=tmp_path), tmp_path))
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"


def test_a_faust_group_assignment_names_each_worker_and_its_partitions() -> None:
    raw = {
        "group_state": "Stable",
        "members": [
            {
                "member_id": "faust-b",
                "client_id": "faust-0.15.3",
                "client_host": "/127.0.0.1",
                "member_assignment": {
                    "assigned_partitions": [
                        {"topic": "cadenza.plays", "partitions": [5, 3, 4]},
                        {"topic": "cadenza.recommender-listeners-changelog", "partitions": [3, 4, 5]},
                    ],
                    "user_data": "",
                },
                "member_metadata": {
                    "topics": ["cadenza.plays"],
                    "user_data": json.dumps({"assignment": {}, "url": "http://127.0.0.1:6067"}),
                },
            },
            {
                "member_id": "faust-a",
                "client_id": "faust-0.15.3",
                "client_host": "/127.0.0.1",
                "member_assignment": {
                    "assigned_partitions": [{"topic": "cadenza.plays", "partitions": [0, 1, 2]}],
                    "user_data": "",
                },
                "member_metadata": b"\x00\x04\x00\x00\x00\x01\x00\rcadenza.plays\x00\x00\x00H"
                + json.dumps({"assignment": {}, "url": "http://127.0.0.1:6066"}).encode()
                + b"\x00\x00\x00\x00\xff\xff\xff\xff",
            },
        ],
    }
    group = parse_group("cadenza.recommender", raw)
    assert group.state == "Stable"
    # the second member's subscription is version 4, which kafka-python leaves as raw bytes
    assert [m.worker for m in group.members] == ["http://127.0.0.1:6066", "http://127.0.0.1:6067"]
    assert group.members[1].holds("cadenza.plays") == (3, 4, 5)
    assert group.members[0].host == "127.0.0.1"
    assert group.owners("cadenza.plays") == {
        0: "http://127.0.0.1:6066",
        1: "http://127.0.0.1:6066",
        2: "http://127.0.0.1:6066",
        3: "http://127.0.0.1:6067",
        4: "http://127.0.0.1:6067",
        5: "http://127.0.0.1:6067",
    }
    assert group.settled("cadenza.plays", 6, members=2)
    assert not group.settled("cadenza.plays", 6, members=1)
    assert not group.settled("cadenza.plays", 7, members=2)  # a partition nobody holds
    assert not parse_group("gone", {}).settled("cadenza.plays", 6, members=0)
    assert parse_group("gone", {}).members == [] and parse_group("gone", {}).state == "Unknown"


class _Admin:
    """kafka-python's admin client as describe_group uses it, failing with ``err``."""

    def __init__(self, err: Exception) -> None:
        self.err, self.closed = err, False

    def describe_groups(self, groups: list[str]) -> dict[str, Any]:
        raise self.err

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    "err", [CoordinatorNotAvailableError(), CoordinatorLoadInProgressError(), NotCoordinatorError()]
)
def test_a_group_whose_coordinator_is_moving_is_shown_as_such_not_as_kafka_down(
    monkeypatch: pytest.MonkeyPatch, err: Exception
) -> None:
    client = _Admin(err)
    monkeypatch.setattr(groups, "admin", lambda settings: client)
    group = groups.describe_group(Settings(), "cadenza.recommender")
    assert (group.state, group.members) == (groups.NO_COORDINATOR, [])
    assert client.closed


def test_a_broker_that_does_not_answer_is_reported_as_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _Admin(KafkaTimeoutError())
    monkeypatch.setattr(groups, "admin", lambda settings: client)
    with pytest.raises(UnreachableError, match="did not answer"):
        groups.describe_group(Settings(), "cadenza.recommender")
    assert client.closed
