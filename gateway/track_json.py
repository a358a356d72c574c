"""What the catalogue API answers, whoever computes it: a track's JSON, page bounds, nearest tracks.

Source: a ``tracks`` document (:mod:`gateway.catalogue`, the MongoDB path) or a track of
the in-memory index (:mod:`gateway.track_index`). Destination: the JSON of
``/api/tracks…`` from either, so both paths answer the same shapes and the same order.
Pure: numpy, no IO.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

#: The stored fields a track's JSON is made of (a MongoDB projection).
PUBLIC: Final = {
    "title": 1,
    "artist": 1,
    "album": 1,
    "genre_top": 1,
    "genres": 1,
    "duration_s": 1,
    "cluster": 1,
    "audio_path": 1,  # only whether there is one: ``playable``
}
#: Characters of a text parameter used (``q``, ``genre``, ``artist``).
MAX_TEXT: Final = 200
MAX_PER_PAGE: Final = 100


class Track(NamedTuple):
    """A track's public fields (no features, no file path). ``playable``: the track has a
    stored audio path (imported rows, e.g. FMA's ``features.csv``, have none: listed,
    searchable and recommended, but the player cannot play them)."""

    track_id: int
    title: str = ""
    artist: str = ""
    album: str = ""
    genre_top: str | None = None
    genres: tuple[int, ...] = ()
    duration_s: float = 0.0
    cluster: int | None = None
    playable: bool = True

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Track:
        """A stored track's fields (ValueError/TypeError for a document that has no usable ones)."""
        cluster, genre_top = doc.get("cluster"), doc.get("genre_top")
        return cls(
            track_id=int(doc["_id"]),
            title=str(doc.get("title") or ""),
            artist=str(doc.get("artist") or ""),
            album=str(doc.get("album") or ""),
            genre_top=genre_top if isinstance(genre_top, str) else None,
            genres=tuple(int(g) for g in doc.get("genres") or ()),
            duration_s=float(doc.get("duration_s") or 0.0),
            cluster=cluster if isinstance(cluster, int) and not isinstance(cluster, bool) else None,
            playable=bool(doc.get("audio_path")),
        )

    def json(self) -> dict[str, Any]:
        """The track as the API shows it."""
        return {
            "track_id": self.track_id,
            "title": self.title,
            "artist": self.artist,
            "album": self.album,
            "genre_top": self.genre_top,
            "genres": list(self.genres),
            "duration_s": self.duration_s,
            "cluster": self.cluster,
            "audio_url": f"/audio/{self.track_id}",
            "playable": self.playable,
        }


def track_json(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored track as the API shows it (no features, no file path)."""
    return Track.from_doc(doc).json()


def page_bounds(page: int, per_page: int) -> tuple[int, int]:
    """``page`` from 1, ``per_page`` within 1 … :data:`MAX_PER_PAGE`."""
    return max(1, page), min(MAX_PER_PAGE, max(1, per_page))


def nearest(
    ids: NDArray[np.int64], coords: NDArray[np.float64], seed: int, limit: int
) -> tuple[list[int], NDArray[np.float64]]:
    """Positions of the ``limit`` (1 … :data:`MAX_PER_PAGE`) tracks nearest to the one at
    position ``seed`` (Euclidean distance of ``coords``; equal distances by id; the seed's
    id left out), nearest first, and every position's distance.

    Only the positions within the ``limit + 1`` smallest distances (ties included) are
    sorted, which gives the order a full sort would."""
    d = np.sqrt(((coords - coords[seed]) ** 2).sum(axis=1))
    keep = max(1, min(limit, MAX_PER_PAGE))
    candidates = np.arange(d.size)
    if d.size > keep + 1:
        candidates = np.flatnonzero(d <= np.partition(d, keep)[keep])
    order = candidates[np.lexsort((ids[candidates], d[candidates]))]
    own = ids[seed]
    return [int(i) for i in order if ids[i] != own][:keep], d


def with_distance(track: dict[str, Any], distance: float) -> dict[str, Any]:
    """A similar track's JSON: the track and its distance to the seed (6 decimals)."""
    return {**track, "distance": round(float(distance), 6)}
