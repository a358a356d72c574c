"""Sliding-window play counts of one cluster: the trending stream's state (pure numpy).

Source: one cluster's deduplicated, on-time plays of a micro-batch (the plays query
groups by cluster and hands them here through ``applyInPandasWithState``; see
:mod:`streaming_jobs.streams.plays`). Destination: :class:`WindowCount` records for the
``trending`` collection and the ``cadenza.trending`` topic.

The state holds play counts per ``(slide bucket, track)``; a window of length
``window`` (a whole number of slides, starting at a multiple of ``slide`` like Spark's
``window()``) is the sum of its buckets, so each play is stored once rather than once
per window it belongs to. Every window that contains a bucket touched in the batch is
re-emitted with its absolute total and top tracks (most plays first, lower track id on a
tie); the sink stores them all and publishes each cluster's newest
(:func:`streaming_jobs.streams.trending.newest_windows`). A bucket is dropped once the
watermark has passed the end of the last window that can contain it
(``bucket + window <= watermark``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]


@dataclass(frozen=True)
class WindowCount:
    """Plays of one cluster in one window, with its top tracks."""

    start_ms: int
    end_ms: int
    plays: int
    top: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class TrendState:
    """Play counts per (bucket start ms, track id), sorted by bucket then track."""

    buckets: I64
    tracks: I64
    counts: I64

    @classmethod
    def empty(cls) -> TrendState:
        nothing = np.empty(0, dtype=np.int64)
        return cls(nothing, nothing, nothing)

    def __len__(self) -> int:
        return int(self.buckets.size)


def bucket_of(ts_ms: I64, slide_ms: int) -> I64:
    return (np.asarray(ts_ms, dtype=np.int64) // slide_ms) * slide_ms


def add_plays(state: TrendState, ts_ms: I64, track_ids: I64, slide_ms: int) -> tuple[TrendState, I64]:
    """State with the plays added, and the distinct buckets they touched."""
    new_buckets = bucket_of(ts_ms, slide_ms)
    buckets = np.concatenate([state.buckets, new_buckets])
    tracks = np.concatenate([state.tracks, np.asarray(track_ids, dtype=np.int64)])
    counts = np.concatenate([state.counts, np.ones(new_buckets.size, dtype=np.int64)])
    if buckets.size == 0:
        return state, np.empty(0, dtype=np.int64)
    order = np.lexsort((tracks, buckets))
    buckets, tracks, counts = buckets[order], tracks[order], counts[order]
    boundary = np.empty(buckets.size, dtype=bool)
    boundary[0] = True
    boundary[1:] = (buckets[1:] != buckets[:-1]) | (tracks[1:] != tracks[:-1])
    starts = np.flatnonzero(boundary)
    merged = TrendState(buckets[starts], tracks[starts], np.add.reduceat(counts, starts))
    return merged, np.unique(new_buckets)


def windows_containing(buckets: I64, window_ms: int, slide_ms: int) -> I64:
    """Start of every window (length ``window_ms``) that contains one of ``buckets``."""
    per = window_ms // slide_ms
    if buckets.size == 0:
        return np.empty(0, dtype=np.int64)
    starts = buckets[:, None] - np.arange(per, dtype=np.int64)[None, :] * slide_ms
    return np.unique(starts.ravel())


def summarize(state: TrendState, start_ms: int, window_ms: int, top_n: int) -> WindowCount:
    """Total plays and top tracks of the window ``[start_ms, start_ms + window_ms)``."""
    inside = (state.buckets >= start_ms) & (state.buckets < start_ms + window_ms)
    tracks, counts = state.tracks[inside], state.counts[inside]
    top: tuple[tuple[int, int], ...] = ()
    if tracks.size:
        ids, inverse = np.unique(tracks, return_inverse=True)
        sums = np.bincount(inverse, weights=counts).astype(np.int64)
        order = np.lexsort((ids, -sums))[:top_n]
        top = tuple((int(ids[i]), int(sums[i])) for i in order)
    return WindowCount(start_ms, start_ms + window_ms, int(counts.sum()), top)


def evict(state: TrendState, watermark_ms: int, window_ms: int) -> TrendState:
    """Drop buckets no open window can contain any more."""
    keep = state.buckets + window_ms > watermark_ms
    if bool(keep.all()):
        return state
    return TrendState(state.buckets[keep], state.tracks[keep], state.counts[keep])


def update(
    state: TrendState,
    ts_ms: I64,
    track_ids: I64,
    *,
    window_ms: int,
    slide_ms: int,
    top_n: int,
    watermark_ms: int,
) -> tuple[TrendState, list[WindowCount]]:
    """One micro-batch for one cluster: add plays, re-emit the windows they touched, evict."""
    state, touched = add_plays(state, ts_ms, track_ids, slide_ms)
    emitted = [
        summarize(state, int(start), window_ms, top_n)
        for start in windows_containing(touched, window_ms, slide_ms)
    ]
    return evict(state, watermark_ms, window_ms), emitted
