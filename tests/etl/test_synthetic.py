"""Synthetic features: FMA-shaped, internally consistent, genre-structured, fast at full scale."""

from __future__ import annotations

import time

import numpy as np
import pytest

from etl.synthetic import GENRES, render, synthetic_features
from schemas.features import FEATURE_COLUMNS, N_FEATURES


def cols(stat: str, feature: str = "") -> list[int]:
    return [i for i, c in enumerate(FEATURE_COLUMNS) if f"_{stat}_" in c and c.startswith(feature)]


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic_features(5000, genres=16, seed=3)


def test_shape_types_and_ids(sample: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    ids, labels, x = sample
    assert x.shape == (5000, N_FEATURES) and x.dtype == np.float32
    assert ids.dtype == np.int64 and np.all(np.diff(ids) > 0) and ids[0] > 0
    assert set(np.unique(labels)) == set(range(16))
    assert np.all(np.isfinite(x))


def test_statistics_are_consistent(sample: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, _, x = sample
    lo, med, mean, hi = (x[:, cols(s)] for s in ("min", "median", "mean", "max"))
    assert np.all(lo <= med) and np.all(med <= hi) and np.all(lo <= mean) and np.all(mean <= hi)
    assert np.all(x[:, cols("std")] > 0)
    skew, kurt = x[:, cols("skew")], x[:, cols("kurtosis")]
    assert np.all(kurt >= skew**2 - 2)  # true of every distribution
    for feature in ("chroma", "zcr", "rmse", "spectral"):
        for stat in ("min", "median", "mean", "max"):
            assert np.all(x[:, cols(stat, feature)] >= 0), (feature, stat)
    assert np.all(x[:, cols("max", "chroma")] <= 1)


def test_scales_look_like_fma(sample: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, _, x = sample

    def median(name: str) -> float:
        return float(np.median(x[:, FEATURE_COLUMNS.index(name)]))

    assert -300 < median("mfcc_mean_01") < -50
    assert 500 < median("spectral_centroid_mean_01") < 4000
    assert 0.1 < median("chroma_cqt_mean_01") < 0.8
    kurt = x[:, cols("kurtosis")].ravel()
    assert np.percentile(kurt, 99.9) > 5 * abs(np.median(kurt)) + 5  # heavy right tail


def test_genres_are_clusters(sample: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, labels, x = sample
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    train, test = slice(0, 2500), slice(2500, None)
    centroids = np.stack([z[train][labels[train] == g].mean(axis=0) for g in range(16)])
    dist = ((z[test][:, None, :] - centroids[None]) ** 2).sum(axis=2)
    accuracy = float(np.mean(dist.argmin(axis=1) == labels[test]))
    assert accuracy > 0.9, accuracy  # chance: 1/16


def test_deterministic_by_seed() -> None:
    a, b, c = (
        synthetic_features(300, seed=1),
        synthetic_features(300, seed=1),
        synthetic_features(300, seed=2),
    )
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[2], c[2])


def test_full_fma_scale_in_seconds() -> None:
    started = time.perf_counter()
    ids, labels, x = synthetic_features(106_574, genres=16)
    elapsed = time.perf_counter() - started
    assert x.shape == (106_574, N_FEATURES) and len(ids) == len(labels) == 106_574
    assert ids.max() <= 999_999 and len(np.unique(ids)) == len(ids)
    assert elapsed < 10, f"{elapsed:.1f} s"


@pytest.mark.parametrize("genre", range(len(GENRES)))
def test_every_genre_renders_audio(genre: int) -> None:
    y = render(genre, 1.0, 16000, np.random.default_rng(genre))
    assert y.shape == (16000,) and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and 0.25 < np.abs(y).max() <= 0.9
