"""The catalogue snapshot's layout: built from a model, saved, loaded back the same; bad files refused."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.catalogue_snapshot import (
    SnapshotError,
    SnapshotRow,
    build_snapshot,
    load_snapshot,
    read_info,
    snapshot_path,
)
from tests.schemas.test_cluster_model import small_model


def _snapshot(offsets: dict[str, dict[int, int]] | None = None):  # type: ignore[no-untyped-def]
    model = small_model(seed=3, n_features=6, n_components=3, k=4)
    rng = np.random.default_rng(1)
    ids = [30, 10, 20, 40]
    placed = [True, True, False, True]
    features = rng.normal(size=(3, 6))
    meta: list[list[Any]] = [
        ["c", "artist c", "album", "Rock", [12, 25], 31.5],
        ["a", "ärtist a", "", None, [], 0.0],
        ['b \u0000 "quoted"', "", "", "Pop", [10], 1.0],
        ["d", "d", "d", "Folk", [17], 200.0],
    ]
    snap = build_snapshot(
        model,
        ids,
        features,
        placed,
        meta,
        offsets=offsets,
        created="2026-12-05T00:00:00Z",
        playable=[True, False, True, True],
    )
    return model, features, snap


def test_build_places_and_sorts_by_id() -> None:
    model, features, snap = _snapshot()
    assert snap.ids.tolist() == [10, 20, 30, 40]
    # id 30 was the first placed row, 10 the second, 40 the third; 20 has no features.
    expected = model.assign(features)
    assert snap.clusters.tolist() == [int(expected[1]), -1, int(expected[0]), int(expected[2])]
    np.testing.assert_allclose(snap.coords[0], model.transform(features)[1], rtol=1e-6)
    assert not snap.coords[1].any()
    rows = list(snap.rows())
    assert rows[0] == SnapshotRow(10, "a", "ärtist a", "", None, (), 0.0, int(expected[1]), False)
    assert [r.playable for r in rows] == [False, True, True, True]
    assert rows[1].cluster is None and rows[1].title == 'b \u0000 "quoted"'


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    offsets = {"cadenza.tracks.new": {0: 12, 1: 7}, "cadenza.tracks.assigned": {0: 3}}
    _, _, snap = _snapshot(offsets)
    path = snap.save(snapshot_path(tmp_path, snap.model_version))
    back = load_snapshot(path, snap.model_version)
    assert back.offsets == offsets
    assert back.covers("cadenza.tracks.new") == {0: 12, 1: 7}
    assert back.covers("other") is None
    assert back.ids.tolist() == snap.ids.tolist()
    assert back.clusters.tolist() == snap.clusters.tolist()
    np.testing.assert_array_equal(back.coords, snap.coords)
    assert list(back.rows()) == list(snap.rows())
    assert not list(tmp_path.rglob(".*.tmp"))


def test_without_offsets_says_so(tmp_path: Path) -> None:
    _, _, snap = _snapshot(None)
    back = load_snapshot(snap.save(tmp_path / "s.npz"))
    assert back.offsets is None and back.covers("cadenza.tracks.new") is None


def test_refuses_missing_other_version_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no catalogue snapshot"):
        load_snapshot(tmp_path / "none.npz")
    _, _, snap = _snapshot()
    path = snap.save(tmp_path / "s.npz")
    with pytest.raises(SnapshotError, match="not v-other"):
        load_snapshot(path, "v-other")
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"\x00not a zip" * 10)
    with pytest.raises(SnapshotError, match="unreadable"):
        load_snapshot(garbage)
    # A file cut short (a copy or a disk that ran out).
    whole = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SnapshotError, match="unreadable"):
        load_snapshot(tmp_path / "cut.npz")
    # A zip without the expected arrays.
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("ids.npy", b"nonsense")
    with pytest.raises(SnapshotError):
        load_snapshot(tmp_path / "z.npz")


def test_refuses_inconsistent_arrays(tmp_path: Path) -> None:
    _, _, snap = _snapshot()
    path = tmp_path / "bad.npz"
    with path.open("wb") as out:
        np.savez(
            out,
            ids=snap.ids,
            clusters=snap.clusters[:2],
            coords=snap.coords,
            playable=snap.playable,
            meta=np.frombuffer(b"[]", dtype=np.uint8),
            info=np.frombuffer(
                b'{"format":1,"model_version":"v","feature_set_version":"f","created":"c","offsets":null}',
                dtype=np.uint8,
            ),
        )
    with pytest.raises(SnapshotError, match="different lengths"):
        load_snapshot(path)


def test_bad_row_is_a_snapshot_error() -> None:
    _, _, snap = _snapshot()
    snap.meta[0] = ["only", "three", "fields"]
    with pytest.raises(SnapshotError, match="track 10"):
        list(snap.rows())


def test_read_info_gives_the_offsets_without_the_arrays(tmp_path: Path) -> None:
    offsets = {"cadenza.tracks.new": {0: 4}}
    _, _, snap = _snapshot(offsets)
    path = snap.save(tmp_path / "s.npz")
    info = read_info(path, snap.model_version)
    assert (info.model_version, info.offsets) == (snap.model_version, offsets)
    with pytest.raises(SnapshotError, match="not v-other"):
        read_info(path, "v-other")
    with pytest.raises(SnapshotError, match="no catalogue snapshot"):
        read_info(tmp_path / "none.npz")
