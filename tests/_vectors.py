"""Test helpers for stored feature vectors: a collection half in the legacy layout, half
packed (as during ``cadenza db migrate``), and a numpy cluster model of FMA's 518 features."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from schemas.cluster_model import ClusterModel
from schemas.features import FEATURE_COLUMNS, FEATURE_SET_VERSION, N_FEATURES
from schemas.vectors import pack


def half_packed(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``docs`` where every other usable legacy vector is packed (others untouched)."""
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs):
        copy = dict(doc)
        features = copy.get("features")
        usable = isinstance(features, list) and len(features) == N_FEATURES
        if usable and i % 2 == 0 and all(isinstance(v, float) for v in features):  # type: ignore[union-attr]
            copy["features"] = pack(features)  # type: ignore[arg-type]
        out.append(copy)
    assert any(not isinstance(d.get("features"), list) for d in out), "nothing was packed"
    return out


def model_518(seed: int = 0, n_components: int = 4, k: int = 3) -> ClusterModel:
    """A random (but valid) scaler + PCA + k-means export over the 518 features."""
    rng = np.random.default_rng(seed)
    return ClusterModel(
        version="v-vectors",
        feature_columns=FEATURE_COLUMNS,
        feature_set_version=FEATURE_SET_VERSION,
        mean=rng.normal(0, 50, N_FEATURES),
        std=rng.uniform(1, 100, N_FEATURES),
        components=np.linalg.qr(rng.normal(size=(N_FEATURES, n_components)))[0],
        centroids=rng.normal(0, 1, (k, n_components)),
        explained_variance=np.full(n_components, 0.1),
    )
