"""The gateway's counters, latency histograms and consumer lag, as Prometheus collectors and as rates.

Sources: :mod:`gateway.hub` (connections, messages pushed, slow disconnects, send
timeouts), the websocket writers (fan-out latency: from a message reaching this process
to its websocket send completing) and readers (frames by kind), :mod:`gateway.intake`
(plays accepted, by kind and source, and refused), the limits of :mod:`gateway.routes` (refusals by reason)
and error handlers; consumer lag rows from :mod:`infra.offsets`. Destinations:
``/metrics`` (the app's registry, :mod:`gateway.routes.ops`) and ``/api/ops`` (the
``/ops`` page).

The counters are plain attributes, bumped where things happen (cheap on the fan-out
path) and read by :meth:`GatewayMetrics.collect` at scrape time as prometheus_client
metric families; the latency histograms are prometheus_client ``Histogram``s.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from infra.offsets import LagRow
from infra.prometheus import latency_histogram
from schemas.events import SOURCE_LABELS, PlayKind, source_label

#: What a frame from a browser on /ws was (each always exported, from 0).
WS_FRAMES: Final = ("play", "other", "ignored")
#: Why a request or websocket was refused by a limit (each always exported, from 0).
REFUSALS: Final = (
    "body_too_large",  # HTTP 413
    "body_too_deep",  # HTTP 400
    "plays_rate",  # HTTP 429, or a play_error 429 on /ws
    "ws_listener_cap",  # close 4429
    "ws_process_cap",  # close 1013
)


#: Where plays were started from, as counted (``unknown``: the report did not say).
SOURCES: Final = SOURCE_LABELS
#: Sources whose tracks the recommender chose: what acceptance counts.
RECOMMENDED: Final = ("up_next", "radio")
#: Kinds of play reports.
KINDS: Final = tuple(k.value for k in PlayKind)


def listening_rates(by: Mapping[tuple[str, str], int]) -> dict[str, float | None]:
    """Acceptance and skip rates from play counts by (kind, source) (None: nothing to divide).

    * ``acceptance``: tracks started from the recommender's lists (up next, radio) over all
      tracks started (``play`` reports);
    * ``skip_recommended`` / ``skip_browsed``: skips over starts, of tracks the recommender
      chose and of tracks the listener found themselves (browse).
    """

    def ratio(num: int, den: int) -> float | None:
        return round(num / den, 4) if den else None

    starts = {src: by.get(("play", src), 0) for src in SOURCES}
    skips = {src: by.get(("skip", src), 0) for src in SOURCES}
    recommended = sum(starts[s] for s in RECOMMENDED)
    return {
        "acceptance": ratio(recommended, sum(starts.values())),
        "skip_recommended": ratio(sum(skips[s] for s in RECOMMENDED), recommended),
        "skip_browsed": ratio(skips["browse"], starts["browse"]),
    }


@dataclass(eq=False)  # hashable by identity: a registry keeps its collectors in a dict
class GatewayMetrics:
    connections: int = 0
    connections_total: int = 0
    messages_pushed: int = 0
    slow_disconnects: int = 0
    #: Websockets dropped because one send took longer than ``ws_send_timeout_s``.
    send_timeouts: int = 0
    #: Rounds of trending windows handed to the sockets (at most one per trending interval).
    trending_flushes: int = 0
    refused: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(REFUSALS, 0)))
    plays_accepted: int = 0
    #: Plays accepted by (kind, source): acceptance of recommendations and skip rates.
    plays_by: Counter[tuple[str, str]] = field(
        default_factory=lambda: Counter(dict.fromkeys(((k, s) for k in KINDS for s in SOURCES), 0))
    )
    plays_refused: Counter[str] = field(default_factory=Counter)  # by field
    auth_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by kind
    #: Frames browsers sent on /ws: play, other (a JSON object of another type: pongs), ignored.
    ws_frames: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(WS_FRAMES, 0)))
    fanout: Histogram = field(
        default_factory=lambda: latency_histogram(
            "cadenza_gateway_fanout_seconds", "From a message reaching the gateway to its websocket send."
        )
    )
    feed_delay: Histogram = field(
        default_factory=lambda: latency_histogram(
            "cadenza_gateway_feed_delay_seconds",
            "From a message's Kafka timestamp to the gateway reading it (includes clock skew).",
        )
    )
    recommend_delay: Histogram = field(
        default_factory=lambda: latency_histogram(
            "cadenza_gateway_recommendation_delay_seconds",
            "From the play a recommendation answers (cause_ts) to the recommender producing it "
            "(its Kafka timestamp): the plays topic, the recommender's backlog and its work.",
        )
    )
    feed_messages: Counter[str] = field(default_factory=Counter)  # by topic
    _last: tuple[float, int, int] | None = None

    def played(self, kind: str, source: str | None) -> None:
        """One play published: counted in total and by kind and source."""
        self.plays_accepted += 1
        self.plays_by[(kind, source_label(source))] += 1

    def pushed(self, seconds: float) -> None:
        self.messages_pushed += 1
        self.fanout.observe(seconds)

    def rates(self) -> dict[str, Any]:
        """Counters, and per-second rates since the previous call (for ``/api/ops``)."""
        now = time.monotonic()
        pushed_rate = plays_rate = 0.0
        if self._last is not None and now > self._last[0]:
            span = now - self._last[0]
            pushed_rate = (self.messages_pushed - self._last[1]) / span
            plays_rate = (self.plays_accepted - self._last[2]) / span
        self._last = (now, self.messages_pushed, self.plays_accepted)
        return {
            "connections": self.connections,
            "messages_pushed": self.messages_pushed,
            "messages_pushed_per_s": round(pushed_rate, 2),
            "plays_accepted": self.plays_accepted,
            "plays_accepted_per_s": round(plays_rate, 2),
            "slow_disconnects": self.slow_disconnects,
            "errors": sum(self.errors.values()) + sum(self.plays_refused.values()) + self.auth_failures,
            "listening": listening_rates(self.plays_by),
        }

    def collect(self) -> Iterator[Metric]:
        """The families of ``/metrics``, read from the counters above at scrape time."""
        yield GaugeMetricFamily("cadenza_gateway_connections", "Open websockets.", self.connections)
        yield CounterMetricFamily(
            "cadenza_gateway_connections_total", "Websockets accepted.", self.connections_total
        )
        yield CounterMetricFamily(
            "cadenza_gateway_messages_pushed_total", "Messages sent to websockets.", self.messages_pushed
        )
        yield CounterMetricFamily(
            "cadenza_gateway_slow_disconnects_total",
            "Websockets dropped because their send queue overflowed (close 4408).",
            self.slow_disconnects,
        )
        yield CounterMetricFamily(
            "cadenza_gateway_send_timeouts_total",
            "Websockets dropped because one send took longer than CADENZA_WS_SEND_TIMEOUT_S "
            "(the browser stopped reading; close 4408).",
            self.send_timeouts,
        )
        yield CounterMetricFamily(
            "cadenza_gateway_trending_flushes_total",
            "Rounds of changed trending windows handed to every websocket as one batch frame "
            "(at most one per CADENZA_GATEWAY_TRENDING_INTERVAL_S).",
            self.trending_flushes,
        )
        yield counts(
            "cadenza_gateway_refused_total",
            "Requests and websockets refused by a limit, by reason (body_too_large: 413, body_too_deep: "
            "400, plays_rate: 429, ws_listener_cap: close 4429, ws_process_cap: close 1013).",
            "reason",
            self.refused,
        )
        yield counts(
            "cadenza_gateway_feed_messages_total",
            "Messages read from Kafka, by topic.",
            "topic",
            self.feed_messages,
        )
        yield CounterMetricFamily(
            "cadenza_gateway_plays_accepted_total",
            "Plays published to Kafka (HTTP 202, or a play_ack on /ws).",
            self.plays_accepted,
        )
        by = CounterMetricFamily(
            "cadenza_gateway_plays_total",
            "Plays accepted, by kind (play, skip, complete, like) and source (where the track was "
            "started from: browse, up_next, radio, queue, unknown). Acceptance of recommendations: "
            "kind=play and source up_next or radio over all kind=play.",
            labels=["kind", "source"],
        )
        for (kind, source), n in sorted(self.plays_by.items()):
            by.add_metric([kind, source], n)
        yield by
        yield counts(
            "cadenza_gateway_plays_refused_total",
            "Plays refused (HTTP 422, or a play_error 400/422 on /ws), by field.",
            "field",
            self.plays_refused,
        )
        yield counts(
            "cadenza_gateway_ws_frames_total",
            "Frames received from browsers on /ws, by kind (play: a play report; other: another "
            "JSON object, e.g. a pong; ignored: bytes, not a JSON object, or over 4 KiB).",
            "kind",
            self.ws_frames,
        )
        yield CounterMetricFamily(
            "cadenza_gateway_auth_failures_total", "Requests refused for their token.", self.auth_failures
        )
        yield counts("cadenza_gateway_errors_total", "Errors, by kind.", "kind", self.errors)
        yield from self.fanout.collect()
        yield from self.feed_delay.collect()
        yield from self.recommend_delay.collect()


def counts(name: str, documentation: str, label: str, by: Mapping[str, int]) -> CounterMetricFamily:
    """A counter family with one sample per key of ``by`` (in key order), labelled ``label``."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, n in sorted(by.items()):
        family.add_metric([key], n)
    return family


class ConsumerLag:
    """Consumer lag as read at scrape time: ``read()`` gives the rows and the error (None when
    the broker answered) of the gateway's latest reading (:meth:`gateway.state.Gateway.refresh_lag`)."""

    def __init__(self, read: Callable[[], tuple[Sequence[LagRow], str | None]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        rows, error = self.read()
        lag = GaugeMetricFamily(
            "cadenza_consumer_lag",
            "Messages behind the log end, per consumer group (or Spark query), topic and partition.",
            labels=["consumer", "kind", "topic", "partition"],
        )
        for r in rows:
            lag.add_metric([r.name, r.kind, r.topic, str(r.partition)], r.lag)
        yield lag
        stable = GaugeMetricFamily(
            "cadenza_consumer_group_stable",
            "1 when a consumer group is Stable; 0 while it rebalances (a worker joined or died) or "
            "when it has no members.",
            labels=["consumer", "state"],
        )
        for name, state in sorted({(r.name, r.state) for r in rows if r.kind == "group"}):
            stable.add_metric([name, state], 1 if state == "Stable" else 0)
        yield stable
        yield GaugeMetricFamily(
            "cadenza_consumer_lag_up", "1 when consumer lag could be read from the broker.", 0 if error else 1
        )
