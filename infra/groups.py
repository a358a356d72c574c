"""Who in a consumer group holds which partitions: the live assignment, for operators.

Source: the group coordinator (Kafka's DescribeGroups, through kafka-python's admin
client). Destinations: ``cadenza stack status`` and ``cadenza lag`` print it, and
``python -m bench.faults`` watches it to time a rebalance after a recommender worker dies.
Faust workers put their web address in their subscription's user data; it is shown when
present, so an operator sees which worker (``:6066``, ``:6067`` …) owns a partition.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    KafkaError,
    NotCoordinatorError,
)

from infra.kafka_clients import admin, unreachable
from infra.settings import Settings

#: The state shown while nobody can say who is in the group: its coordinator is not available
#: (a fresh broker still creating ``__consumer_offsets``, or the coordinating broker lost and
#: the group moving to another). Not an outage of Kafka: ask again in a few seconds.
NO_COORDINATOR = "NoCoordinator"
_COORDINATOR_MOVING = (CoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError)


@dataclass(frozen=True)
class Member:
    """One member of a consumer group and the partitions it holds, per topic."""

    member_id: str
    client_id: str
    host: str
    worker: str  # a Faust worker's web URL, else ""
    partitions: dict[str, tuple[int, ...]]

    def holds(self, topic: str) -> tuple[int, ...]:
        return self.partitions.get(topic, ())


@dataclass(frozen=True)
class GroupAssignment:
    group: str
    state: str  # Stable, PreparingRebalance, CompletingRebalance, Empty, Dead
    members: list[Member]

    def settled(self, topic: str, partitions: int, members: int) -> bool:
        """Stable, with exactly ``members`` members, and every one of the ``partitions`` of
        ``topic`` held by one of them: a rebalance is over."""
        return (
            self.state == "Stable" and len(self.members) == members and len(self.owners(topic)) == partitions
        )

    def owners(self, topic: str) -> dict[int, str]:
        """Partition -> the member (worker URL, else member id) that holds it."""
        return {p: m.worker or m.member_id for m in self.members for p in m.holds(topic)}


def parse_group(group: str, raw: dict[str, Any]) -> GroupAssignment:
    """A :class:`GroupAssignment` from one entry of kafka-python's ``describe_groups`` (pure)."""
    members = []
    for m in raw.get("members") or ():
        assignment = m.get("member_assignment") or {}
        parts: dict[str, tuple[int, ...]] = {}
        if isinstance(assignment, dict):
            for entry in assignment.get("assigned_partitions") or ():
                parts[str(entry["topic"])] = tuple(sorted(int(p) for p in entry["partitions"]))
        subscription = m.get("member_metadata") or {}
        # kafka-python decodes subscriptions up to version 3; a newer one stays raw bytes
        worker = _worker_url(
            subscription.get("user_data") if isinstance(subscription, dict) else subscription
        )
        members.append(
            Member(
                member_id=str(m.get("member_id", "")),
                client_id=str(m.get("client_id", "")),
                host=str(m.get("client_host", "")).lstrip("/"),
                worker=worker,
                partitions=parts,
            )
        )
    members.sort(key=lambda m: (m.worker, m.member_id))
    return GroupAssignment(group, str(raw.get("group_state") or "Unknown"), members)


def _worker_url(user_data: object) -> str:
    """The ``url`` a Faust worker puts in its subscription's user data (a JSON object, alone
    or inside the raw subscription bytes), else ""."""
    if isinstance(user_data, bytes | bytearray):
        user_data = user_data.decode(errors="replace")
    if not isinstance(user_data, str) or "{" not in user_data:
        return ""
    try:
        data, _end = json.JSONDecoder().raw_decode(user_data[user_data.index("{") :])
    except ValueError:
        return ""
    url = data.get("url") if isinstance(data, dict) else None
    return str(url) if url else ""


def describe_group(settings: Settings, group: str) -> GroupAssignment:
    """The live assignment of ``group`` (state ``Dead`` with no members if it does not exist,
    :data:`NO_COORDINATOR` with no members while its coordinator is not available)."""
    client = admin(settings)
    # It logs a warning with every byte of a subscription it cannot decode (Faust's).
    logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)
    try:
        raw = client.describe_groups([group]).get(group, {})
    except _COORDINATOR_MOVING:
        return GroupAssignment(group, NO_COORDINATOR, [])
    except KafkaError as err:
        raise unreachable(settings, err) from None
    finally:
        client.close()
    return parse_group(group, raw)
