"""Spark ML K-Means training: scaled, PCA-reduced feature vectors -> a fitted PipelineModel.

Source: a Spark DataFrame ``(id, vector)`` of training tracks (built by
:mod:`streaming_jobs.model.dataset` from MongoDB, or from a numpy matrix in the benchmark).
Destination: a :class:`FitResult` holding the ``PipelineModel`` (StandardScaler ->
PCA -> KMeans), the k sweep (silhouette and cost per k) and the numpy export of the
model (:class:`schemas.cluster_model.ClusterModel`).

Steps: ``StandardScaler(withMean, withStd)`` is fitted once; the explained-variance curve
of every component (given by the caller, computed with numpy by :func:`variance_ratios`
from the matrix it already holds, or else from a first Spark ``PCA`` with every component)
gives the smallest number of components reaching ``pca_variance``, and PCA is fitted with
it; then one ``KMeans`` (k-means||, fixed seed) per k on the cached PCA coordinates, each
scored by silhouette (Spark ``ClusteringEvaluator``, squared Euclidean). The best
silhouette wins (the smaller k on a tie). Array-to-vector conversion happens before the
pipeline (``array_to_vector`` is not a pipeline stage), so the pipeline's input column is
``vector``.

Speed: a DataFrame made from local data (:func:`streaming_jobs.model.dataset.to_spark`:
one partition per Arrow batch of 10,000 rows, the rows inside the partition objects)
ships those rows with every task of every later stage, cached or not: at 106,574 tracks
441 MB per stage, and K-Means runs dozens of stages. The training rows are therefore
repartitioned (one shuffle, to the default parallelism) before they are cached, so the
later stages read cached blocks only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.typing import NDArray

from schemas.cluster_model import ClusterModel
from schemas.features import FEATURE_COLUMNS, FEATURE_SET_VERSION
from streaming_jobs.errors import NoTrainingDataError, TrainingConfigError
from streaming_jobs.model.progress import NullProgress, Progress

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.ml.clustering import KMeansModel
    from pyspark.ml.feature import PCAModel, StandardScalerModel
    from pyspark.sql import DataFrame

INPUT_COL = "vector"
SCALED_COL = "scaled"
PCA_COL = "pca"
PREDICTION_COL = "cluster"


@dataclass(frozen=True)
class TrainConfig:
    """What to fit: candidate ks, PCA variance share, seed and K-Means iteration limits."""

    ks: tuple[int, ...]
    pca_variance: float = 0.9
    seed: int = 42
    max_iter: int = 20
    tol: float = 1e-4

    def __post_init__(self) -> None:
        if not self.ks or any(k < 2 for k in self.ks):
            raise TrainingConfigError(f"every k must be at least 2 (got {list(self.ks)})")
        if not 0 < self.pca_variance <= 1:
            raise TrainingConfigError("pca_variance must be in (0, 1]: set CADENZA_MODEL_PCA_VARIANCE")


def parse_k_range(text: str) -> tuple[int, ...]:
    """``"8:32:4"`` -> ``(8, 12, …, 32)`` (end inclusive; step defaults to 1)."""
    parts = text.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 3) or (len(numbers) == 3 and numbers[2] < 1) or numbers[0] > numbers[1]:
        raise TrainingConfigError(
            f"--k-range wants START:END[:STEP] with START <= END, e.g. 8:32:4 (got {text!r})"
        )
    start, end = numbers[0], numbers[1]
    step = numbers[2] if len(numbers) == 3 else 1
    return tuple(range(start, end + 1, step))


@dataclass(frozen=True)
class SweepPoint:
    """One K-Means fit of the sweep: scores on the training rows."""

    k: int
    silhouette: float
    cost: float
    iterations: int
    fit_s: float
    silhouette_s: float
    clusters: int = 0  # centres the model really has (< k when the data has fewer distinct points)


@dataclass
class FitResult:
    """The fitted pipeline, the chosen k, and everything needed to export and report it."""

    pipeline: PipelineModel
    best: SweepPoint
    n_components: int
    variance_ratios: NDArray[np.float64]  # of every component (numpy, or a first PCA fit)
    sweep: list[SweepPoint]
    n_train: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Number of clusters of the chosen model."""
        return self.best.clusters or self.best.k

    @property
    def explained_variance(self) -> float:
        return float(self.variance_ratios[: self.n_components].sum())

    def export(self, version: str) -> ClusterModel:
        """The numpy twin of the pipeline (same clusters, no JVM)."""
        stages = self.pipeline.stages
        scaler = cast("StandardScalerModel", stages[0])
        pca = cast("PCAModel", stages[1])
        kmeans = cast("KMeansModel", stages[2])
        return ClusterModel(
            version=version,
            feature_columns=FEATURE_COLUMNS,
            feature_set_version=FEATURE_SET_VERSION,
            mean=scaler.mean.toArray(),
            std=scaler.std.toArray(),
            with_mean=bool(scaler.getWithMean()),
            with_std=bool(scaler.getWithStd()),
            components=pca.pc.toArray(),
            explained_variance=pca.explainedVariance.toArray(),
            centroids=np.vstack([np.asarray(c, dtype=np.float64) for c in kmeans.clusterCenters()]),
        )


