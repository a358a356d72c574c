"""Assign feature vectors to clusters with numpy alone, from a model's ``export.json``.

Source: the ``export.json`` that ``streaming_jobs`` writes next to every trained Spark
PipelineModel (``<models_path>/<version>/export.json``); the text file
``<models_path>/current`` names the current version. Consumers: every service that
assigns clusters without a JVM (stream jobs, the recommender, the gateway).

The maths is exactly Spark ML's, so a vector gets the same cluster here as from the
PipelineModel:

* ``StandardScaler(withMean, withStd)``: ``(x - mean) * scale`` where ``std`` is the
  *sample* standard deviation (n - 1) and ``scale = 1 / std``, or ``0`` for a feature
  whose std is 0 (Spark maps constant features to 0 rather than dividing by zero);
* ``PCA``: a plain projection ``scaled @ components`` (no extra centring; the scaler
  already centred the data);
* ``KMeans``: the centre with the smallest squared Euclidean distance, the lowest
  index on a tie.

Imports nothing of Cadenza but :mod:`schemas.features`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from schemas.features import FEATURE_COLUMNS, FEATURE_SET_VERSION

#: Version of the export file layout (bumped on incompatible changes).
EXPORT_FORMAT: Final = 1
#: File name of the export inside a model version's directory.
EXPORT_FILE: Final = "export.json"
#: File under the models directory that holds the current version id (one line).
CURRENT_FILE: Final = "current"

Matrix = NDArray[np.float64]


class ClusterModelError(ValueError):
    """An export file or an input vector that the model cannot use; says what to do."""


@dataclass(frozen=True, eq=False)
class ClusterModel:
    """Scaler + PCA + K-Means centres of one trained model, as plain arrays.

    Shapes: ``mean``/``std`` ``(n_features,)``, ``components`` ``(n_features,
    n_components)``, ``centroids`` ``(k, n_components)`` (in PCA space),
    ``explained_variance`` ``(n_components,)`` (share of total variance per component).
    """

    version: str
    feature_columns: tuple[str, ...]
    feature_set_version: str
    mean: Matrix
    std: Matrix
    components: Matrix
    centroids: Matrix
    explained_variance: Matrix
    with_mean: bool = True
    with_std: bool = True
    _scale: Matrix = field(init=False, repr=False)
    _centroid_sq: Matrix = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.feature_columns)
        for name in ("mean", "std", "components", "centroids", "explained_variance"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        if self.mean.shape != (n,) or self.std.shape != (n,):
            raise ClusterModelError(f"model {self.version}: mean/std must have {n} values")
        if self.components.ndim != 2 or self.components.shape[0] != n:
            raise ClusterModelError(f"model {self.version}: PCA matrix must have {n} rows")
        d = self.components.shape[1]
        if self.centroids.ndim != 2 or self.centroids.shape[1] != d or self.centroids.shape[0] < 1:
            raise ClusterModelError(f"model {self.version}: centroids must be (k, {d})")
        if self.explained_variance.shape != (d,):
            raise ClusterModelError(f"model {self.version}: explained_variance must have {d} values")
        arrays = (self.mean, self.std, self.components, self.centroids)
        if not all(np.isfinite(a).all() for a in arrays):
            raise ClusterModelError(f"model {self.version}: export holds non-finite numbers")
        with np.errstate(divide="ignore"):
            scale = np.where(self.std == 0.0, 0.0, 1.0 / self.std) if self.with_std else np.ones(n)
        object.__setattr__(self, "_scale", scale)
        object.__setattr__(self, "_centroid_sq", np.einsum("ij,ij->i", self.centroids, self.centroids))

    # --- shape ----------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def n_features(self) -> int:
        return len(self.feature_columns)

    @property
    def n_components(self) -> int:
        return int(self.components.shape[1])

    # --- maths ----------------------------------------------------------------------
    def _matrix(self, x: ArrayLike) -> Matrix:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ClusterModelError("feature vectors must be numbers") from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ClusterModelError(
                f"expected vectors of {self.n_features} features ({self.feature_set_version}), "
                f"got shape {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ClusterModelError("feature vector holds NaN or infinite values; re-extract the track")
        return arr

    def scale(self, x: ArrayLike) -> Matrix:
        """Spark ``StandardScalerModel`` output, ``(n, n_features)``."""
        arr = self._matrix(x)
        centred = arr - self.mean if self.with_mean else arr
        return np.asarray(centred * self._scale)

    def transform(self, x: ArrayLike) -> Matrix:
        """PCA coordinates ``(n, n_components)`` of vectors ``(n, n_features)`` (or one vector)."""
        return np.asarray(self.scale(x) @ self.components)

    def distances(self, x: ArrayLike) -> Matrix:
        """Squared Euclidean distance of each vector to each centre, ``(n, k)``."""
        p = self.transform(x)
        sq = np.einsum("ij,ij->i", p, p)[:, None] - 2.0 * (p @ self.centroids.T) + self._centroid_sq
        return np.asarray(np.maximum(sq, 0.0))

    def assign(self, x: ArrayLike) -> NDArray[np.int64]:
        """Cluster of each vector, ``(n,)``."""
        return np.asarray(np.argmin(self.distances(x), axis=1), dtype=np.int64)

    def assign_one(self, vector: ArrayLike) -> int:
        """Cluster of one vector of ``n_features`` values."""
        try:
            arr = np.asarray(vector)
        except (TypeError, ValueError):
            raise ClusterModelError("a feature vector must be a flat list of numbers") from None
        if arr.ndim != 1:
            raise ClusterModelError(f"assign_one takes one vector, got shape {arr.shape}")
        return int(self.assign(arr)[0])

    # --- (de)serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": EXPORT_FORMAT,
            "version": self.version,
            "k": self.k,
            "n_components": self.n_components,
            "feature_set_version": self.feature_set_version,
            "feature_columns": list(self.feature_columns),
            "scaler": {
                "with_mean": self.with_mean,
                "with_std": self.with_std,
                "mean": self.mean.tolist(),
                "std": self.std.tolist(),
            },
            "pca": {
                "components": self.components.tolist(),
                "explained_variance": self.explained_variance.tolist(),
            },
            "centroids": self.centroids.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = True) -> ClusterModel:
        """Build from :meth:`to_dict` output. ``strict`` requires today's feature set."""
        if data.get("format") != EXPORT_FORMAT:
            raise ClusterModelError(
                f"export format {data.get('format')!r} is not {EXPORT_FORMAT}: retrain with "
                "`cadenza model train` or upgrade this service"
            )
        try:
            model = cls(
                version=str(data["version"]),
                feature_columns=tuple(data["feature_columns"]),
                feature_set_version=str(data["feature_set_version"]),
                mean=np.asarray(data["scaler"]["mean"]),
                std=np.asarray(data["scaler"]["std"]),
                with_mean=bool(data["scaler"]["with_mean"]),
                with_std=bool(data["scaler"]["with_std"]),
                components=np.asarray(data["pca"]["components"]),
                explained_variance=np.asarray(data["pca"]["explained_variance"]),
                centroids=np.asarray(data["centroids"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ClusterModelError):
                raise
            raise ClusterModelError(f"export file is incomplete or malformed ({err!r})") from None
        if strict and (
            model.feature_set_version != FEATURE_SET_VERSION or model.feature_columns != FEATURE_COLUMNS
        ):
            raise ClusterModelError(
                f"model {model.version} was trained on feature set {model.feature_set_version!r}, "
                f"this code produces {FEATURE_SET_VERSION!r}: retrain with `cadenza model train`"
            )
        return model

    def save(self, path: Path) -> Path:
        """Write the export (atomically: a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path, *, strict: bool = True) -> ClusterModel:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ClusterModelError(
                f"no model export at {path}: train one with `cadenza model train`"
            ) from None
        except (OSError, json.JSONDecodeError) as err:
            raise ClusterModelError(f"cannot read model export {path}: {err}") from None
        return cls.from_dict(data, strict=strict)


def current_version(models_dir: Path) -> str | None:
    """The version named by ``<models_dir>/current``, or None when no model is promoted."""
    try:
        text = (Path(models_dir) / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def export_path(models_dir: Path, version: str) -> Path:
    return Path(models_dir) / version / EXPORT_FILE


def load_current(models_dir: Path, *, strict: bool = True) -> ClusterModel:
    """The current model of a registry directory (``CADENZA_MODEL_DIR``)."""
    version = current_version(models_dir)
    if version is None:
        raise ClusterModelError(
            f"no current model under {models_dir}: run `cadenza model train` (or `cadenza model promote V`)"
        )
    return ClusterModel.load(export_path(models_dir, version), strict=strict)
