"""Unit tests of :class:`streaming_jobs.streams.shared.track_lookup.TrackClusters`.

Tmp files, fake fetch, fake clock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streaming_jobs.streams.shared.track_lookup import UNASSIGNED, UNKNOWN, TrackClusters

V1 = "20260301-000000-aaaaaa"
V2 = "20260302-000000-bbbbbb"


def install(models: Path, version: str, assignments: dict[int, int], *, current: bool = True) -> None:
    directory = models / version
    directory.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(list(assignments), dtype=np.int64)
    np.savez(
        directory / "assignments.npz",
        ids=ids,
        clusters=np.asarray(list(assignments.values()), dtype=np.int64),
    )
    if current:
        (models / "current").write_text(version + "\n", encoding="utf-8")


class FakeFetch:
    """The ``tracks`` collection: id -> (cluster, model_version); records every call."""

    def __init__(self, stored: dict[int, tuple[int | None, str | None]]) -> None:
        self.stored = stored
        self.calls: list[list[int]] = []

    def __call__(self, ids: list[int]) -> dict[int, tuple[int | None, str | None]]:
        self.calls.append(list(ids))
        return {i: self.stored[i] for i in ids if i in self.stored}

    @property
    def asked(self) -> list[int]:
        return sorted(i for call in self.calls for i in call)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    # unsorted ids on purpose: the lookup must not rely on the file's order
    install(path, V1, {30: 2, 10: 0, 20: 1, 5: 3})
    return path


def test_ids_in_the_assignments_resolve_without_fetching(models: Path) -> None:
    fetch = FakeFetch({})
    clusters = TrackClusters(models, fetch)
    assert clusters.version == V1
    out = clusters.lookup([20, 5, 30, 10, 20])
    assert out.tolist() == [1, 3, 2, 0, 1]
    assert out.dtype == np.int64
    assert clusters.lookup(np.asarray([10, 30], dtype=np.int64)).tolist() == [0, 2]
    assert clusters.lookup([]).tolist() == []
    assert fetch.calls == []


def test_misses_are_fetched_once_and_resolved_by_version(models: Path) -> None:
    fetch = FakeFetch(
        {
            40: (7, V1),  # stored, labelled under the current model
            41: (3, V2),  # labelled under another model
            42: (None, None),  # stored, never labelled
            43: (None, V1),  # odd but possible: version without a cluster
        }
    )
    clusters = TrackClusters(models, fetch, clock=Clock())
    out = clusters.lookup([10, 40, 41, 42, 43, 99, 40, 99, 1])
    assert out.tolist() == [0, 7, UNASSIGNED, UNASSIGNED, UNASSIGNED, UNKNOWN, 7, UNKNOWN, UNKNOWN]
    assert len(fetch.calls) == 1
    assert sorted(fetch.calls[0]) == [1, 40, 41, 42, 43, 99]  # each miss once, hits never


def test_a_resolved_cluster_is_remembered(models: Path) -> None:
    fetch = FakeFetch({40: (7, V1)})
    clock = Clock()
    clusters = TrackClusters(models, fetch, clock=clock)
    assert clusters.lookup([40]).tolist() == [7]
    clock.now += 10_000
    assert clusters.lookup([40, 10]).tolist() == [7, 0]
    assert fetch.calls == [[40]]


def test_unknown_ids_are_not_fetched_again_within_the_ttl(models: Path) -> None:
    fetch = FakeFetch({})
    clock = Clock()
    clusters = TrackClusters(models, fetch, negative_ttl_s=10.0, clock=clock)
    assert clusters.lookup([99, 98]).tolist() == [UNKNOWN, UNKNOWN]
    assert fetch.calls == [[98, 99]]

    clock.now += 9.5
    assert clusters.lookup([99, 98]).tolist() == [UNKNOWN, UNKNOWN]
    assert fetch.calls == [[98, 99]]

    # the track arrives in the catalogue; the lookup learns it once the ttl has passed
    fetch.stored[99] = (4, V1)
    clock.now += 0.5
    assert clusters.lookup([99, 98, 97]).tolist() == [4, UNKNOWN, UNKNOWN]
    assert fetch.calls == [[98, 99], [97, 98, 99]]


def test_stored_but_unlabelled_ids_are_asked_again_after_the_ttl(models: Path) -> None:
    fetch = FakeFetch({42: (None, None)})
    clock = Clock()
    clusters = TrackClusters(models, fetch, negative_ttl_s=5.0, clock=clock)
    assert clusters.lookup([42]).tolist() == [UNASSIGNED]
    clock.now += 4.0
    assert clusters.lookup([42]).tolist() == [UNASSIGNED]
    assert fetch.calls == [[42]]
    fetch.stored[42] = (6, V1)  # the assign stream labelled it
    clock.now += 1.0
    assert clusters.lookup([42]).tolist() == [6]
    assert fetch.calls == [[42], [42]]


def test_a_promotion_is_picked_up_at_the_next_lookup(models: Path) -> None:
    install(models, V2, {10: 5, 50: 6}, current=False)
    fetch = FakeFetch({30: (9, V2), 77: (1, V1)})
    clock = Clock()
    clusters = TrackClusters(models, fetch, clock=clock)
    assert clusters.lookup([10, 50, 77, 99]).tolist() == [0, UNKNOWN, 1, UNKNOWN]
    assert fetch.calls == [[50, 77, 99]]

    (models / "current").write_text(V2 + "\n", encoding="utf-8")  # same length as V1
    out = clusters.lookup([10, 50, 30, 77, 99])
    assert clusters.version == V2
    # new assignments; 30 is no longer in the file but stored under V2; 77's label is stale now;
    # the negative cache of the old model (99) is forgotten
    assert out.tolist() == [5, 6, 9, UNASSIGNED, UNKNOWN]
    assert fetch.calls == [[50, 77, 99], [30, 77, 99]]


def test_without_a_current_model_everything_goes_through_fetch(tmp_path: Path) -> None:
    models = tmp_path / "models"
    install(models, V1, {10: 0, 20: 1}, current=False)
    fetch = FakeFetch({10: (0, V1), 20: (None, None)})
    clusters = TrackClusters(models, fetch, clock=Clock())
    assert clusters.version is None
    out = clusters.lookup([10, 20, 30])
    # no current model: no label can be current, stored tracks are unassigned
    assert out.tolist() == [UNASSIGNED, UNASSIGNED, UNKNOWN]
    assert fetch.calls == [[10, 20, 30]]

    # promoting a model later switches to its assignments
    (models / "current").write_text(V1, encoding="utf-8")
    assert clusters.lookup([10, 20, 30]).tolist() == [0, 1, UNKNOWN]
    assert clusters.version == V1
    assert fetch.calls == [[10, 20, 30], [30]]


def test_missing_models_directory_is_no_model(tmp_path: Path) -> None:
    fetch = FakeFetch({3: (1, None)})
    clusters = TrackClusters(tmp_path / "nowhere", fetch, clock=Clock())
    assert clusters.lookup([3, 4]).tolist() == [UNASSIGNED, UNKNOWN]
    assert fetch.calls == [[3, 4]]
