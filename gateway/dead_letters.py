"""What the ops page knows of ``cadenza.dlq``: dead letters per topic and stage, the newest few.

Source: every record of ``cadenza.dlq`` (read by :mod:`gateway.feed` with the other
topics), decoded through :func:`schemas.codec.decode`. A record there that is not a
``DeadLetter`` (anyone can write to the topic) is counted as unreadable and skipped: it
is never dead-lettered again. Labels come from the letters, so they are bounded: a
topic outside Cadenza's registry counts as ``other``, and at most ``MAX_STAGES`` stage
names are kept. Destinations: ``/metrics`` (``cadenza_dead_letters_total``,
``cadenza_gateway_dlq_unreadable_total``) and ``/api/ops`` (``recent``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, Metric

from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.events import DeadLetter
from schemas.topics import TOPICS

MAX_STAGES: Final = 32
RECENT: Final = 50
KNOWN_TOPICS: Final = frozenset(t.name for t in TOPICS)


@dataclass(eq=False)  # hashable by identity, as a registry needs of a collector
class DeadLetterLog:
    """Counts and the newest letters; ``prefix`` is the deployment's topic prefix."""

    prefix: str
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    unreadable: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))

    def observe(self, value: bytes | None, *, count: bool = True) -> bool:
        """Take one ``cadenza.dlq`` record; False when it is not a dead letter. ``count``
        is False for records replayed at start-up (already counted by an earlier process)."""
        try:
            letter = decode(DeadLetter, value)
        except SchemaError:
            if count:
                self.unreadable += 1
            return False
        topic = self._topic(letter.topic)
        stage = self._stage(letter.stage)
        if count:
            self.counts[(topic, stage)] += 1
        self.recent.appendleft(
            {
                "topic": topic,
                "stage": stage,
                "error_class": letter.error_class[:100],
                "error": letter.error[:300],
                "partition": letter.partition,
                "offset": letter.offset,
                "ts": letter.ts.isoformat(),
            }
        )
        return True

    def _topic(self, full: str) -> str:
        name = full.removeprefix(self.prefix)
        return name if name in KNOWN_TOPICS else "other"

    def _stage(self, stage: str) -> str:
        stage = stage[:60]
        known = {s for _, s in self.counts}
        return stage if stage in known or len(known) < MAX_STAGES else "other"

    def collect(self) -> Iterator[Metric]:
        """The dead-letter families of ``/metrics`` (yielded by :meth:`gateway.feed.Feed.collect`)."""
        letters = CounterMetricFamily(
            "cadenza_dead_letters_total",
            "Records a consumer could not process, by original topic and consuming stage "
            "(read from cadenza.dlq since this gateway started).",
            labels=["topic", "stage"],
        )
        for (topic, stage), n in sorted(self.counts.items()):
            letters.add_metric([topic, stage], n)
        yield letters
        yield CounterMetricFamily(
            "cadenza_gateway_dlq_unreadable_total",
            "Records on cadenza.dlq that are not dead letters (skipped).",
            self.unreadable,
        )
