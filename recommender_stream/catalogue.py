"""The recommender's in-memory catalogue: every track's cluster and position in the model's space.

Sources: the current model's ``export.json`` (:class:`schemas.cluster_model.ClusterModel`,
the same maths as Spark's PipelineModel) at start-up: the coordinates and clusters of
the model's catalogue snapshot (:func:`recommender_stream.catalogue_loader.catalogue_from_snapshot`)
or the model applied to the feature vectors of ``tracks``
(:func:`recommender_stream.catalogue_loader.load_catalogue`); then every
``TrackEvent`` on ``cadenza.tracks.new``, assigned by the same model in the worker
(:meth:`Catalogue.add_vector`), so a new track is recommendable at once.
Consumers: :mod:`recommender_stream.ranking` (nearest neighbours within a cluster,
members, titles for the reasons).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from schemas.cluster_model import ClusterModel

#: Nearest-neighbour lists kept (one per track asked about); cleared when full.
NEAREST_CACHE = 200_000
#: Neighbours found per track at least (ranking asks for 10 and 20): one search serves both.
NEAREST_KEPT = 20


@dataclass
class Catalogue:
    """Tracks in the model's reduced (PCA) space, indexed by cluster."""

    model: ClusterModel | None
    dims: int
    ids: list[int] = field(default_factory=list)
    clusters: list[int] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    artists: list[str] = field(default_factory=list)
    #: Whether each track has audio (imported feature rows have none): while any track has,
    #: those without are never recommended, for the listener could not play them.
    playable: list[bool] = field(default_factory=list)
    playable_count: int = 0
    _coords: NDArray[np.float32] = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    _pos: dict[int, int] = field(default_factory=dict)
    _members: dict[int, list[int]] = field(default_factory=dict)
    _member_arrays: dict[int, NDArray[np.int64]] = field(default_factory=dict)
    _member_blocks: dict[int, tuple[NDArray[np.float32], NDArray[np.float32]]] = field(default_factory=dict)
    _nearest: dict[int, list[tuple[int, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self._coords.shape[1] != self.dims:
            self._coords = np.zeros((0, self.dims), dtype=np.float32)

    @property
    def version(self) -> str | None:
        return None if self.model is None else self.model.version

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._pos

    # --- building -----------------------------------------------------------------------

    def add(
        self,
        track_id: int,
        cluster: int,
        coords: NDArray[np.floating],
        title: str = "",
        artist: str = "",
        *,
        playable: bool = True,
    ) -> None:
        """Add (or move) one track."""
        vector = np.asarray(coords, dtype=np.float32).reshape(-1)
        if vector.size != self.dims:
            raise ValueError(f"track {track_id}: {vector.size} coordinates, the catalogue has {self.dims}")
        if track_id in self._pos:
            pos = self._pos[track_id]
            old = self.clusters[pos]
            if old != cluster:
                self._members[old].remove(pos)
                self._member_arrays.pop(old, None)
                self._member_blocks.pop(old, None)
                self._members.setdefault(cluster, []).append(pos)
            self.clusters[pos], self.titles[pos], self.artists[pos] = cluster, title, artist
            self.playable_count += int(playable) - int(self.playable[pos])
            self.playable[pos] = playable
            self._coords[pos] = vector
            self._member_arrays.pop(cluster, None)
            self._member_blocks.pop(cluster, None)
            self._nearest.clear()
            return
        pos = len(self.ids)
        if pos >= self._coords.shape[0]:
            grown = np.zeros((max(64, 2 * pos), self.dims), dtype=np.float32)
            grown[:pos] = self._coords[:pos]
            self._coords = grown
        self._coords[pos] = vector
        self.ids.append(int(track_id))
        self.clusters.append(int(cluster))
        self.titles.append(title)
        self.artists.append(artist)
        self.playable.append(playable)
        self.playable_count += int(playable)
        self._pos[int(track_id)] = pos
        self._members.setdefault(int(cluster), []).append(pos)
        self._member_arrays.pop(int(cluster), None)
        self._member_blocks.pop(int(cluster), None)
        self._nearest.clear()

    def add_vector(
        self,
        track_id: int,
        features: NDArray[np.floating] | Sequence[float],
        title: str = "",
        artist: str = "",
        *,
        playable: bool = True,
    ) -> int:
        """Assign a raw feature vector with the model and add it; returns its cluster."""
        if self.model is None:
            raise ValueError("no current model: train one with `cadenza model train`")
        coords = self.model.transform(np.asarray(features, dtype=np.float64).reshape(1, -1))[0]
        cluster = int(self.model.assign(np.asarray(features, dtype=np.float64).reshape(1, -1))[0])
        self.add(track_id, cluster, coords, title, artist, playable=playable)
        return cluster

    # --- queries ------------------------------------------------------------------------

    def recommendable(self, pos: int) -> bool:
        """Whether the track may be recommended: it has audio, or no track has (a catalogue
        of feature rows alone is still browsed and recommended)."""
        return self.playable[pos] or self.playable_count == 0

    def position(self, track_id: int) -> int | None:
        return self._pos.get(track_id)

    def coords(self, positions: NDArray[np.int64] | list[int]) -> NDArray[np.float32]:
        return self._coords[np.asarray(positions, dtype=np.int64)]

    def members(self, cluster: int) -> NDArray[np.int64]:
        """Positions of the tracks of a cluster (ascending)."""
        cached = self._member_arrays.get(cluster)
        if cached is None:
            cached = np.asarray(sorted(self._members.get(cluster, [])), dtype=np.int64)
            self._member_arrays[cluster] = cached
        return cached

    def _block(self, cluster: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The cluster's coordinates as one contiguous matrix, and their squared norms."""
        cached = self._member_blocks.get(cluster)
        if cached is None:
            matrix = np.ascontiguousarray(self._coords[self.members(cluster)])
            cached = (matrix, (matrix * matrix).sum(axis=1))
            self._member_blocks[cluster] = cached
        return cached

    def closest_in(self, cluster: int, point: NDArray[np.floating], count: int) -> list[tuple[int, float]]:
        """Up to ``count`` tracks of ``cluster`` nearest to ``point``: ``(pos, distance)``, nearest
        first (lower position on a tie)."""
        members = self.members(cluster)
        if members.size == 0 or count <= 0:
            return []
        matrix, norms = self._block(cluster)
        x = np.asarray(point, dtype=np.float32)
        d2 = np.maximum(norms - 2.0 * (matrix @ x) + float(x @ x), 0.0)
        take = min(count, members.size)
        idx = np.argpartition(d2, take - 1)[:take] if take < members.size else np.arange(members.size)
        order = sorted(idx.tolist(), key=lambda i: (float(d2[i]), int(members[i])))
        return [(int(members[i]), float(np.sqrt(d2[i]))) for i in order]

    def nearest(self, pos: int, count: int) -> list[tuple[int, float]]:
        """Up to ``count`` other tracks of the same cluster nearest to ``pos``: ``(pos, distance)``.

        Cached per track, at least ``NEAREST_KEPT`` deep so that asking for fewer is a
        slice (popular tracks are asked for again and again), until the catalogue changes."""
        found = self._nearest.get(pos)
        if found is None or (len(found) < count and len(found) < len(self._members[self.clusters[pos]]) - 1):
            kept = max(count, NEAREST_KEPT)
            near = self.closest_in(self.clusters[pos], self._coords[pos], kept + 1)
            found = [(p, d) for p, d in near if p != pos][:kept]
            if len(self._nearest) >= NEAREST_CACHE:
                self._nearest.clear()
            self._nearest[pos] = found
        return found[:count]
