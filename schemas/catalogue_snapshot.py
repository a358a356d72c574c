"""The catalogue as one array file: every track's model coordinates, cluster and public fields.

Written by the model registry when a model is promoted (and by ``cadenza model
snapshot``), as ``<models_path>/<version>/catalogue.npz`` next to the model's
``export.json``. Read at start-up by the recommender worker and the gateway, so a cold
start loads one file instead of scanning ``tracks``; they then replay only what
``cadenza.tracks.new`` (and ``cadenza.tracks.assigned``) carried since the offsets the
snapshot records.

**Layout** (an uncompressed ``.npz``, read with ``allow_pickle=False``):

* ``ids`` int64 ``(n,)``: track ids, ascending;
* ``clusters`` int32 ``(n,)``: the track's cluster under the model, ``-1`` for a track
  without a usable feature vector (kept for search, never recommended);
* ``coords`` float32 ``(n, d)``: the track's coordinates in the model's PCA space (zeros
  for a track with cluster ``-1``), as :meth:`schemas.cluster_model.ClusterModel.transform`
  computes them from its features;
* ``playable`` bool ``(n,)``: the track has a stored audio file (imported feature rows
  have none: listed and recommended, never offered to play);
* ``meta`` uint8: UTF-8 JSON, one list per track in ``ids`` order:
  ``[title, artist, album, genre_top or null, [genre ids], duration_s]``;
* ``info`` uint8: UTF-8 JSON object: ``format`` (:data:`SNAPSHOT_FORMAT`),
  ``model_version``, ``feature_set_version``, ``created`` (ISO 8601 UTC), ``tracks``
  (n), ``offsets``: ``{topic name: {partition: next offset}}`` of the topics the
  snapshot covers (each topic's log-end offsets taken *before* ``tracks`` was read, so
  a record past them may also be in the snapshot: replaying it is harmless), or
  ``null`` when the broker could not be asked (then readers scan ``tracks`` instead).

Pure apart from :meth:`CatalogueSnapshot.save`/:func:`load_snapshot` (one file each).
Imports nothing of Cadenza but :mod:`schemas.cluster_model`.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from schemas.cluster_model import ClusterModel

#: File name of the snapshot inside a model version's directory.
SNAPSHOT_FILE: Final = "catalogue.npz"
#: Version of the layout above (bumped on incompatible changes; readers refuse others).
SNAPSHOT_FORMAT: Final = 1
NO_CLUSTER: Final = -1

Offsets = dict[str, dict[int, int]]


class SnapshotError(ValueError):
    """A snapshot file that is missing, unreadable or inconsistent; readers scan ``tracks`` instead."""


class SnapshotRow(NamedTuple):
    """One track's public fields as the snapshot keeps them (``cluster`` None: not placed)."""

    track_id: int
    title: str
    artist: str
    album: str
    genre_top: str | None
    genres: tuple[int, ...]
    duration_s: float
    cluster: int | None
    playable: bool = True


def snapshot_path(models_path: Path, version: str) -> Path:
    return models_path / version / SNAPSHOT_FILE


@dataclass(frozen=True, eq=False)
class CatalogueSnapshot:
    """The arrays of one snapshot (see the module's docstring for the layout)."""

    model_version: str
    feature_set_version: str
    created: str
    offsets: Offsets | None
    ids: NDArray[np.int64]
    clusters: NDArray[np.int32]
    coords: NDArray[np.float32]
    meta: list[list[Any]]
    playable: NDArray[np.bool_]

    def __post_init__(self) -> None:
        n = self.ids.shape[0]
        if self.ids.ndim != 1 or self.clusters.shape != (n,) or self.coords.ndim != 2:
            raise SnapshotError(f"snapshot of {self.model_version}: arrays of different lengths")
        if self.playable.shape != (n,):
            raise SnapshotError(f"snapshot of {self.model_version}: arrays of different lengths")
        if self.coords.shape[0] != n or len(self.meta) != n:
            raise SnapshotError(f"snapshot of {self.model_version}: {n} ids but other arrays differ")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def dims(self) -> int:
        return int(self.coords.shape[1])

    @property
    def placed(self) -> NDArray[np.bool_]:
        """Tracks with coordinates and a cluster."""
        return self.clusters >= 0

    def rows(self) -> Iterator[SnapshotRow]:
        """Every track's public fields, in ``ids`` order (:class:`SnapshotError` on a bad row)."""
        rows = zip(self.ids.tolist(), self.clusters.tolist(), self.playable.tolist(), self.meta, strict=True)
        for track_id, cluster, playable, m in rows:
            try:
                title, artist, album, genre_top, genres, duration_s = m
                yield SnapshotRow(
                    int(track_id),
                    str(title),
                    str(artist),
                    str(album),
                    genre_top if isinstance(genre_top, str) else None,
                    tuple(int(g) for g in genres),
                    float(duration_s),
                    None if cluster < 0 else int(cluster),
                    bool(playable),
                )
            except (TypeError, ValueError) as err:
                raise SnapshotError(f"snapshot of {self.model_version}: track {track_id}: {err}") from None

    def covers(self, topic: str) -> dict[int, int] | None:
        """The next offset per partition of ``topic`` the snapshot covers (None: unknown)."""
        if self.offsets is None:
            return None
        return self.offsets.get(topic)

    def save(self, path: Path) -> Path:
        """Write atomically (a temporary file beside ``path``, then a rename)."""
        info = {
            "format": SNAPSHOT_FORMAT,
            "model_version": self.model_version,
            "feature_set_version": self.feature_set_version,
            "created": self.created,
            "tracks": len(self),
            "offsets": None
            if self.offsets is None
            else {t: {str(p): int(o) for p, o in parts.items()} for t, parts in self.offsets.items()},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as out:
            np.savez(
                out,
                ids=self.ids,
                clusters=self.clusters,
                coords=self.coords,
                playable=self.playable,
                meta=_json_bytes(self.meta),
                info=_json_bytes(info),
            )
        os.replace(tmp, path)
        return path


def _json_bytes(value: Any) -> NDArray[np.uint8]:
    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode(), dtype=np.uint8)


