"""Build the recommender's catalogue at start-up: ``tracks`` + the current model -> :class:`Catalogue`.

Sources: ``<models_path>/current`` and its ``export.json`` (numpy twin of the Spark
model), and every document of ``tracks`` with a usable 518-value feature vector (packed
float32 or a legacy array, decoded a batch at a time by :func:`schemas.vectors.unpack_many`;
title and artist for the reasons). Tracks without usable features are counted and left out.
Destination: an in-memory :class:`recommender_stream.catalogue.Catalogue`.
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
                )
        dropped = len(docs) - len(kept)
        docs.clear()
        return dropped

    projection = {"features": 1, "title": 1, "artist": 1, "feature_set_version": 1}
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
