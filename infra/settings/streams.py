"""Settings of the Structured Streaming queries: triggers, watermarks, windows, checkpoints.

Triggers, per query: ``plays-history``, ``plays-sessions`` and ``plays-trending`` run every
``stream_<query>_trigger_s`` when that is set, else every ``stream_trigger_s`` when *that*
is set, else at their defaults (:data:`HISTORY_TRIGGER_S`, :data:`SESSIONS_TRIGGER_S`,
:data:`TRENDING_TRIGGER_S`); ``plays-profiles`` every ``profile_trigger_s``; ``tracks-assign``
every ``stream_trigger_s``. Each micro-batch has a fixed cost (tasks, state store commits,
checkpoint files), so a query runs as rarely as what it feeds allows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from infra.settings.component import Component

#: Default triggers of the plays queries (see the module docstring for the precedence). History
#: and trending bound how soon a play is in ``plays`` (< 10 s) and in ``cadenza.trending``
#: (< 15 s) at 500 plays/s, trigger + batch time; a session closes ``session_gap`` after its
#: last play at the earliest, so 30 s more is nothing to a reader of ``sessions``.
HISTORY_TRIGGER_S: Final = 2.0
TRENDING_TRIGGER_S: Final = 5.0
SESSIONS_TRIGGER_S: Final = 30.0

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)


def duration_s(text: str) -> int:
    """Seconds in a Spark-style interval such as ``"10 minutes"`` or ``"1 hour"``."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like '30 seconds', '10 minutes', '1 hour'")
    seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


class StreamSettings(Component):
    """Stream settings: see each field's description."""

    stream_trigger_s: float = Field(
        1.0,
        gt=0,
        description="Trigger interval of the tracks-assign query; when set, also of every plays query "
        "without a trigger of its own (history, sessions, trending; not profiles).",
    )
    stream_history_trigger_s: float | None = Field(
        None,
        gt=0,
        description=f"Trigger interval of plays-history (default {HISTORY_TRIGGER_S:g} s, or "
        "CADENZA_STREAM_TRIGGER_S when that is set): how soon a play is in the history.",
    )
    stream_trending_trigger_s: float | None = Field(
        None,
        gt=0,
        description=f"Trigger interval of plays-trending (default {TRENDING_TRIGGER_S:g} s, or "
        "CADENZA_STREAM_TRIGGER_S when that is set): how soon a play counts in cadenza.trending.",
    )
    stream_sessions_trigger_s: float | None = Field(
        None,
        gt=0,
        description=f"Trigger interval of plays-sessions (default {SESSIONS_TRIGGER_S:g} s, or "
        "CADENZA_STREAM_TRIGGER_S when that is set); a session closes session_gap after its last "
        "play at the earliest.",
    )
    stream_sessions_max_offsets_per_trigger: int = Field(
        500_000, ge=1, description="Most Kafka records one micro-batch of the sessions query reads."
    )
    stream_watermark: str = Field("10 minutes", description="Event-time watermark of plays.")
    session_gap: str = Field("30 minutes", description="Inactivity that closes a session.")
    trending_window: str = Field("10 minutes", description="Trending window length.")
    trending_slide: str = Field("1 minute", description="Trending window slide.")
    checkpoint_dir: Path | None = Field(
        None, description="Streaming checkpoints; default <data_dir>/checkpoints."
    )
    stream_min_batches_to_retain: int = Field(
        100,
        ge=1,
        description="spark.sql.streaming.minBatchesToRetain: micro-batches whose offsets, commits "
        "and state files a streaming checkpoint keeps; older ones are deleted (Spark's default, "
        "100, is a few minutes at a 1 s trigger).",
    )
    stream_starting_offsets: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a streaming query with a new checkpoint starts reading its topic.",
    )
    stream_max_offsets_per_trigger: int = Field(
        50_000, ge=1, description="Most Kafka records one micro-batch reads (bounds batch size)."
    )
    profile_trigger_s: float = Field(
        30.0,
        gt=0,
        description="Trigger interval of the listener-profile query: one write per active listener "
        "per interval, so longer means fewer database writes and staler profiles.",
    )
    profile_max_offsets_per_trigger: int = Field(
        500_000, ge=1, description="Most Kafka records one micro-batch of the profile query reads."
    )
    stream_max_future_s: float = Field(
        300.0,
        gt=0,
        description="Plays whose event time is further ahead of the clock than this are "
        "dead-lettered (they would push the watermark past every real event).",
    )
    trending_top_n: int = Field(20, ge=1, le=100, description="Top tracks kept per trending window.")

    def _plays_trigger_s(self, own: float | None, default: float) -> float:
        if own is not None:
            return own
        return self.stream_trigger_s if "stream_trigger_s" in self.model_fields_set else default

    @property
    def history_trigger_s(self) -> float:
        """Trigger of ``plays-history``: its own setting, else ``stream_trigger_s`` if set, else 2 s."""
        return self._plays_trigger_s(self.stream_history_trigger_s, HISTORY_TRIGGER_S)

    @property
    def trending_trigger_s(self) -> float:
        """Trigger of ``plays-trending``: its own setting, else ``stream_trigger_s`` if set, else 5 s."""
        return self._plays_trigger_s(self.stream_trending_trigger_s, TRENDING_TRIGGER_S)

    @property
    def sessions_trigger_s(self) -> float:
        """Trigger of ``plays-sessions``: its own setting, else ``stream_trigger_s`` if set, else 30 s."""
        return self._plays_trigger_s(self.stream_sessions_trigger_s, SESSIONS_TRIGGER_S)

    @field_validator("stream_watermark", "session_gap", "trending_window", "trending_slide")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_s(value)
        return value

    @model_validator(mode="after")
    def _windows(self) -> Self:
        window, slide = duration_s(self.trending_window), duration_s(self.trending_slide)
        if window % slide:
            raise ValueError(
                f"trending_window ({self.trending_window}) must be a whole number of "
                f"trending_slide ({self.trending_slide})"
            )
        return self
