"""Bench only: loss, duplicates and what listeners saw around each fault in ``bench.faults``.

Pure functions, no IO. In: the load's records (``bench.faults.load``: accepted plays with
their send times, each listener's arrivals and reconnects, failed POSTs), the fault marks
(``bench.faults.schedule``), and what was read back from the cluster after the load
(``bench.faults.cluster``: history counts per play, recommendations per cause). Out: the
JSON's ``load`` section (``bench/results/faults.json``), which ``bench.faults.report``
prints and plots.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kafka.partitioner.default import murmur2

from bench.common import percentiles
from bench.faults.load import Load
from schemas.topics import PLAYS


def partition_of(user: str, partitions: int) -> int:
    return (murmur2(user.encode()) & 0x7FFFFFFF) % partitions


def resumption(
    load: Load, first_arrival: dict[str, float], killed: float, restarted: float, moved: set[int]
) -> dict[str, Any]:
    """How a worker's crash looked on the partitions it held.

    ``resume_s``: per moved partition, the kill to the first answer to a play sent after it
    (the partition is processed in order, so everything before that play is answered too).
    ``longest_wait_s``: per listener on those partitions, the longest any play they sent
    while the worker was down (or just before, unanswered at the kill) waited for its answer.
    (The kill to a listener's next answer is not used: it counts their time between plays.)
    """
    resumed: dict[int, float] = {}
    waits: dict[str, float] = {}
    for event_id, (user, sent_at) in load.sent.items():
        part = partition_of(user, PLAYS.partitions)
        arrived = first_arrival.get(event_id)
        if part not in moved or arrived is None or arrived < killed or sent_at > restarted:
            continue
        waits[user] = max(waits.get(user, 0.0), arrived - sent_at)
        if sent_at > killed:
            resumed[part] = min(resumed.get(part, arrived - killed), arrived - killed)
    return {
        "resume_s": {str(p): round(v, 2) for p, v in sorted(resumed.items())},
        "affected_listeners": len(waits),
        "longest_wait_s": percentiles(list(waits.values())),
    }


def analyse(
    load: Load,
    marks: list[dict[str, Any]],
    stored: Counter[str],
    complete_after: float | None,
    causes: Counter[str],
) -> dict[str, Any]:
    """Loss, duplicates and what listeners saw around each fault: ``stored`` and
    ``complete_after`` from :func:`bench.faults.cluster.history_counts`, ``causes`` from
    :func:`bench.faults.cluster.read_causes`."""
    ids = list(load.sent)
    latencies: list[tuple[float, float]] = []  # (sent at, ms) for the first arrival of each play
    first_arrival: dict[str, float] = {}
    for lst in load.listeners:
        for at, cause, _gw in lst.arrivals:
            if cause and cause not in first_arrival:
                first_arrival[cause] = at
    for event_id, (_user, sent_at) in load.sent.items():
        if event_id in first_arrival:
            latencies.append((sent_at, (first_arrival[event_id] - sent_at) * 1e3))
    out: dict[str, Any] = {
        "accepted_plays": len(ids),
        "history_complete_after_s": complete_after,
        "history_missing": sum(1 for e in ids if stored[e] == 0),
        "history_duplicated": sum(1 for e in ids if stored[e] > 1),
        "without_recommendation": sum(1 for e in ids if causes[e] == 0),
        "recommendations_per_play_max": max((causes[e] for e in ids), default=0),
        "post_failures": dict(load.failed),
        "posts_given_up": load.failed.get("gave up", 0),
        "latency_ms": percentiles([v for _, v in latencies]),
        "faults": [],
    }
    for m in marks:
        fault = {k: v for k, v in m.items() if k not in ("at", "restarted")}
        start, end = m["at"], m.get("restarted", m["at"])
        window = [v for t, v in latencies if start <= t <= end]
        fault["down_s"] = round(end - start, 1)
        fault["latency_ms_while_down"] = percentiles(window)
        fault["posts_while_down"] = len(window)
        if m["fault"] == "recommender":
            fault.update(resumption(load, first_arrival, start, end, set(m.get("moved_partitions", []))))
        if m["fault"] == "gateway":
            moved_to = [
                r["list_at"] - start
                for lst in load.listeners
                for r in lst.reconnects
                if start <= r["closed"] <= end + 1
            ]
            fault["reconnected_listeners"] = len(moved_to)
            fault["latest_list_after_s"] = percentiles(moved_to)
        out["faults"].append(fault)
    out["recommender_worst"] = worst_takeover(out["faults"])
    out["latencies"] = [(round(t, 3), round(v, 1)) for t, v in latencies]
    return out


def worst_takeover(faults: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The worst of every recommender kill in the run (``--repeat 3``: the worst of three): the
    longest takeover (kill to a settled group of one) and the longest kill to a moved
    partition's first answer; ``None`` when no worker was killed."""
    kills = [f for f in faults if f["fault"] == "recommender"]
    if not kills:
        return None
    resumes = [max(f["resume_s"].values()) for f in kills if f.get("resume_s")]
    return {
        "kills": len(kills),
        "takeover_s": [round(f["takeover_s"], 2) for f in kills],
        "answered_again_s": resumes,
        "worst_takeover_s": round(max(f["takeover_s"] for f in kills), 2),
        "worst_answered_again_s": max(resumes) if resumes else None,
        "target_s": 10.0,
    }
