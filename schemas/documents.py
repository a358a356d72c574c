"""MongoDB document shapes, one model per collection of the design.

Writers: ``etl`` (``tracks``, ``etl_errors``), ``streaming_jobs`` (``models``,
``sessions``, ``plays``, ``users``, ``trending``, cluster fields of ``tracks``), ``cadenza
user`` (``accounts``) and the gateways (``signin_failures``, password re-hashes).
Readers: every service. ``_id`` is always the natural id, so writes are idempotent
upserts. Collection names and indexes live in :data:`COLLECTIONS`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.events import PlayKind, TrackCount, TrackId, UserId, UtcDatetime, utcnow
from schemas.features import FEATURE_SET_VERSION
from schemas.vectors import pack, unpack


class Document(BaseModel):
    """Base of every stored document: ``id`` is stored as ``_id``."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    def to_mongo(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="python")


class Excerpt(BaseModel):
    """The part of a track's audio its features describe, in seconds from the start."""

    offset_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)


class TrackDoc(Document):
    """``tracks``: one catalogue entry with its feature vector and cluster.

    ``features`` is stored packed (float32 binary, :mod:`schemas.vectors`): :meth:`to_mongo`
    packs it, and a stored document validates in either layout. Readers of many tracks
    decode with :func:`schemas.vectors.unpack_many` instead of this model.
    ``duration_s`` is the whole track's; ``excerpt`` is what the ETL analysed (FMA's
    30 s from the middle by default, all of a shorter track). It is optional and left out
    of the document when unknown (features imported from FMA's ``features.csv`` or sent
    by upstream services, tracks extracted before it was recorded: whole files), so an
    update built from this model (the assign stream's ``$set``) never erases it.
    """

    id: TrackId = Field(alias="_id")
    title: str = ""
    artist: str = ""
    album: str = ""
    genres: list[int] = Field(default_factory=list)
    genre_top: str | None = None
    duration_s: float = 0.0
    excerpt: Excerpt | None = None
    audio_path: str | None = None
    subset: str | None = None
    features: list[float] | None = None
    feature_set_version: str = FEATURE_SET_VERSION
    source: str = "extracted"
    cluster: int | None = None
    model_version: str | None = None
    updated: datetime = Field(default_factory=utcnow)

    @field_validator("features", mode="before")
    @classmethod
    def _unpacked(cls, value: Any) -> Any:
        return unpack(value).tolist() if isinstance(value, bytes) else value

    def to_mongo(self) -> dict[str, Any]:
        doc = super().to_mongo()
        if self.features is not None:
            doc["features"] = pack(self.features)
        if self.excerpt is None:
            del doc["excerpt"]
        return doc


class EtlErrorDoc(Document):
    """``etl_errors``: a file the ETL could not turn into features (keyed by track id)."""

    id: int = Field(alias="_id")
    path: str
    error_class: str
    message: str
    feature_set_version: str = FEATURE_SET_VERSION
    ts: datetime = Field(default_factory=utcnow)


class ModelDoc(Document):
    """``models``: one trained model in the registry."""

    id: str = Field(alias="_id", description="Model version id.")
    k: int
    created: datetime = Field(default_factory=utcnow)
    path: str
    export_path: str
    feature_set_version: str = FEATURE_SET_VERSION
    metrics: dict[str, Any] = Field(default_factory=dict)
    current: bool = False


class PlayDoc(Document):
    """``plays``: listening history, one document per event (``_id`` = event id)."""

    id: str = Field(alias="_id")
    user_id: UserId
    track_id: TrackId
    kind: PlayKind
    position_s: float = 0.0
    ts: UtcDatetime
    cluster: int | None = None


class SessionDoc(Document):
    """``sessions``: one closed listening session (``_id`` = ``user_id:start``)."""

    id: str = Field(alias="_id")
    user_id: UserId
    start: UtcDatetime
    end: UtcDatetime
    tracks: list[int] = Field(default_factory=list)
    plays: int = 0
    skips: int = 0
    completes: int = 0
    likes: int = 0
    dominant_cluster: int | None = None


