"""Kafka message shapes (pydantic v2): the contract between every Cadenza service.

Producers: the gateway and upstream services (``PlayEvent``), the ETL and upstream
services (``TrackEvent``), ``streaming_jobs`` (``TrackAssigned``, ``Trending``),
``recommender_stream`` (``Recommendation``) and every consumer (``DeadLetter``).
All are JSON on the wire; see :mod:`schemas.codec` and :mod:`schemas.topics`.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from schemas.features import FEATURE_SET_VERSION, N_FEATURES

UserId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.@\-]+$",
        description="Listener id: letters, digits and _ . @ - (1 to 128 characters).",
    ),
]
TrackId = Annotated[int, Field(gt=0, lt=2**53, description="FMA track id (positive integer).")]
#: Largest float32: feature values are stored as float32, so larger ones are refused.
FLOAT32_MAX = 3.4028234663852886e38


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    Field(description="An instant with a timezone (ISO 8601); normalised to UTC."),
]


#: Event times outside this range are refused (clock bugs; and pandas/Spark nanosecond
#: timestamps cannot even hold years before 1677 or after 2262).
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT = datetime(2200, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every message: immutable; fields it does not know are ignored.

    The topic-evolution rule (README, "Changing a topic's schema"): a topic's message may
    gain optional fields, which consumers that do not know them ignore; anything else (a
    field removed, renamed, retyped or made required) is a new topic or a new value of a
    version field. So every consumer decodes with unknown fields ignored, and what
    producers write always has exactly the fields of the model.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class PlayKind(StrEnum):
    """What a listener did with a track."""

    PLAY = "play"
    SKIP = "skip"
    COMPLETE = "complete"
    LIKE = "like"


class PlaySource(StrEnum):
    """Where the listener started a track from: what acceptance of recommendations is counted by."""

    BROWSE = "browse"  # the catalogue, search, an artist, album or similar-tracks list
    UP_NEXT = "up_next"  # the "Up next" list the recommender pushed
    RADIO = "radio"  # a radio station started from a track (the recommender's list, played on)
    QUEUE = "queue"  # the listener's own queue


#: A play's source as counted in metrics: each :class:`PlaySource`, and ``unknown`` for a
#: play that did not say (the gateway's and the recommender's ``source`` label).
UNKNOWN_SOURCE = "unknown"
SOURCE_LABELS = (*(s.value for s in PlaySource), UNKNOWN_SOURCE)


def source_label(source: str | None) -> str:
    """The metrics label of a play's source (a :class:`PlaySource` is a str; ``unknown`` when
    it did not say)."""
    return str(source) if source else UNKNOWN_SOURCE


class PlayEvent(Message):
    """A listener's action on a track (topic ``cadenza.plays``, key ``user_id``)."""

    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Idempotency key: redelivery never counts twice."
    )
    user_id: UserId
    track_id: TrackId
    kind: PlayKind
    position_s: float = Field(
        default=0.0, ge=0, le=86_400, allow_inf_nan=False, description="Playback position."
    )
    ts: UtcDatetime = Field(default_factory=utcnow, description="Event time (UTC).")
    source: PlaySource | None = Field(
        default=None,
        description="Where the track was started from (browse, up_next, radio, queue); absent: "
        "not said (older producers). Optional under the topic-evolution rule.",
    )

    @field_validator("ts")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        if not EARLIEST_EVENT <= value <= LATEST_EVENT:
            raise ValueError(
                f"event time {value.isoformat()} is outside {EARLIEST_EVENT.year}-{LATEST_EVENT.year}; "
                "check the producer's clock"
            )
        return value


class TrackEvent(Message):
    """A track entering the catalogue (topic ``cadenza.tracks.new``, key ``track_id``).

    Carries the metadata and the 518-value feature vector in
    :data:`schemas.features.FEATURE_COLUMNS` order (finite, within float32's range: a
    JSON list here, packed float32 in MongoDB).
    """

    track_id: TrackId
    title: str = Field(default="", max_length=1000)
    artist: str = Field(default="", max_length=1000)
    album: str = Field(default="", max_length=1000)
    genres: list[int] = Field(default_factory=list, max_length=64)
    genre_top: str | None = Field(default=None, max_length=200)
    duration_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    audio_path: str | None = Field(default=None, max_length=4096)
    features: list[float] = Field(min_length=N_FEATURES, max_length=N_FEATURES)
    feature_set_version: str = FEATURE_SET_VERSION
    ts: UtcDatetime = Field(default_factory=utcnow)

    @field_validator("features")
    @classmethod
    def _finite(cls, values: list[float]) -> list[float]:
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise ValueError(f"feature {i} is not finite ({v})")
            if abs(v) > FLOAT32_MAX:  # stored as float32 (schemas.vectors): it would be inf
                raise ValueError(f"feature {i} ({v:g}) is outside float32's range")
        return values


class TrackAssigned(Message):
    """A track's cluster under a model (topic ``cadenza.tracks.assigned``)."""

    track_id: TrackId
    cluster: int = Field(ge=0)
    model_version: str = Field(min_length=1, max_length=200)
    ts: UtcDatetime = Field(default_factory=utcnow)


class RecommendedTrack(Message):
    """One entry of an "up next" list, with the reason shown to the listener."""

    track_id: TrackId
    score: float = Field(allow_inf_nan=False)
    reason: str = Field(max_length=500)
    cluster: int | None = None
    title: str = ""
    artist: str = ""


class Recommendation(Message):
    """A fresh "up next" list for one listener (topic ``cadenza.recommendations``)."""

    user_id: UserId
    items: list[RecommendedTrack] = Field(max_length=200)
    model_version: str | None = None
    cause_event_id: uuid.UUID | None = Field(
        default=None, description="The play that triggered this list (None for cold start)."
    )
    cause_ts: UtcDatetime | None = Field(default=None, description="Event time of that play.")
    ts: UtcDatetime = Field(default_factory=utcnow, description="When the list was produced.")


class TrackCount(Message):
    """A track and how often it was played in a window."""

    track_id: TrackId
    plays: int = Field(ge=0)


class Trending(Message):
    """Play counts of one cluster over one sliding window (topic ``cadenza.trending``)."""

    cluster: int = Field(ge=-1, description="-1 for tracks without a cluster yet.")
    window_start: UtcDatetime
    window_end: UtcDatetime
    plays: int = Field(ge=0)
    top_tracks: list[TrackCount] = Field(default_factory=list, max_length=100)
    ts: UtcDatetime = Field(default_factory=utcnow)


class DeadLetter(Message):
    """A record a consumer could not process (topic ``cadenza.dlq``, original key).

    ``value_b64`` holds the original bytes (base64) so nothing is lost; ``error`` says
    why in one line; ``stage`` names the consumer that gave up.
    """

    topic: str
    partition: int | None = None
    offset: int | None = None
    key_b64: str | None = None
    value_b64: str
    #: The original value's length; ``truncated`` when ``value_b64`` holds only its start
    #: (added fields: letters written before them read as ``None`` / ``False``).
    value_bytes: int | None = None
    truncated: bool = False
    error: str = Field(max_length=2000)
    error_class: str = "SchemaError"
    stage: str
    ts: UtcDatetime = Field(default_factory=utcnow)
