"""The explained-variance curve from numpy is Spark's, and a fit given it equals one without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from streaming_jobs.errors import NoTrainingDataError
from streaming_jobs.model.dataset import to_spark
from streaming_jobs.model.kmeans import TrainConfig, fit, predict, variance_ratios

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def matrix(n: int = 400, d: int = 30, seed: int = 1) -> np.ndarray:
    """Correlated columns on very different scales, one of them constant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)) @ rng.normal(size=(5, d)) + 0.1 * rng.normal(size=(n, d))
    x *= np.logspace(-2, 3, d)
    x[:, 7] = 42.0
    return x


def test_variance_ratios_sum_to_one_and_fall_and_ignore_the_rows_left_out() -> None:
    x = matrix()
    ratios = variance_ratios(x, chunk=64)
    assert ratios.shape == (30,) and abs(ratios.sum() - 1) < 1e-12
    assert (np.diff(ratios) <= 1e-15).all() and ratios[-1] >= 0
    assert ratios[:5].sum() > 0.95  # five latent factors
    rows = np.arange(400) % 3 != 0
    assert np.allclose(variance_ratios(x, rows, chunk=50), variance_ratios(x[rows]))
    with pytest.raises(NoTrainingDataError):
        variance_ratios(x[:1])


@pytest.mark.spark
def test_numpy_ratios_are_sparks_and_give_the_same_fit(spark: SparkSession) -> None:
    from pyspark.ml.feature import PCA, StandardScaler

    x = matrix()
    frame = to_spark(spark, np.arange(1, 401), x, np.zeros(400, dtype=bool))
    scaled = StandardScaler(inputCol="vector", outputCol="s", withMean=True, withStd=True).fit(frame)
    spark_ratios = PCA(k=30, inputCol="s", outputCol="p").fit(scaled.transform(frame))
    assert np.allclose(variance_ratios(x), spark_ratios.explainedVariance.toArray(), atol=1e-10)

    config = TrainConfig(ks=(4,), pca_variance=0.95, seed=3)
    given, computed = fit(frame, config, ratios=variance_ratios(x)), fit(frame, config)
    assert given.n_components == computed.n_components
    assert np.allclose(given.variance_ratios, computed.variance_ratios, atol=1e-10)
    assert (predict(given.pipeline, frame)[1] == predict(computed.pipeline, frame)[1]).all()
