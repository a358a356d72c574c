"""Build the recommender's catalogue: the current model + its snapshot or ``tracks`` -> :class:`Catalogue`.

Sources: ``<models_path>/current`` and its ``export.json`` (numpy twin of the Spark
model), then either the model's catalogue snapshot ``<models_path>/<version>/catalogue.npz``
(:mod:`schemas.catalogue_snapshot`, written at promotion: coordinates and clusters already
computed, one file read; :func:`catalogue_from_snapshot`, and :func:`replay_from` for where
``cadenza.tracks.new`` must be read again from), or a scan of every document of ``tracks``
with a usable 518-value feature vector (packed float32 or a legacy array, decoded a batch at
a time by :func:`schemas.vectors.unpack_many`; title and artist for the reasons;
:func:`load_catalogue`). Tracks without usable features (the snapshot's cluster ``-1``) are
counted and left out. Destination: an in-memory :class:`recommender_stream.catalogue.Catalogue`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import compress
from pathlib import Path

import numpy as np
from pymongo.database import Database
from pymongo.errors import PyMongoError

from infra.mongo import Doc
from recommender_stream.catalogue import Catalogue
from recommender_stream.errors import CatalogueError
from schemas.catalogue_snapshot import CatalogueSnapshot, SnapshotError
from schemas.cluster_model import EXPORT_FILE, ClusterModel, ClusterModelError, current_version
from schemas.features import FEATURE_SET_VERSION
from schemas.vectors import unpack_many

log = logging.getLogger(__name__)
BATCH = 2000


@dataclass(frozen=True)
class Loaded:
    catalogue: Catalogue
    tracks: int
    left_out: int


def load_model(models_path: Path) -> ClusterModel | None:
    """The current model's numpy twin, or None when no model is promoted."""
    version = current_version(models_path)
    if version is None:
        return None
    try:
        return ClusterModel.load(models_path / version / EXPORT_FILE)
    except ClusterModelError as err:
        raise CatalogueError(f"current model {version}: {err}") from None


def load_catalogue(db: Database[Doc], model: ClusterModel | None) -> Loaded:
    """Every usable track, placed and clustered by ``model`` (empty without a model)."""
    if model is None:
        return Loaded(Catalogue(model=None, dims=0), 0, 0)
    catalogue = Catalogue(model=model, dims=int(model.components.shape[1]))
    left_out = 0
    docs: list[Doc] = []

    def flush() -> int:
        """Decode and place a batch of documents; return how many were left out."""
        current = [
            d for d in docs if d.get("feature_set_version", FEATURE_SET_VERSION) == FEATURE_SET_VERSION
        ]
        vectors = unpack_many([d.get("features") for d in current])
        kept = list(compress(current, vectors.ok.tolist()))
        if kept:
            matrix = vectors.matrix.astype(np.float64)
            coords = model.transform(matrix)
            clusters = model.assign(matrix)
            for i, doc in enumerate(kept):
                catalogue.add(
                    int(doc["_id"]),
                    int(clusters[i]),
                    coords[i],
                    str(doc.get("title") or ""),
                    str(doc.get("artist") or ""),
                    playable=bool(doc.get("audio_path")),
                )
        dropped = len(docs) - len(kept)
        docs.clear()
        return dropped

    projection = {"features": 1, "title": 1, "artist": 1, "feature_set_version": 1, "audio_path": 1}
    try:
        for doc in db.tracks.find({}, projection, batch_size=BATCH):
            docs.append(doc)
            if len(docs) >= BATCH:
                left_out += flush()
        left_out += flush()
    except PyMongoError as err:
        raise CatalogueError(f"reading tracks from {db.name} failed ({err}); is MongoDB up?") from None
    log.info("catalogue: %d tracks under model %s (%d left out)", len(catalogue), model.version, left_out)
    return Loaded(catalogue, len(catalogue), left_out)


def catalogue_from_snapshot(snapshot: CatalogueSnapshot, model: ClusterModel) -> Loaded:
    """The placed tracks of ``snapshot`` (cluster >= 0, in id order) with the coordinates and
    clusters it holds (nothing is transformed again); the others are counted as left out.
    :class:`SnapshotError` when it is of another model version or dimension than ``model``,
    or a track's ``meta`` row is not a list starting with title and artist."""
    dims = int(model.components.shape[1])
    if snapshot.model_version != model.version:
        raise SnapshotError(
            f"snapshot of model {snapshot.model_version}, the current model is {model.version}"
        )
    if snapshot.dims != dims:
        raise SnapshotError(
            f"snapshot of {snapshot.model_version}: {snapshot.dims} dimensions, the model has {dims}"
        )
    placed = snapshot.placed
    index = np.flatnonzero(placed).tolist()
    meta = snapshot.meta
    try:
        titles = [str(meta[i][0] or "") for i in index]
        artists = [str(meta[i][1] or "") for i in index]
    except (TypeError, IndexError, KeyError) as err:
        raise SnapshotError(f"snapshot of {snapshot.model_version}: a bad meta row ({err})") from None
    catalogue = Catalogue(model=model, dims=dims)
    coords = snapshot.coords[placed]
    audio = snapshot.playable[placed].tolist()
    # One add per track: 0.3 s for 106,574 tracks of 60 dimensions (no bulk path needed yet).
    for i, (track_id, cluster) in enumerate(
        zip(snapshot.ids[placed].tolist(), snapshot.clusters[placed].tolist(), strict=True)
    ):
        catalogue.add(track_id, cluster, coords[i], titles[i], artists[i], playable=audio[i])
    left_out = len(snapshot) - len(index)
    return Loaded(catalogue, len(catalogue), left_out)


def replay_from(
    snapshot: CatalogueSnapshot, topic: str, beginnings: dict[int, int], ends: dict[int, int]
) -> dict[int, int]:
    """Where to read ``topic`` (``cadenza.tracks.new``) again from so that the snapshot's catalogue
    misses nothing: ``{partition: offset}`` for every partition of ``beginnings`` (a partition
    the snapshot does not name: from 0). ``beginnings`` and ``ends`` are the log's first and
    next offsets now. :class:`SnapshotError` (scan ``tracks`` instead) when the snapshot
    records no offsets of ``topic``, when retention deleted records it does not cover (its
    offset is below the log's first), or when its offset is past the log's end (the topic
    was recreated since)."""
    covered = snapshot.covers(topic)
    if covered is None:
        raise SnapshotError(f"snapshot of {snapshot.model_version} records no offsets of {topic}")
    out: dict[int, int] = {}
    for partition, first in sorted(beginnings.items()):
        offset = covered.get(partition, 0)
        if offset < first:
            raise SnapshotError(
                f"{topic}[{partition}]: the snapshot covers up to offset {offset}, "
                f"retention deleted records up to {first}"
            )
        end = ends.get(partition)
        if end is not None and offset > end:
            raise SnapshotError(
                f"{topic}[{partition}]: the snapshot covers up to offset {offset}, past the log's end {end}"
            )
        out[partition] = offset
    return out
