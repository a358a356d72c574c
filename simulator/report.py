"""What a ``cadenza simulate`` run did: sends, refusals, recommendations and their latency.

Source: the :class:`Tally` that the runner (:mod:`simulator.run`), its senders
(:mod:`simulator.senders`) and its sockets (:mod:`simulator.sockets`) fill as the
run goes: events sent and accepted, failures by reason, send times by event id, and
each recommendation's arrival with the event that caused it. Destination: the
:class:`SimulationReport` (``--out`` writes it as JSON) and the summary table printed at
the end. No IO and no clock: latency of a recommendation = its arrival - the time just
before its cause was sent, both as the runner recorded them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
from rich.table import Table

NO_RECOMMENDER: Final = (
    "no recommendation arrived: is a recommender running (`cadenza recommender`, or `cadenza demo`)?"
)


@dataclass
class SimulationReport:
    """What a run did; ``accepted_event_ids`` lets a test check the plays topic exactly."""

    run_tag: str
    seed: int
    via: str
    url: str
    listeners: int
    target_rate: float
    duration_s: float
    scheduled: int = 0
    sent: int = 0
    accepted: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    sockets: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    received: int = 0
    listeners_reached: int = 0
    matched: int = 0
    unmatched: int = 0
    outstanding: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    achieved_rate: float = 0.0
    send_s: float = 0.0
    drain_s: float = 0.0
    note: str | None = None
    #: Where the plays went: ``ws`` (frames on the sockets), ``http`` (POST /api/plays) or ``kafka``.
    plays_via: str = ""
    #: ``closed`` (listeners choose from what they were pushed) or ``open`` (drawn in advance).
    listening: str = "open"
    #: Closed loop: tracks started by source, lists in hand, acceptance (simulator.closed_loop).
    choices: dict[str, Any] = field(default_factory=dict)
    #: Closed loop: seconds of the model's event time per second of the run.
    time_compression: float | None = None
    accepted_event_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary table's rows."""
        lat = self.latency_ms

        def ms(key: str) -> str:
            value = lat.get(key)
            return "-" if value is None else f"{value:.1f}"

        rows = [
            ("run", f"{self.run_tag} (seed {self.seed}) via {self.via}{self._plays()}"),
            ("listeners / sockets connected", f"{self.listeners} / {self.sockets}"),
            ("events scheduled / sent", f"{self.scheduled} / {self.sent}"),
            ("accepted", str(self.accepted)),
            ("refused or failed", _counts(self.failed) or "none"),
            ("rate target / achieved", f"{self.target_rate:g} / {self.achieved_rate:.2f} events/s"),
            ("recommendations received", str(self.received)),
            ("listeners reached", f"{self.listeners_reached} of {self.listeners}"),
            ("matched / unmatched / outstanding", f"{self.matched} / {self.unmatched} / {self.outstanding}"),
            ("latency p50 / p95 / p99 / max (ms)", f"{ms('p50')} / {ms('p95')} / {ms('p99')} / {ms('max')}"),
        ]
        if self.listening == "closed" and self.choices:
            started = self.choices.get("started", {})
            acceptance = self.choices.get("acceptance")
            rows.append(
                (
                    "tracks from Up next / browsed",
                    f"{started.get('up_next', 0)} / {started.get('browse', 0)} (acceptance "
                    f"{'-' if acceptance is None else f'{100 * acceptance:.1f}%'}; the gateway counts "
                    "the same in cadenza_gateway_plays_total)",
                )
            )
            if self.time_compression is not None:
                rows.append(
                    (
                        "time compression",
                        f"{self.time_compression:.0f} s of listening per s of the run (event times are "
                        "the gateway's clock: the recommender's half-life spans that many fewer plays)",
                    )
                )
        if self.socket_errors:
            rows.append(("socket errors", _counts(self.socket_errors)))
        if self.note:
            rows.append(("note", self.note))
        return rows

    def _plays(self) -> str:
        return f" (plays over {self.plays_via})" if self.plays_via in ("ws", "http") else ""


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def latency_summary(latencies_ms: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """p50, p95, p99 and max of ``latencies_ms`` (None each when there are none)."""
    if len(latencies_ms) == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    values = np.asarray(latencies_ms, dtype=float)
    p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
    return {"p50": p50, "p95": p95, "p99": p99, "max": float(values.max())}


@dataclass(frozen=True, slots=True)
class Arrival:
    """A recommendation as it reached a listener's socket."""

    user_id: str
    at: float
    cause_event_id: str | None


def match(arrivals: list[Arrival], sent_at: dict[str, float]) -> tuple[list[float], int]:
    """Latencies (ms) of the arrivals caused by a sent event, and how many were not."""
    latencies: list[float] = []
    unmatched = 0
    for a in arrivals:
        sent = sent_at.get(a.cause_event_id or "")
        if sent is None:
            unmatched += 1
        else:
            latencies.append((a.at - sent) * 1e3)
    return latencies, unmatched


@dataclass
class Tally:
    """What the run has seen so far (one event loop: no locks needed)."""

    sent: int = 0
    accepted: list[str] = field(default_factory=list)
    accepted_of: Counter[str] = field(default_factory=Counter)  # user -> accepted events
    failed: Counter[str] = field(default_factory=Counter)
    sent_at: dict[str, float] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    matched_of: Counter[str] = field(default_factory=Counter)  # user -> recommendations of our events
    socket_errors: Counter[str] = field(default_factory=Counter)
    #: Event id -> source of each ``play`` sent with one (closed loop): what was accepted of
    #: them is what the gateway counts by source.
    play_sources: dict[str, str] = field(default_factory=dict)

    def started_by_source(self) -> Counter[str]:
        """Accepted ``play`` events by source."""
        return Counter(self.play_sources[e] for e in self.accepted if e in self.play_sources)

    def arrived(self, user: str, at: float, cause: Any) -> None:
        cause_id = str(cause) if cause is not None else None
        self.arrivals.append(Arrival(user, at, cause_id))
        if cause_id is not None and cause_id in self.sent_at:
            self.matched_of[user] += 1


def fill(report: SimulationReport, tally: Tally, connected: set[str], *, watched: bool) -> None:
    """Complete ``report`` from what ``tally`` saw (``report.send_s`` already set): counts,
    latencies, what is still outstanding for the ``connected`` listeners, and a note."""
    latencies, unmatched = match(tally.arrivals, tally.sent_at)
    report.sent, report.accepted = tally.sent, len(tally.accepted)
    report.failed = {k: v for k, v in tally.failed.items() if v}
    report.socket_errors = dict(tally.socket_errors)
    report.received = len(tally.arrivals)
    report.listeners_reached = len({a.user_id for a in tally.arrivals})
    report.matched, report.unmatched = len(latencies), unmatched
    report.outstanding = sum(max(0, tally.accepted_of[u] - tally.matched_of[u]) for u in connected)
    report.latency_ms = latency_summary(latencies)
    report.achieved_rate = tally.sent / report.send_s if report.send_s > 0 else 0.0
    report.accepted_event_ids = list(tally.accepted)
    if not watched:
        report.note = "sockets off (--no-sockets): recommendations were not watched"
    elif not connected:
        report.note = "no socket connected: recommendations were not watched"
    elif report.accepted and not report.received:
        report.note = NO_RECOMMENDER
    if report.failed.get("HTTP 401") or tally.socket_errors.get("closed before hello (4401)"):
        report.note = "the gateway refused our tokens: is CADENZA_TOKEN_SECRET the gateway's?"


def summary(report: SimulationReport) -> Table:
    table = Table(title="cadenza simulate", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for label, value in report.rows():
        table.add_row(label, value)
    return table
