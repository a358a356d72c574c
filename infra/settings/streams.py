"""Settings of the Structured Streaming queries: triggers, watermarks, windows, checkpoints."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from infra.settings.component import Component

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

    stream_trigger_s: float = Field(1.0, gt=0, description="Structured Streaming trigger interval.")
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