class UserDoc(Document):
    """``users``: a listener's long-term profile (written by the plays stream)."""

    id: UserId = Field(alias="_id")
    counts: dict[str, dict[str, dict[str, int]]] = Field(
        default_factory=dict,
        description="model version -> cluster -> {play, skip, complete, like} counts",
    )
    totals: dict[str, int] = Field(default_factory=dict, description="kind -> count, all time")
    track_plays: dict[str, int] = Field(default_factory=dict, description="track id -> plays")
    model_version: str | None = Field(default=None, description="newest model the counts use")
    updated: datetime = Field(default_factory=utcnow)

    def cluster_counts(self) -> dict[str, dict[str, int]]:
        """Counts per cluster under the newest model (cluster -> kind -> count)."""
        return self.counts.get(self.model_version or "", {})

    def top_tracks(self, n: int = 20) -> list[TrackCount]:
        """The most played tracks, most plays first (lower id on a tie)."""
        ranked = sorted(((int(t), p) for t, p in self.track_plays.items()), key=lambda tp: (-tp[1], tp[0]))
        return [TrackCount(track_id=t, plays=p) for t, p in ranked[:n]]


class TrendingDoc(Document):
    """``trending``: plays of a cluster in one sliding window, with its top tracks."""

    id: str = Field(alias="_id", description="'<scope>:<id>:<window start ISO>'")
    scope: str = Field(description="'cluster'")
    ref: int = Field(description="the cluster id (-1: tracks without a cluster yet)")
    window_start: UtcDatetime
    window_end: UtcDatetime
    plays: int
    top_tracks: list[TrackCount] = Field(default_factory=list, description="most played, first")


AccountRole = Literal["admin", "listener"]


class AccountDoc(Document):
    """``accounts``: a listener's sign-in account (``_id`` = the user id their tokens carry).

    Not ``users``, which is the listening profile the plays stream writes. A deleted account
    stays as a revocation record: ``deleted`` true, no password, ``tokens_valid_after`` the
    time of deletion, so tokens signed for that name before then are refused. Every change
    sets ``updated``: the gateways poll what changed since they last looked.
    """

    id: UserId = Field(alias="_id")
    password_hash: str | None = Field(default=None, description="argon2id, PHC string format")
    role: AccountRole = "listener"
    disabled: bool = False
    deleted: bool = False
    created: UtcDatetime = Field(default_factory=utcnow)
    updated: UtcDatetime = Field(default_factory=utcnow)
    tokens_valid_after: UtcDatetime = Field(
        default_factory=utcnow,
        description="tokens issued before this are refused (set on creation, disable, delete and "
        "password change)",
    )


class SigninFailureDoc(Document):
    """``signin_failures``: one refused password sign-in, counted for the account's name and for
    the client address (``key``: ``account:<name>`` or ``address:<ip>``). Read by time: every
    query filters ``at`` itself, since a TTL index may not be enforced (FerretDB)."""

    id: str = Field(alias="_id")
    key: str
    at: UtcDatetime


@dataclass(frozen=True)
class IndexSpec:
    """A secondary index: ``keys`` as pymongo expects, plus options."""

    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    name: str | None = None


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    document: type[Document]
    indexes: tuple[IndexSpec, ...] = field(default_factory=tuple)


COLLECTIONS: tuple[CollectionSpec, ...] = (
    CollectionSpec(
        "tracks",
        TrackDoc,
        (
            IndexSpec((("cluster", 1),)),
            IndexSpec((("genre_top", 1),)),
            IndexSpec((("artist", 1),)),
            IndexSpec((("title", 1),)),
            IndexSpec((("feature_set_version", 1),)),
        ),
    ),
    CollectionSpec("etl_errors", EtlErrorDoc),
    CollectionSpec("models", ModelDoc, (IndexSpec((("current", 1),)), IndexSpec((("created", -1),)))),
    CollectionSpec("users", UserDoc),
    CollectionSpec("sessions", SessionDoc, (IndexSpec((("user_id", 1), ("start", -1))),)),
    CollectionSpec("plays", PlayDoc, (IndexSpec((("user_id", 1), ("ts", -1))),)),
    CollectionSpec("trending", TrendingDoc, (IndexSpec((("scope", 1), ("window_end", -1))),)),
    CollectionSpec("accounts", AccountDoc, (IndexSpec((("updated", 1),)),)),
    CollectionSpec(
        "signin_failures", SigninFailureDoc, (IndexSpec((("key", 1), ("at", -1))), IndexSpec((("at", 1),)))
    ),
)


def new_id() -> str:
    """A fresh opaque id (model versions etc.)."""
    return uuid.uuid4().hex[:12]
