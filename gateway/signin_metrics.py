"""Password sign-ins by result, as a Prometheus collector of the gateway's ``/metrics``.

Source: :mod:`gateway.signin` (one count per ``POST /api/login`` answered). Destination:
``cadenza_gateway_signins_total{result}``, every result exported from 0, registered next to
:class:`gateway.metrics.GatewayMetrics` by :mod:`gateway.routes.ops`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.core import CounterMetricFamily, Metric

#: ok: signed in; bad_credentials: wrong name or password (401); locked: the account name is
#: locked out (429); rate: the client address is (429); disabled: right password, disabled account (403).
RESULTS: Final = ("ok", "bad_credentials", "locked", "rate", "disabled")


@dataclass(eq=False)  # hashable by identity: a registry keeps its collectors in a dict
class SigninMetrics:
    results: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(RESULTS, 0)))

    def count(self, result: str) -> None:
        self.results[result] += 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "cadenza_gateway_signins",
            "Password sign-ins (POST /api/login), by result: ok, bad_credentials (401), locked (the "
            "account name is locked out, 429), rate (the client address is, 429), disabled (403).",
            labels=["result"],
        )
        for result, n in sorted(self.results.items()):
            family.add_metric([result], n)
        yield family
