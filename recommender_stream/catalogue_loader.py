"""Build the recommender's catalogue at start-up: ``tracks`` + the current model -> :class:`Catalogue`.

Sources: ``<models_path>/current`` and its ``export.json`` (numpy twin of the Spark
model), and every document of ``tracks`` with a usable 518-value feature vector (title
and artist for the reasons). Tracks without usable features are counted and left out.
Destination: an in-memory :class:`recommender_stream.catalogue.Catalogue`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymongo.database import Database
from pymongo.errors import PyMongoError

from infra.mongo import Doc
from recommender_stream.catalogue import Catalogue
from recommender_stream.errors import CatalogueError
from schemas.cluster_model import EXPORT_FILE, ClusterModel, ClusterModelError, current_version
from schemas.features import FEATURE_SET_VERSION, N_FEATURES

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


def usable(features: object) -> bool:
    return (
        isinstance(features, list)
        and len(features) == N_FEATURES
        and all(isinstance(v, int | float) and math.isfinite(v) for v in features)
    )


def load_catalogue(db: Database[Doc], model: ClusterModel | None) -> Loaded:
    """Every usable track, placed and clustered by ``model`` (empty without a model)."""
    if model is None:
        return Loaded(Catalogue(model=None, dims=0), 0, 0)
    catalogue = Catalogue(model=model, dims=int(model.components.shape[1]))
    left_out = 0
    ids: list[int] = []
    rows: list[list[float]] = []
    names: list[tuple[str, str]] = []

    def flush() -> None:
        if not ids:
            return
        matrix = np.asarray(rows, dtype=np.float64)
        coords = model.transform(matrix)
        clusters = model.assign(matrix)
        for i, track in enumerate(ids):
            catalogue.add(track, int(clusters[i]), coords[i], *names[i])
        ids.clear()
        rows.clear()
        names.clear()

    projection = {"features": 1, "title": 1, "artist": 1, "feature_set_version": 1}
    try:
        for doc in db.tracks.find({}, projection, batch_size=BATCH):
            features = doc.get("features")
            if doc.get("feature_set_version", FEATURE_SET_VERSION) != FEATURE_SET_VERSION or not usable(
                features
            ):
                left_out += 1
                continue
            ids.append(int(doc["_id"]))
            rows.append(features)  # type: ignore[arg-type]
            names.append((str(doc.get("title") or ""), str(doc.get("artist") or "")))
            if len(ids) >= BATCH:
                flush()
        flush()
    except PyMongoError as err:
        raise CatalogueError(f"reading tracks from {db.name} failed ({err}); is MongoDB up?") from None
    log.info("catalogue: %d tracks under model %s (%d left out)", len(catalogue), model.version, left_out)
    return Loaded(catalogue, len(catalogue), left_out)
