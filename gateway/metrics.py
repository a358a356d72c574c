"""The gateway's counters, fan-out latency and consumer lag, as Prometheus text and as rates.

Sources: :mod:`gateway.hub` (connections, messages pushed, slow disconnects, send
timeouts), the websocket writers (fan-out latency: from a message reaching this process
to its websocket send completing), :mod:`gateway.plays` (plays accepted and refused),
the limits of :mod:`gateway.routes` (refusals by reason) and error handlers; consumer
lag rows from :mod:`infra.offsets`. Destinations: ``/metrics`` and ``/api/ops`` (the
``/ops`` page).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from infra.offsets import LagRow
from infra.prometheus import Histogram, family

#: Why a request or websocket was refused by a limit (each always exported, from 0).
REFUSALS: Final = (
    "body_too_large",  # HTTP 413
    "body_too_deep",  # HTTP 400
    "plays_rate",  # HTTP 429
    "ws_listener_cap",  # close 4429
    "ws_process_cap",  # close 1013
)


@dataclass
class GatewayMetrics:
    connections: int = 0
    connections_total: int = 0
    messages_pushed: int = 0
    slow_disconnects: int = 0
    #: Websockets dropped because one send took longer than ``ws_send_timeout_s``.
    send_timeouts: int = 0
    refused: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(REFUSALS, 0)))
    plays_accepted: int = 0
    plays_refused: Counter[str] = field(default_factory=Counter)  # by field
    auth_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by kind
    fanout: Histogram = field(default_factory=Histogram)
    #: From a message's Kafka timestamp (its producer's clock) to this gateway reading it.
    feed_delay: Histogram = field(default_factory=Histogram)
    #: From the play a recommendation answers (its ``cause_ts``) to the recommendation's Kafka
    #: timestamp: the plays topic, the recommender's queue and its work.
    recommend_delay: Histogram = field(default_factory=Histogram)
    feed_messages: Counter[str] = field(default_factory=Counter)  # by topic
    _last: tuple[float, int, int] | None = None

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
        }

    def prometheus(self, lag: Sequence[LagRow] = (), lag_error: str | None = None) -> str:
        lines = [
            *family("cadenza_gateway_connections", "gauge", "Open websockets.", [(None, self.connections)]),
            *family(
                "cadenza_gateway_connections_total",
                "counter",
                "Websockets accepted.",
                [(None, self.connections_total)],
            ),
            *family(
                "cadenza_gateway_messages_pushed_total",
                "counter",
                "Messages sent to websockets.",
                [(None, self.messages_pushed)],
            ),
            *family(
                "cadenza_gateway_slow_disconnects_total",
                "counter",
                "Websockets dropped because their send queue overflowed (close 4408).",
                [(None, self.slow_disconnects)],
            ),
            *family(
                "cadenza_gateway_send_timeouts_total",
                "counter",
                "Websockets dropped because one send took longer than CADENZA_WS_SEND_TIMEOUT_S "
                "(the browser stopped reading; close 4408).",
                [(None, self.send_timeouts)],
            ),
            *family(
                "cadenza_gateway_refused_total",
                "counter",
                "Requests and websockets refused by a limit, by reason (body_too_large: 413, body_too_deep: "
                "400, plays_rate: 429, ws_listener_cap: close 4429, ws_process_cap: close 1013).",
                [({"reason": r}, n) for r, n in sorted(self.refused.items())],
            ),
            *family(
                "cadenza_gateway_feed_messages_total",
                "counter",
                "Messages read from Kafka, by topic.",
                [({"topic": t}, n) for t, n in sorted(self.feed_messages.items())],
            ),
            *family(
                "cadenza_gateway_plays_accepted_total",
                "counter",
                "Plays published to Kafka (HTTP 202).",
                [(None, self.plays_accepted)],
            ),
            *family(
                "cadenza_gateway_plays_refused_total",
                "counter",
                "Plays refused (HTTP 422), by field.",
                [({"field": f}, n) for f, n in sorted(self.plays_refused.items())],
            ),
            *family(
                "cadenza_gateway_auth_failures_total",
                "counter",
                "Requests refused for their token.",
                [(None, self.auth_failures)],
            ),
            *family(
                "cadenza_gateway_errors_total",
                "counter",
                "Errors, by kind.",
                [({"kind": k}, n) for k, n in sorted(self.errors.items())],
            ),
            *self.fanout.lines(
                "cadenza_gateway_fanout_seconds", "From a message reaching the gateway to its websocket send."
            ),
            *self.feed_delay.lines(
                "cadenza_gateway_feed_delay_seconds",
                "From a message's Kafka timestamp to the gateway reading it (includes clock skew).",
            ),
            *self.recommend_delay.lines(
                "cadenza_gateway_recommendation_delay_seconds",
                "From the play a recommendation answers (cause_ts) to the recommender producing it "
                "(its Kafka timestamp): the plays topic, the recommender's backlog and its work.",
            ),
            *family(
                "cadenza_consumer_lag",
                "gauge",
                "Messages behind the log end, per consumer group (or Spark query), topic and partition.",
                [
                    ({"consumer": r.name, "kind": r.kind, "topic": r.topic, "partition": r.partition}, r.lag)
                    for r in lag
                ],
            ),
            *family(
                "cadenza_consumer_group_stable",
                "gauge",
                "1 when a consumer group is Stable; 0 while it rebalances (a worker joined or died) or "
                "when it has no members.",
                [
                    ({"consumer": name, "state": state}, 1 if state == "Stable" else 0)
                    for name, state in sorted({(r.name, r.state) for r in lag if r.kind == "group"})
                ],
            ),
            *family(
                "cadenza_consumer_lag_up",
                "gauge",
                "1 when consumer lag could be read from the broker.",
                [(None, 0 if lag_error else 1)],
            ),
        ]
        return "\n".join(lines) + "\n"