def _json(array: NDArray[np.uint8]) -> Any:
    return json.loads(array.tobytes().decode())


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot's ``info``: what a reader decides on before reading the arrays."""

    model_version: str
    feature_set_version: str
    created: str
    offsets: Offsets | None


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[Any]:
    """The opened ``.npz`` at ``path``; any failure to read it is a :class:`SnapshotError`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            yield data
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no catalogue snapshot (run `cadenza model snapshot`)") from None
    except (OSError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as err:
        if isinstance(err, SnapshotError):
            raise
        raise SnapshotError(f"{path}: unreadable catalogue snapshot ({err})") from None


def _info(data: Any, path: Path, version: str | None) -> SnapshotInfo:
    info = _json(data["info"])
    if not isinstance(info, dict) or info.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path}: not a catalogue snapshot of format {SNAPSHOT_FORMAT}")
    if version is not None and info.get("model_version") != version:
        raise SnapshotError(f"{path}: snapshot of model {info.get('model_version')}, not {version}")
    offsets = info.get("offsets")
    return SnapshotInfo(
        model_version=str(info["model_version"]),
        feature_set_version=str(info["feature_set_version"]),
        created=str(info["created"]),
        offsets=None
        if offsets is None
        else {str(t): {int(p): int(o) for p, o in parts.items()} for t, parts in offsets.items()},
    )


def read_info(path: Path, version: str | None = None) -> SnapshotInfo:
    """The ``info`` of the snapshot at ``path`` alone (its arrays are not read: a millisecond);
    :class:`SnapshotError` as :func:`load_snapshot`."""
    with _reading(path) as data:
        return _info(data, path, version)


def load_snapshot(path: Path, version: str | None = None) -> CatalogueSnapshot:
    """The snapshot at ``path``; :class:`SnapshotError` if it is missing, unreadable, of another
    format, or (``version`` given) of another model."""
    with _reading(path) as data:
        info = _info(data, path, version)
        return CatalogueSnapshot(
            model_version=info.model_version,
            feature_set_version=info.feature_set_version,
            created=info.created,
            offsets=info.offsets,
            ids=np.asarray(data["ids"], dtype=np.int64),
            clusters=np.asarray(data["clusters"], dtype=np.int32),
            coords=np.asarray(data["coords"], dtype=np.float32),
            meta=_json(data["meta"]),
            playable=np.asarray(data["playable"], dtype=bool),
        )


def place(
    model: ClusterModel, features: NDArray[np.floating], placed: Sequence[bool] | NDArray[np.bool_]
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Clusters (-1 where not ``placed``) and float32 coordinates of a batch of tracks,
    ``features`` holding one row per *placed* track, in order."""
    mask = np.asarray(placed, dtype=bool)
    coords = np.zeros((mask.size, model.n_components), dtype=np.float32)
    clusters = np.full(mask.size, NO_CLUSTER, dtype=np.int32)
    if mask.any():
        matrix = np.asarray(features, dtype=np.float64)
        coords[mask] = model.transform(matrix).astype(np.float32)
        clusters[mask] = model.assign(matrix).astype(np.int32)
    return clusters, coords


def assemble(
    model: ClusterModel,
    ids: Sequence[int] | NDArray[np.int64],
    clusters: NDArray[np.int32],
    coords: NDArray[np.float32],
    meta: list[list[Any]],
    *,
    offsets: Offsets | None,
    created: str,
    playable: Sequence[bool] | NDArray[np.bool_] | None = None,
) -> CatalogueSnapshot:
    """A snapshot of placed tracks (see :func:`place`), put in ascending id order
    (``playable`` None: every track has audio)."""
    id_array = np.asarray(ids, dtype=np.int64)
    order = np.argsort(id_array, kind="stable")
    audio = np.ones(id_array.size, dtype=bool) if playable is None else np.asarray(playable, dtype=bool)
    return CatalogueSnapshot(
        model_version=model.version,
        feature_set_version=model.feature_set_version,
        created=created,
        offsets=offsets,
        ids=id_array[order],
        clusters=np.asarray(clusters, dtype=np.int32)[order],
        coords=np.asarray(coords, dtype=np.float32).reshape(-1, model.n_components)[order],
        meta=[meta[i] for i in order.tolist()],
        playable=audio[order],
    )


def build_snapshot(
    model: ClusterModel,
    ids: Sequence[int] | NDArray[np.int64],
    features: NDArray[np.floating],
    placed: Sequence[bool] | NDArray[np.bool_],
    meta: list[list[Any]],
    *,
    offsets: Offsets | None,
    created: str,
    playable: Sequence[bool] | NDArray[np.bool_] | None = None,
) -> CatalogueSnapshot:
    """A snapshot of tracks ``ids`` (ascending order is made here), ``features`` one row per
    *placed* track in order, ``meta`` one list per track (the layout's ``meta``), ``playable``
    per track (None: all)."""
    clusters, coords = place(model, features, placed)
    return assemble(model, ids, clusters, coords, meta, offsets=offsets, created=created, playable=playable)
