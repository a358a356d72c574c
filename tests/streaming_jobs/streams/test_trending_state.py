"""Unit tests of :mod:`streaming_jobs.streams.trending_state` (pure numpy).

The window reference below counts each play once per window of ``window`` (aligned on
multiples of ``slide``) that contains it, with plain Python dictionaries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming_jobs.streams.trending_state import (
    TrendState,
    WindowCount,
    bucket_of,
    evict,
    update,
    windows_containing,
)

SLIDE = 60_000


def i64(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def reference(
    plays: list[tuple[int, int]], window_ms: int, slide_ms: int, top_n: int
) -> dict[int, WindowCount]:
    per_window: dict[int, Counter[int]] = defaultdict(Counter)
    for ts, track in plays:
        # every start s = k * slide with s <= ts < s + window
        first = -(-(ts - window_ms + 1) // slide_ms) * slide_ms
        for start in range(first, ts + 1, slide_ms):
            assert start <= ts < start + window_ms
            per_window[start][track] += 1
    out = {}
    for start, counts in per_window.items():
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
        out[start] = WindowCount(start, start + window_ms, sum(counts.values()), tuple(top))
    return out


def split(items: list[tuple[int, int]], cuts: list[int]) -> list[list[tuple[int, int]]]:
    bounds = [0, *sorted({c % (len(items) + 1) for c in cuts}), len(items)]
    return [items[a:b] for a, b in pairwise(bounds)]


def feed(
    batches: list[list[tuple[int, int]]], *, window_ms: int, slide_ms: int, top_n: int, watermark_ms: int = 0
) -> tuple[TrendState, dict[int, WindowCount], list[list[WindowCount]]]:
    state = TrendState.empty()
    last: dict[int, WindowCount] = {}
    emissions = []
    for batch in batches:
        state, emitted = update(
            state,
            i64([ts for ts, _ in batch]),
            i64([t for _, t in batch]),
            window_ms=window_ms,
            slide_ms=slide_ms,
            top_n=top_n,
            watermark_ms=watermark_ms,
        )
        emissions.append(emitted)
        for w in emitted:
            last[w.start_ms] = w
    return state, last, emissions


plays_st = st.lists(
    st.tuples(st.integers(min_value=0, max_value=30 * SLIDE), st.integers(min_value=1, max_value=12)),
    max_size=60,
)


@given(
    plays=plays_st,
    per=st.integers(min_value=1, max_value=5),
    top_n=st.integers(min_value=1, max_value=6),
    data=st.data(),
)
@settings(max_examples=100, deadline=None)
def test_last_emission_of_each_window_matches_reference(
    plays: list[tuple[int, int]], per: int, top_n: int, data: st.DataObject
) -> None:
    window = per * SLIDE
    shuffled = list(data.draw(st.permutations(plays), label="order"))
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=100), max_size=6), label="cuts")
    batches = split(shuffled, cuts)
    state, last, emissions = feed(batches, window_ms=window, slide_ms=SLIDE, top_n=top_n)
    expected = reference(plays, window, SLIDE, top_n)
    assert last == expected
    for batch, emitted in zip(batches, emissions, strict=True):
        # each batch re-emits exactly the windows its plays fall in, once each, in start order
        starts = [w.start_ms for w in emitted]
        assert starts == sorted(set(starts))
        assert set(starts) == {s for ts, _ in batch for s in expected if s <= ts < s + window}
    # the state holds each (bucket, track) once, sorted, with the plays of that bucket
    buckets = Counter(((ts // SLIDE) * SLIDE, t) for ts, t in plays)
    assert list(zip(state.buckets.tolist(), state.tracks.tolist(), strict=True)) == sorted(buckets)
    assert state.counts.tolist() == [buckets[k] for k in sorted(buckets)]
    assert len(state) == len(buckets)


def test_top_tracks_break_ties_by_track_id_and_stop_at_top_n() -> None:
    plays = [(0, 9), (1, 9), (2, 4), (SLIDE + 3, 4), (SLIDE + 4, 7), (SLIDE + 5, 2), (SLIDE + 6, 2)]
    _, last, _ = feed([plays], window_ms=2 * SLIDE, slide_ms=SLIDE, top_n=3)
    assert last[0] == WindowCount(0, 2 * SLIDE, 7, ((2, 2), (4, 2), (9, 2)))
    assert last[-SLIDE] == WindowCount(-SLIDE, SLIDE, 3, ((9, 2), (4, 1)))
    assert last[SLIDE] == WindowCount(SLIDE, 3 * SLIDE, 4, ((2, 2), (4, 1), (7, 1)))
    assert set(last) == {-SLIDE, 0, SLIDE}


# --- eviction --------------------------------------------------------------------------------


@given(plays=plays_st, per=st.integers(min_value=1, max_value=5), watermark=st.integers(0, 40 * SLIDE))
@settings(max_examples=100, deadline=None)
def test_evict_drops_only_buckets_whose_last_window_has_closed(
    plays: list[tuple[int, int]], per: int, watermark: int
) -> None:
    window = per * SLIDE
    state, _, _ = feed([plays], window_ms=window, slide_ms=SLIDE, top_n=3)
    kept = evict(state, watermark, window)
    rows = list(zip(state.buckets.tolist(), state.tracks.tolist(), state.counts.tolist(), strict=True))
    assert list(zip(kept.buckets.tolist(), kept.tracks.tolist(), kept.counts.tolist(), strict=True)) == [
        r for r in rows if r[0] + window > watermark
    ]


def test_update_evicts_at_the_boundary_and_still_emits_the_batch() -> None:
    window = 2 * SLIDE
    state, _, _ = feed([[(0, 1), (SLIDE, 2), (2 * SLIDE, 3)]], window_ms=window, slide_ms=SLIDE, top_n=3)
    # bucket 0: 0 + window == watermark -> dropped; bucket SLIDE: SLIDE + window > watermark -> kept
    state, emitted = update(
        state, i64([2 * SLIDE + 5]), i64([3]), window_ms=window, slide_ms=SLIDE, top_n=3, watermark_ms=window
    )
    assert state.buckets.tolist() == [SLIDE, 2 * SLIDE]
    assert state.tracks.tolist() == [2, 3]
    assert state.counts.tolist() == [1, 2]
    # the emission is computed before eviction
    assert emitted == [
        WindowCount(SLIDE, 3 * SLIDE, 3, ((3, 2), (2, 1))),
        WindowCount(2 * SLIDE, 4 * SLIDE, 2, ((3, 2),)),
    ]
    state = evict(state, 3 * SLIDE, window)
    assert state.buckets.tolist() == [2 * SLIDE]


# --- windows_containing / empty input --------------------------------------------------------


@given(
    buckets=st.lists(st.integers(min_value=-50, max_value=50), max_size=10),
    per=st.integers(min_value=1, max_value=6),
    slide=st.sampled_from([1, 1000, SLIDE]),
)
@settings(max_examples=100, deadline=None)
def test_windows_containing_gives_window_over_slide_starts_per_bucket(
    buckets: list[int], per: int, slide: int
) -> None:
    window = per * slide
    starts = windows_containing(i64([b * slide for b in buckets]), window, slide)
    expected = sorted({(b - k) * slide for b in buckets for k in range(per)})
    assert starts.tolist() == expected
    for b in buckets:
        containing = [s for s in starts.tolist() if s <= b * slide < s + window]
        assert len(containing) == per
        assert all(s % slide == 0 for s in containing)


def test_windows_containing_one_bucket() -> None:
    assert windows_containing(i64([600]), 300, 100).tolist() == [400, 500, 600]
    assert windows_containing(i64([]), 300, 100).tolist() == []
    assert bucket_of(i64([0, 99, 100, 250, -1]), 100).tolist() == [0, 0, 100, 200, -100]


def test_empty_input_is_a_no_op() -> None:
    empty = TrendState.empty()
    state, emitted = update(
        empty, i64([]), i64([]), window_ms=3 * SLIDE, slide_ms=SLIDE, top_n=5, watermark_ms=0
    )
    assert emitted == []
    assert len(state) == 0

    full, _, _ = feed(
        [[(5, 1), (SLIDE + 5, 2), (SLIDE + 6, 2)]], window_ms=3 * SLIDE, slide_ms=SLIDE, top_n=5
    )
    state, emitted = update(
        full, i64([]), i64([]), window_ms=3 * SLIDE, slide_ms=SLIDE, top_n=5, watermark_ms=0
    )
    assert emitted == []
    assert state.buckets.tolist() == full.buckets.tolist() == [0, SLIDE]
    assert state.tracks.tolist() == full.tracks.tolist() == [1, 2]
    assert state.counts.tolist() == full.counts.tolist() == [1, 2]
    assert state.buckets.dtype == state.tracks.dtype == state.counts.dtype == np.int64
