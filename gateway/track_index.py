"""The catalogue in memory: every track's public fields, words, genre and artist, and its place in
the current model's space, grouped by cluster.

Sources (through :class:`gateway.library.Library`): ``tracks`` documents (the load at start
and on reloads; single tracks the feed heard of only by ``tracks.assigned``), each
``TrackEvent`` of ``cadenza.tracks.new`` (metadata, and features placed by this index's
model) and each ``TrackAssigned`` of ``cadenza.tracks.assigned`` (a track's cluster).
Destination: the JSON of ``/api/tracks`` (search), ``/api/tracks/{id}``,
``/api/tracks/{id}/similar`` and ``/api/genres``, in the shapes of :mod:`gateway.catalogue`'s
MongoDB queries (:mod:`gateway.track_json`). Pure: numpy and the model, no IO. Not
thread-safe: one thread (the event loop) changes and reads it.

**Search** (``q``, ``genre``, ``artist``, pages): every word of ``q`` (at most 8, see
:mod:`gateway.word_index`) must begin a word of the track's title, artist or album (any
of them); ``genre`` is the exact ``genre_top``; ``artist`` the whole artist name, case and
accents aside. Matches are ordered by track id, as the MongoDB path orders them;
``total`` counts them all.

**Similar tracks**: the seed's cluster's tracks by Euclidean distance of their PCA
coordinates (:meth:`schemas.cluster_model.ClusterModel.transform` of the float32 features,
in float64: the MongoDB path's numbers), ties by id. Each cluster keeps its members'
coordinates in one matrix (:class:`Block`), so a query reads no other track.

**Genres**: ``genre_top`` counts, largest first, kept as tracks arrive.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from gateway.track_json import MAX_TEXT, Track, nearest, page_bounds, with_distance
from gateway.word_index import (
    Rows,
    WordIndex,
    as_rows,
    empty_rows,
    fold,
    insert_row,
    query_words,
    remove_row,
    words,
)
from schemas.cluster_model import ClusterModel
from schemas.events import TrackAssigned, TrackEvent

#: Distinct words indexed per track (title, artist, album): bounded whatever a producer sends.
MAX_TRACK_WORDS: Final = 64
#: Growth of the per-row and per-cluster arrays when full (small: the coordinates are most
#: of the index's memory).
GROWTH: Final = 1.125


def _grown(arr: NDArray[Any], needed: int) -> NDArray[Any]:
    """``arr`` with room for ``needed`` rows (its first axis), grown by :data:`GROWTH` at least."""
    if needed <= arr.shape[0]:
        return arr
    return _resized(arr, max(needed, int(arr.shape[0] * GROWTH) + 64))


def _resized(arr: NDArray[Any], rows: int) -> NDArray[Any]:
    out = np.zeros((rows, *arr.shape[1:]), dtype=arr.dtype)
    kept = min(rows, arr.shape[0])
    out[:kept] = arr[:kept]
    return out


class Change(NamedTuple):
    """A track to add or replace: its fields and its float32 features (None: none usable)."""

    track: Track
    features: NDArray[np.float32] | None
    #: A ``tracks.new`` arrival: it keeps the cluster the index has for it (the event has none).
    keep_cluster: bool = False

    @classmethod
    def arrival(cls, event: TrackEvent) -> Change:
        track = Track(
            track_id=event.track_id,
            title=event.title,
            artist=event.artist,
            album=event.album,
            genre_top=event.genre_top,
            genres=tuple(event.genres),
            duration_s=event.duration_s,
            playable=bool(event.audio_path),
        )
        return cls(track, np.asarray(event.features, dtype=np.float32), keep_cluster=True)


class Block:
    """One cluster's members: their rows, ids and coordinates, in no particular order
    (a removed member's place is taken by the last one)."""

    def __init__(self, dims: int) -> None:
        self.n = 0
        self.rows = np.zeros(0, dtype=np.int64)
        self.ids = np.zeros(0, dtype=np.int64)
        self.coords = np.zeros((0, dims), dtype=np.float64)

    def extend(self, rows: NDArray[np.int64], ids: NDArray[np.int64], coords: NDArray[np.float64]) -> int:
        """Append members; returns the position of the first."""
        start, end = self.n, self.n + rows.size
        self.rows, self.ids = _grown(self.rows, end), _grown(self.ids, end)
        self.coords = _grown(self.coords, end)
        self.rows[start:end], self.ids[start:end], self.coords[start:end] = rows, ids, coords
        self.n = end
        return start

    def remove(self, at: int) -> int | None:
        """Take out the member at position ``at``; returns the row moved into its place, if any."""
        last = self.n - 1
        moved = None
        if at != last:
            self.rows[at], self.ids[at], self.coords[at] = self.rows[last], self.ids[last], self.coords[last]
            moved = int(self.rows[at])
        self.n = last
        return moved

    def trim(self) -> None:
        """Drop the room kept for more members."""
        self.rows, self.ids = _resized(self.rows, self.n), _resized(self.ids, self.n)
        self.coords = _resized(self.coords, self.n)


class TrackIndex:
    """The catalogue of one gateway, built by :func:`gateway.library.load_index`."""

    def __init__(self, model: ClusterModel | None, version: str | None = None) -> None:
        #: The model placing tracks, and the current version this index was built for
        #: (``model`` is None when there was none, or it could not be read).
        self.model, self.version = model, version
        self.dims = model.n_components if model is not None else 0
        self.words = WordIndex()
        self._tracks: list[Track] = []
        self._row: dict[int, int] = {}
        self._ids = np.zeros(0, dtype=np.int64)
        #: Each row's position in its cluster's block (-1: not in one).
        self._slot = np.zeros(0, dtype=np.int64)
        self._blocks: dict[int, Block] = {}
        #: Coordinates of placed tracks without a cluster yet (``tracks.new`` before ``tracks.assigned``).
        self._loose: dict[int, NDArray[np.float64]] = {}
        self._genre_rows: dict[str, array[int]] = {}
        self._artist_rows: dict[str, array[int]] = {}
        self._by_id: Rows | None = None
        self._genres: dict[str, Any] | None = None
        self._strings: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._row

    def placed(self) -> int:
        """Tracks with coordinates (in a cluster or waiting for one)."""
        return sum(b.n for b in self._blocks.values()) + len(self._loose)

    def settle(self) -> None:
        """After a load: arrays trimmed to their tracks, the vocabulary sorted."""
        for block in self._blocks.values():
            block.trim()
        n = len(self._tracks)
        self._ids, self._slot = _resized(self._ids, n), _resized(self._slot, n)
        self.words.settle()

    # --- changes -------------------------------------------------------------------------

    def coords(self, features: NDArray[np.float32]) -> NDArray[np.float64] | None:
        """Coordinates of ``(n, 518)`` float32 features under this index's model (None without one)."""
        if self.model is None:
            return None
        return self.model.transform(np.asarray(features, dtype=np.float64))

    def add_many(
        self, tracks: Sequence[Track], coords: NDArray[np.float64] | None, placed: Sequence[bool]
    ) -> None:
        """Tracks of a load, ``coords`` one row per *placed* track, in order."""
        at = 0
        for track, has in zip(tracks, placed, strict=True):
            here = None
            if has and coords is not None:
                here, at = coords[at], at + 1
            self.put(track, here)

    def fill(
        self,
        tracks: Sequence[tuple[Any, ...]],
        coords: NDArray[np.float64] | None,
        placed: Sequence[bool] | NDArray[np.bool_],
    ) -> None:
        """Every track of an empty index at once (a catalogue snapshot's), ``coords`` one row per
        *placed* track, in order: the index :meth:`add_many` would make, but each cluster's
        block made in one go and each distinct text's words found once (two thirds of
        :meth:`put`'s time at the FMA's size). ``tracks``: each a :class:`Track`'s fields in
        its order, the last ones optional (a snapshot's ``SnapshotRow`` ends at ``cluster``).
        ValueError for an index that is not empty, repeated track ids, or coordinates of
        another shape."""
        if self._tracks:
            raise ValueError("fill() builds an empty index")
        n = len(tracks)
        rows = np.flatnonzero(np.asarray(placed, dtype=bool))
        if coords is None:
            rows = rows[:0]
        elif coords.shape != (rows.size, self.dims):
            raise ValueError(f"coordinates of shape {coords.shape} for {rows.size} tracks of {self.dims}")
        ids = np.fromiter((t[0] for t in tracks), dtype=np.int64, count=n)
        self._row = dict(zip(ids.tolist(), range(n), strict=True))
        if len(self._row) != n:
            raise ValueError(f"{n - len(self._row)} repeated track ids")
        self._ids, self._slot, self._by_id, self._genres = ids, np.full(n, -1, dtype=np.int64), None, None
        keep, text_words, folded = self._strings.setdefault, functools.cache(words), functools.cache(fold)
        clusters = np.full(n, -1, dtype=np.int64)
        for row, fields in enumerate(tracks):
            track_id, title, given_artist, given_album, given_genre, *rest = fields
            artist, album = keep(given_artist, given_artist), keep(given_album, given_album)
            genre = None if given_genre is None else keep(given_genre, given_genre)
            track = Track(track_id, title, artist, album, genre, *rest)
            self._tracks.append(track)
            # A text's words are its whitespace-separated parts' words (folding works character
            # by character; whitespace never folds into a letter): titles repeat parts, not whole.
            found = [w for part in title.split() for w in text_words(part)]
            found += text_words(artist) + text_words(album)
            self.words.add(row, list(dict.fromkeys(found))[:MAX_TRACK_WORDS])
            if genre is not None:
                self._genre_rows.setdefault(genre, array("i")).append(row)
            self._artist_rows.setdefault(folded(artist), array("i")).append(row)
            if track.cluster is not None:
                clusters[row] = track.cluster
        if coords is None or not rows.size:
            return
        of_row = clusters[rows]
        for row, where in zip(rows[of_row < 0].tolist(), coords[of_row < 0], strict=True):
            self._loose[row] = np.array(where, dtype=np.float64)  # placed, waiting for a cluster
        for c in np.unique(of_row[of_row >= 0]).tolist():
            members = of_row == c
            block = self._blocks[c] = Block(self.dims)
            at = rows[members]
            start = block.extend(at, ids[at], np.asarray(coords[members], dtype=np.float64))
            self._slot[at] = np.arange(start, start + at.size)

    def put(self, track: Track, coords: NDArray[np.float64] | None) -> None:
        """Add or replace a track (``coords`` None: it has no usable features)."""
        track = self._shared(track)
        row = self._row.get(track.track_id)
        old = None
        if row is None:
            row = len(self._tracks)
            self._tracks.append(track)
            self._row[track.track_id] = row
            self._ids, self._slot = _grown(self._ids, row + 1), _grown(self._slot, row + 1)
            self._ids[row], self._slot[row] = track.track_id, -1
            self._by_id = None
        else:
            old = self._tracks[row]
            self._tracks[row] = track
        self._index_text(row, old, track)
        self._unplace(row, old)
        if coords is not None:
            self._place(row, track.cluster, np.asarray(coords, dtype=np.float64))

    def apply(self, change: Change | TrackAssigned) -> bool:
        """A change from the feed (or a track read on its own); False for a ``tracks.assigned``
        cluster of a track that is not here."""
        if isinstance(change, TrackAssigned):
            return self.assign(change)
        track = change.track
        row = self._row.get(track.track_id)
        if change.keep_cluster:
            track = track._replace(cluster=self._tracks[row].cluster if row is not None else None)
        placed = None if change.features is None else self.coords(change.features[None, :])
        self.put(track, None if placed is None else placed[0])
        return True

    def assign(self, message: TrackAssigned) -> bool:
        """A ``tracks.assigned`` cluster; False when the track is not here."""
        row = self._row.get(message.track_id)
        if row is None:
            return False
        old = self._tracks[row]
        if old.cluster == message.cluster:
            return True
        where = self._take_coords(row, old)
        self._tracks[row] = old._replace(cluster=message.cluster)
        if where is not None:
            self._place(row, message.cluster, where)
        return True

    def _shared(self, track: Track) -> Track:
        """``track`` with its repeated strings (artist, album, genre) shared with other tracks."""
        keep = self._strings.setdefault
        genre = track.genre_top
        return track._replace(
            artist=keep(track.artist, track.artist),
            album=keep(track.album, track.album),
            genre_top=None if genre is None else keep(genre, genre),
        )

    def _index_text(self, row: int, old: Track | None, new: Track) -> None:
        after = _track_words(new)
        if old is None:
            self.words.add(row, after)
        elif (before := _track_words(old)) != after:
            self.words.remove(row, set(before) - set(after))
            self.words.add(row, set(after) - set(before))
        if old is None or old.genre_top != new.genre_top:
            if old is not None and old.genre_top is not None:
                _drop(self._genre_rows, old.genre_top, row)
            if new.genre_top is not None:
                insert_row(self._genre_rows.setdefault(new.genre_top, array("i")), row)
            self._genres = None
        if old is None or old.artist != new.artist:
            if old is not None:
                _drop(self._artist_rows, fold(old.artist), row)
            insert_row(self._artist_rows.setdefault(fold(new.artist), array("i")), row)

    def _take_coords(self, row: int, track: Track) -> NDArray[np.float64] | None:
        """Take ``row`` out of its block (or the loose ones); returns its coordinates."""
        at = int(self._slot[row])
        if at < 0:
            return self._loose.pop(row, None)
        assert track.cluster is not None
        block = self._blocks[track.cluster]
        where = block.coords[at].copy()
        moved = block.remove(at)
        if moved is not None:
            self._slot[moved] = at
        self._slot[row] = -1
        return where

    def _unplace(self, row: int, old: Track | None) -> None:
        if old is not None:
            self._take_coords(row, old)

    def _place(self, row: int, cluster: int | None, coords: NDArray[np.float64]) -> None:
        if cluster is None:
            self._loose[row] = coords
            return
        block = self._blocks.get(cluster)
        if block is None:
            block = self._blocks[cluster] = Block(self.dims)
        rows = np.asarray([row], dtype=np.int64)
        self._slot[row] = block.extend(rows, self._ids[rows], coords[None, :])

    # --- answers -------------------------------------------------------------------------

    def one(self, track_id: int) -> dict[str, Any] | None:
        row = self._row.get(track_id)
        return None if row is None else self._tracks[row].json()

    def search(
        self, q: str | None, genre: str | None, artist: str | None, *, page: int, per_page: int
    ) -> dict[str, Any]:
        """One page of the tracks matching, in id order, and how many match in all."""
        page, per_page = page_bounds(page, per_page)
        rows = self.matching(q, genre, artist)
        start = (page - 1) * per_page
        items = [self._tracks[int(r)].json() for r in rows[start : start + per_page]]
        return {"items": items, "total": int(rows.size), "page": page, "per_page": per_page}

    def matching(self, q: str | None, genre: str | None, artist: str | None) -> Rows:
        """Rows of the tracks matching the search, in track id order."""
        postings: list[Rows] = []
        if q:
            found = query_words(q)
            if not found:  # text without a letter or digit: nothing can match it
                return empty_rows()
            postings += [self.words.rows(w) for w in found]
        if genre:
            postings.append(as_rows(self._genre_rows.get(genre[:MAX_TEXT])))
        if artist:
            postings.append(as_rows(self._artist_rows.get(fold(artist[:MAX_TEXT]))))
        if not postings:
            return self._all_by_id()
        postings.sort(key=len)
        rows = postings[0]
        for other in postings[1:]:
            if not rows.size:
                break
            rows = np.intersect1d(rows, other, assume_unique=True)
        ids = self._ids[rows]
        if (np.diff(ids) < 0).any():  # rows are ascending; so are their ids after an ordered load
            rows = rows[np.argsort(ids, kind="stable")]
        return rows

    def _all_by_id(self) -> Rows:
        if self._by_id is None:
            self._by_id = np.argsort(self._ids[: len(self._tracks)], kind="stable").astype(np.int32)
        return self._by_id

    def similar(self, track_id: int, limit: int) -> dict[str, Any] | None:
        """The tracks nearest to ``track_id`` in its cluster; None when the track is not here."""
        row = self._row.get(track_id)
        if row is None:
            return None
        cluster, at = self._tracks[row].cluster, int(self._slot[row])
        if self.model is None or cluster is None or at < 0:
            return {"items": []}
        block = self._blocks[cluster]
        order, d = nearest(block.ids[: block.n], block.coords[: block.n], at, limit)
        items = [with_distance(self._tracks[int(block.rows[i])].json(), d[i]) for i in order]
        return {"items": items, "cluster": cluster, "model_version": self.model.version}

    def genres(self) -> dict[str, Any]:
        """``{"items": [{"genre", "tracks"}]}``, most tracks first, then by name (shared: do not change)."""
        if self._genres is None:
            counts = ((g, len(rows)) for g, rows in self._genre_rows.items())
            items = [{"genre": g, "tracks": n} for g, n in counts]
            self._genres = {"items": sorted(items, key=lambda g: (-g["tracks"], g["genre"]))}
        return self._genres


def _track_words(track: Track) -> list[str]:
    found = words(track.title) + words(track.artist) + words(track.album)
    return list(dict.fromkeys(found))[:MAX_TRACK_WORDS]


def _drop(postings: dict[str, array[int]], key: str, row: int) -> None:
    rows = postings.get(key)
    if rows is not None:
        remove_row(rows, row)
        if not rows:
            del postings[key]
