"""The numpy cluster model: Spark's scaler/PCA/K-Means maths, (de)serialisation, errors.

Unit tests (no IO besides tmp files). That it gives the *same clusters as the Spark
pipeline* for every track is tested against real Spark in
``tests/streaming_jobs/test_training.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from schemas.cluster_model import (
    CURRENT_FILE,
    ClusterModel,
    ClusterModelError,
    current_version,
    export_path,
    load_current,
)
from schemas.features import FEATURE_COLUMNS, FEATURE_SET_VERSION, N_FEATURES


def small_model(seed: int = 0, n_features: int = 6, n_components: int = 3, k: int = 4) -> ClusterModel:
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.5, 3.0, n_features)
    std[1] = 0.0  # a constant feature
    return ClusterModel(
        version="v-test",
        feature_columns=tuple(f"f{i}" for i in range(n_features)),
        feature_set_version="test-set",
        mean=rng.normal(0, 10, n_features),
        std=std,
        components=np.linalg.qr(rng.normal(size=(n_features, n_features)))[0][:, :n_components],
        centroids=rng.normal(0, 2, (k, n_components)),
        explained_variance=np.full(n_components, 0.2),
    )


def test_scaling_is_sparks_standard_scaler_with_zero_std_mapped_to_zero() -> None:
    model = small_model()
    x = np.random.default_rng(1).normal(0, 5, (20, 6))
    scaled = model.scale(x)
    expected = (x - model.mean) / np.where(model.std == 0, 1.0, model.std)
    expected[:, 1] = 0.0
    np.testing.assert_allclose(scaled, expected, rtol=1e-12)
    assert np.isfinite(scaled).all()


def test_sample_std_of_data_reproduces_unit_variance() -> None:
    """The export stores Spark's std (n - 1): scaled training data has sample variance 1."""
    x = np.random.default_rng(2).normal(3, 7, (50, 6))
    base = small_model()
    model = ClusterModel(
        version="v",
        feature_columns=base.feature_columns,
        feature_set_version="t",
        mean=x.mean(axis=0),
        std=x.std(axis=0, ddof=1),
        components=base.components,
        centroids=base.centroids,
        explained_variance=base.explained_variance,
    )
    np.testing.assert_allclose(model.scale(x).var(axis=0, ddof=1), 1.0, rtol=1e-12)


def test_transform_is_projection_of_scaled_vectors() -> None:
    model = small_model()
    x = np.random.default_rng(3).normal(0, 5, (7, 6))
    np.testing.assert_allclose(model.transform(x), model.scale(x) @ model.components, rtol=1e-12)
    assert model.transform(x[0]).shape == (1, 3)


@given(x=arrays(np.float64, (12, 6), elements=st.floats(-1e3, 1e3)), seed=st.integers(0, 50))
@settings(max_examples=60, deadline=None)
def test_assign_is_the_nearest_centroid(x: np.ndarray, seed: int) -> None:
    model = small_model(seed)
    p = model.transform(x)
    brute = ((p[:, None, :] - model.centroids[None, :, :]) ** 2).sum(axis=2)
    chosen = model.assign(x)
    picked = brute[np.arange(len(x)), chosen]
    np.testing.assert_allclose(picked, brute.min(axis=1), rtol=1e-9, atol=1e-9)


def test_ties_go_to_the_lowest_cluster_and_assign_one_matches_assign() -> None:
    base = small_model()
    twin = np.vstack([base.centroids[0], base.centroids[0], base.centroids[2]])
    model = ClusterModel(
        version="v",
        feature_columns=base.feature_columns,
        feature_set_version="t",
        mean=base.mean,
        std=base.std,
        components=base.components,
        centroids=twin,
        explained_variance=base.explained_variance,
    )
    x = np.random.default_rng(4).normal(0, 5, (30, 6))
    assert 1 not in set(model.assign(x).tolist())
    assert [model.assign_one(row) for row in x] == model.assign(x).tolist()
    assert model.k == 3 and model.n_features == 6 and model.n_components == 3


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        (np.zeros(5), "expected vectors of 6 features"),
        ([1.0, 2.0, float("nan"), 0.0, 0.0, 0.0], "NaN or infinite"),
        ([1.0, 2.0, float("inf"), 0.0, 0.0, 0.0], "NaN or infinite"),
        (["a", "b", "c", "d", "e", "f"], "must be numbers"),
    ],
)
def test_unusable_vectors_raise_cluster_model_error(vector: object, message: str) -> None:
    with pytest.raises(ClusterModelError, match=message):
        small_model().assign_one(vector)  # type: ignore[arg-type]


def test_assign_one_rejects_a_matrix() -> None:
    with pytest.raises(ClusterModelError, match="one vector"):
        small_model().assign_one(np.zeros((2, 6)))


def test_json_round_trip_is_exact(tmp_path: Path) -> None:
    model = small_model(5)
    path = model.save(tmp_path / "m" / "export.json")
    loaded = ClusterModel.load(path, strict=False)
    for name in ("mean", "std", "components", "centroids", "explained_variance"):
        assert np.array_equal(getattr(loaded, name), getattr(model, name)), name
    x = np.random.default_rng(6).normal(0, 5, (40, 6))
    assert np.array_equal(loaded.assign(x), model.assign(x))
    assert not list(tmp_path.glob("m/*.tmp"))


def full_model(version: str = "v1", feature_set: str = FEATURE_SET_VERSION) -> ClusterModel:
    rng = np.random.default_rng(7)
    return ClusterModel(
        version=version,
        feature_columns=FEATURE_COLUMNS,
        feature_set_version=feature_set,
        mean=rng.normal(size=N_FEATURES),
        std=rng.uniform(1, 2, N_FEATURES),
        components=rng.normal(size=(N_FEATURES, 4)),
        centroids=rng.normal(size=(3, 4)),
        explained_variance=np.full(4, 0.1),
    )


def test_strict_load_requires_todays_feature_set(tmp_path: Path) -> None:
    good = full_model().save(tmp_path / "good.json")
    assert ClusterModel.load(good).n_features == N_FEATURES
    old = full_model(feature_set="old-1").save(tmp_path / "old.json")
    with pytest.raises(ClusterModelError, match="retrain with `cadenza model train`"):
        ClusterModel.load(old)
    assert ClusterModel.load(old, strict=False).feature_set_version == "old-1"


def test_malformed_exports_are_explained(tmp_path: Path) -> None:
    data = full_model().to_dict()
    with pytest.raises(ClusterModelError, match="export format"):
        ClusterModel.from_dict({**data, "format": 99})
    with pytest.raises(ClusterModelError, match="incomplete or malformed"):
        ClusterModel.from_dict({k: v for k, v in data.items() if k != "centroids"})
    with pytest.raises(ClusterModelError, match="centroids must be"):
        ClusterModel.from_dict({**data, "centroids": [[1.0, 2.0]]})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ClusterModelError, match="cannot read"):
        ClusterModel.load(tmp_path / "bad.json")
    with pytest.raises(ClusterModelError, match="no model export"):
        ClusterModel.load(tmp_path / "absent.json")


def test_current_pointer(tmp_path: Path) -> None:
    assert current_version(tmp_path) is None
    with pytest.raises(ClusterModelError, match="no current model"):
        load_current(tmp_path)
    full_model("v2").save(export_path(tmp_path, "v2"))
    (tmp_path / CURRENT_FILE).write_text("v2\n")
    assert current_version(tmp_path) == "v2"
    model = load_current(tmp_path)
    assert model.version == "v2" and model.k == 3
    assert json.loads(export_path(tmp_path, "v2").read_text())["k"] == 3
