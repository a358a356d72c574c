"""Consumer lag of everything that reads Cadenza's topics: consumer groups and Spark queries.

Sources: the broker (the committed offsets of every consumer group that reads a
Cadenza topic, i.e. one under ``CADENZA_TOPIC_PREFIX``, and the topics' log-end
offsets) and the Structured Streaming checkpoints under ``<data dir>/checkpoints``
(Spark's Kafka source keeps its offsets there, not in a group: the offsets of the highest
batch with a ``commits/<batch>`` file are what a query has processed, even while it is
stopped).
Destinations: ``cadenza lag``, the gateway's ``/metrics`` and ``/api/ops``,
``cadenza stream status``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from infra.errors import UnreachableError
from infra.kafka_clients import admin, end_offsets
from infra.settings import Settings


@dataclass(frozen=True)
class LagRow:
    """One partition read by one consumer: a group, or a Spark query (``kind="query"``)."""

    kind: str  # "group" | "query"
    name: str
    topic: str
    partition: int
    committed: int | None  # None: the group has no committed offset there
    end: int
    lag: int
    state: str = ""  # a group's state (Stable, Empty, …); empty for queries

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(directory: Path) -> dict[int, Path]:
    try:
        return {int(p.name): p for p in directory.iterdir() if p.name.isdigit()}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def checkpoint_offsets(path: Path) -> dict[str, dict[int, int]]:
    """Offsets (next to read) per topic and partition that a query has finished processing.

    Spark writes ``<checkpoint>/offsets/<batch>`` when it plans a batch and
    ``<checkpoint>/commits/<batch>`` once the batch's output is written: the offsets of
    the highest committed batch are what the query has processed (the last line of that
    file is the Kafka source's offsets JSON, ``{"topic": {"0": 42}}``). Empty when no
    batch has finished.
    """
    planned = _batches(Path(path) / "offsets")
    committed = [b for b in _batches(Path(path) / "commits") if b in planned]
    if not committed:
        return {}
    lines = [
        line for line in planned[max(committed)].read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    try:
        offsets = json.loads(lines[-1])
    except (json.JSONDecodeError, IndexError):
        return {}
    if not isinstance(offsets, dict):
        return {}
    return {
        topic: {int(p): int(o) for p, o in parts.items()}
        for topic, parts in offsets.items()
        if isinstance(parts, dict)
    }


def lag(processed: dict[str, dict[int, int]], end: dict[str, dict[int, int]]) -> dict[str, dict[int, int]]:
    """End offset minus processed offset, per topic and partition (unread partitions count whole)."""
    return {
        topic: {p: max(0, e - processed.get(topic, {}).get(p, 0)) for p, e in parts.items()}
        for topic, parts in end.items()
    }


def rows_for(
    kind: str,
    name: str,
    committed: dict[str, dict[int, int]],
    ends: dict[str, dict[int, int]],
    state: str = "",
) -> list[LagRow]:
    """Lag rows of one consumer over the topics it has offsets for (pure)."""
    out = []
    for topic in sorted(committed):
        for partition, end in sorted(ends.get(topic, {}).items()):
            done = committed[topic].get(partition)
            out.append(LagRow(kind, name, topic, partition, done, end, max(0, end - (done or 0)), state))
    return out


def group_offsets(settings: Settings) -> tuple[dict[str, dict[str, dict[int, int]]], dict[str, str]]:
    """Committed offsets of every consumer group on Cadenza topics (group -> topic ->
    partition -> offset), and each group's state (``Stable``, ``Empty``, ``PreparingRebalance``…)."""
    client = admin(settings)
    try:
        states = {g["group_id"]: str(g.get("group_state") or "") for g in client.list_groups()}
        committed = client.list_group_offsets(sorted(states)) if states else {}
        out: dict[str, dict[str, dict[int, int]]] = {}
        for group, offsets in committed.items():
            for tp, meta in offsets.items():
                if tp.topic.startswith(settings.topic_prefix) and meta.offset >= 0:
                    out.setdefault(group, {}).setdefault(tp.topic, {})[tp.partition] = int(meta.offset)
        return out, {g: states[g] for g in out}
    except KafkaError as err:
        raise UnreachableError(
            f"cannot read consumer groups from Kafka at {settings.bootstrap_servers}: {err}; "
            "is the stack up (`cadenza stack up`)?"
        ) from None
    finally:
        client.close()


def query_offsets(checkpoints: Path) -> dict[str, dict[str, dict[int, int]]]:
    """Processed offsets of every Structured Streaming query checkpointed under ``checkpoints``."""
    if not checkpoints.is_dir():
        return {}
    out = {}
    for directory in sorted(p for p in checkpoints.iterdir() if p.is_dir()):
        offsets = checkpoint_offsets(directory)
        if offsets:
            out[directory.name] = offsets
    return out


def lag_rows(settings: Settings, groups: Iterable[str] | None = None) -> list[LagRow]:
    """Every consumer group's and every Spark query's lag on Cadenza topics, from the broker now."""
    wanted = None if groups is None else set(groups)
    offsets, states = group_offsets(settings)
    by_group = {g: o for g, o in offsets.items() if wanted is None or g in wanted}
    by_query = query_offsets(settings.checkpoints_path) if wanted is None else {}
    topics = {t for offsets in (*by_group.values(), *by_query.values()) for t in offsets}
    ends = end_offsets(settings, sorted(topics)) if topics else {}
    rows = [r for g, o in by_group.items() for r in rows_for("group", g, o, ends, states.get(g, ""))]
    rows += [r for q, o in by_query.items() for r in rows_for("query", q, o, ends, "")]
    return rows