def components_for(variance_ratios: Sequence[float] | NDArray[np.float64], target: float) -> int:
    """Smallest number of leading components whose variance shares sum to ``target``
    (at least 2, so the clusters can be drawn in two dimensions; at most all)."""
    ratios = np.asarray(variance_ratios, dtype=np.float64)
    cumulative = np.cumsum(ratios)
    reached = np.nonzero(cumulative >= target - 1e-9)[0]
    n = int(reached[0]) + 1 if reached.size else ratios.size
    return max(min(2, ratios.size), n)


def variance_ratios(
    matrix: NDArray[np.float64], rows: NDArray[np.bool_] | None = None, chunk: int = 16384
) -> NDArray[np.float64]:
    """Each principal component's share of the variance of ``matrix`` (only ``rows``, if
    given), largest first: what Spark's ``PCA(k=all)`` reports as ``explainedVariance``
    after ``StandardScaler(withMean, withStd)`` (unbiased std; a constant column scales to
    0), from one numpy pass over the matrix, ``chunk`` rows at a time (no copy of it)."""
    n_features = matrix.shape[1]

    def blocks() -> Iterator[NDArray[np.float64]]:
        for start in range(0, matrix.shape[0], chunk):
            block = matrix[start : start + chunk]
            yield block if rows is None else block[rows[start : start + chunk]]

    n, total = 0, np.zeros(n_features)
    for block in blocks():
        n += block.shape[0]
        total += block.sum(axis=0)
    if n < 2:
        raise NoTrainingDataError(f"{n} training track(s): too few for PCA")
    mean = total / n
    squares = np.zeros(n_features)
    for block in blocks():
        squares += ((block - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / (n - 1))
    scale = np.divide(1.0, std, out=np.zeros(n_features), where=std > 0)
    gram = np.zeros((n_features, n_features))
    for block in blocks():
        z = (block - mean) * scale
        gram += z.T @ z
    eigen = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)
    return eigen / eigen.sum() if eigen.sum() > 0 else np.full(n_features, 1.0 / n_features)


def pick_best(sweep: Sequence[SweepPoint]) -> SweepPoint:
    """Highest silhouette; the smaller k on a tie."""
    return max(sweep, key=lambda p: (p.silhouette, -p.k))


