"""Cadenza's contract: message and document shapes, topics, feature order.

Imports nothing else of Cadenza's; every other package imports it.
"""

from schemas.codec import dead_letter, decode, encode, encode_key
from schemas.errors import SchemaError
from schemas.events import (
    DeadLetter,
    PlayEvent,
    PlayKind,
    Recommendation,
    RecommendedTrack,
    TrackAssigned,
    TrackEvent,
    Trending,
)

__all__ = [
    "DeadLetter",
    "PlayEvent",
    "PlayKind",
    "Recommendation",
    "RecommendedTrack",
    "SchemaError",
    "TrackAssigned",
    "TrackEvent",
    "Trending",
    "dead_letter",
    "decode",
    "encode",
    "encode_key",
]