def fit(
    train: DataFrame,
    config: TrainConfig,
    progress: Progress | None = None,
    ratios: NDArray[np.float64] | None = None,
) -> FitResult:
    """Fit scaler, PCA and one K-Means per k on ``train`` (column ``vector``); ``ratios``: the
    explained-variance curve of ``train`` (:func:`variance_ratios`), else Spark computes it."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.evaluation import ClusteringEvaluator
    from pyspark.ml.feature import PCA, StandardScaler

    progress = progress or NullProgress()
    timings: dict[str, float] = {}
    # A shuffle, so that later stages no longer carry the rows of a local DataFrame.
    parallelism = train.sparkSession.sparkContext.defaultParallelism
    data = train.select("id", INPUT_COL).repartition(parallelism).cache()
    scaled: DataFrame | None = None
    projected: DataFrame | None = None
    try:
        started = time.perf_counter()
        progress.stage("caching training vectors")
        n_train = data.count()
        if n_train < max(config.ks):
            raise NoTrainingDataError(
                f"only {n_train} training tracks for k up to {max(config.ks)}: lower --k or add tracks "
                "(`cadenza etl run`)"
            )
        timings["cache_s"] = time.perf_counter() - started

        started = time.perf_counter()
        progress.stage("fitting StandardScaler")
        scaler = StandardScaler(inputCol=INPUT_COL, outputCol=SCALED_COL, withMean=True, withStd=True).fit(
            data
        )
        scaled = scaler.transform(data).select("id", SCALED_COL).cache()
        scaled.count()
        data.unpersist()
        timings["scaler_s"] = time.perf_counter() - started

        started = time.perf_counter()
        n_features = len(scaler.mean)
        if ratios is None:
            progress.stage("fitting PCA (all components)")
            full = PCA(k=n_features, inputCol=SCALED_COL, outputCol=PCA_COL).fit(scaled)
            ratios = np.asarray(full.explainedVariance.toArray(), dtype=np.float64)
        elif len(ratios) != n_features:
            raise TrainingConfigError(f"{len(ratios)} variance ratios for {n_features} features")
        n_components = components_for(ratios, config.pca_variance)
        progress.note(
            f"PCA keeps {n_components} of {n_features} components "
            f"({ratios[:n_components].sum():.1%} of the variance)"
        )
        progress.stage(f"fitting PCA ({n_components} components)")
        pca = PCA(k=n_components, inputCol=SCALED_COL, outputCol=PCA_COL).fit(scaled)
        projected = pca.transform(scaled).select("id", PCA_COL).cache()
        projected.count()
        scaled.unpersist()
        timings["pca_s"] = time.perf_counter() - started

        evaluator = ClusteringEvaluator(
            featuresCol=PCA_COL,
            predictionCol=PREDICTION_COL,
            metricName="silhouette",
            distanceMeasure="squaredEuclidean",
        )
        sweep: list[SweepPoint] = []
        models = {}
        progress.stage("K-Means sweep" if len(config.ks) > 1 else "K-Means", total=len(config.ks))
        for k in config.ks:
            started = time.perf_counter()
            kmeans = KMeans(
                k=k,
                seed=config.seed,
                initMode="k-means||",
                maxIter=config.max_iter,
                tol=config.tol,
                featuresCol=PCA_COL,
                predictionCol=PREDICTION_COL,
            ).fit(projected)
            fit_s = time.perf_counter() - started
            started = time.perf_counter()
            silhouette = float(evaluator.evaluate(kmeans.transform(projected)))
            summary = kmeans.summary
            point = SweepPoint(
                k=k,
                silhouette=silhouette,
                cost=float(summary.trainingCost),
                iterations=int(summary.numIter),
                fit_s=fit_s,
                silhouette_s=time.perf_counter() - started,
                clusters=len(kmeans.clusterCenters()),
            )
            if point.clusters < k:
                progress.note(f"k={k}: K-Means found only {point.clusters} distinct centres")
            sweep.append(point)
            models[k] = kmeans
            progress.note(f"k={k}: silhouette {silhouette:.3f}, cost {point.cost:.4g}")
            progress.advance()
        timings["kmeans_s"] = sum(p.fit_s for p in sweep)
        timings["silhouette_s"] = sum(p.silhouette_s for p in sweep)
        best = pick_best(sweep)
        pipeline = PipelineModel(stages=[scaler, pca, models[best.k]])
        return FitResult(
            pipeline=pipeline,
            best=best,
            n_components=n_components,
            variance_ratios=ratios,
            sweep=sweep,
            n_train=n_train,
            timings=timings,
        )
    finally:
        for frame in (data, scaled, projected):
            if frame is not None:
                frame.unpersist()


def predict(
    pipeline: PipelineModel, frame: DataFrame
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """``(ids, clusters, pca coordinates)`` of every row of ``frame`` (column ``vector``), by id."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql.functions import col

    out = pipeline.transform(frame.select("id", INPUT_COL)).select(
        "id", PREDICTION_COL, vector_to_array(col(PCA_COL)).alias(PCA_COL)
    )
    table = out.toArrow()
    ids = table.column("id").to_numpy()
    order = np.argsort(ids, kind="stable")
    clusters = table.column(PREDICTION_COL).to_numpy().astype(np.int64)
    coords_col = table.column(PCA_COL).combine_chunks()
    n = len(ids)
    width = len(coords_col[0]) if n else 0
    coords = coords_col.flatten().to_numpy().reshape(n, width) if n else np.empty((0, 0))
    return ids[order].astype(np.int64), clusters[order], np.asarray(coords[order], dtype=np.float64)
