"""The ``cadenza model train`` job: MongoDB tracks -> fitted, evaluated, registered model.

Source: ``tracks`` (feature vectors, ``genre_top``) and ``plays`` (popularity baseline)
in MongoDB. Destination: a new registry version (files under ``settings.models_path``
and a ``models`` document, see :mod:`streaming_jobs.model.registry`) and, when the model is
promoted, ``cluster``/``model_version`` on every track.

Steps: read and validate vectors (:mod:`~streaming_jobs.model.dataset`; left-out tracks are
counted by reason), split off a seeded held-out share, fit on the rest
(:mod:`~streaming_jobs.model.kmeans`), assign every track with the fitted pipeline, evaluate
(:mod:`~streaming_jobs.model.evaluation`), save and register, promote (the first model of a
database is promoted automatically; later ones when asked).

From code (e.g. the demo)::

    from infra.mongo import client, database
    from infra.settings import get_settings
    from infra.spark import spark_session
    from streaming_jobs.model.train import TrainingOptions, run_training

    settings = get_settings()
    run = run_training(spark_session(settings, "cadenza-model"), database(settings), settings,
                       TrainingOptions(ks=(16,)))
    print(run.doc.id, run.doc.metrics["silhouette"])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pymongo.database import Database

from infra.mongo import Doc
from infra.settings import Settings
from schemas.documents import ModelDoc
from streaming_jobs.errors import NoTrainingDataError, TrainingConfigError
from streaming_jobs.model import registry
from streaming_jobs.model.dataset import (
    FeatureTable,
    count_tracks,
    holdout_mask,
    load_tracks,
    play_counts,
    to_spark,
)
from streaming_jobs.model.evaluation import Evaluation, evaluate
from streaming_jobs.model.kmeans import FitResult, TrainConfig, fit, predict, variance_ratios
from streaming_jobs.model.progress import NullProgress, Progress

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class TrainingOptions:
    """One training run. ``promote=None``: promote only if the database has no current model."""

    ks: tuple[int, ...]
    holdout: float = 0.2
    promote: bool | None = None
    batch_size: int = 1000
    projection_sample: int = 5000
    top_k: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.holdout < 1:
            raise TrainingConfigError(f"--holdout must be in [0, 1), got {self.holdout}")


@dataclass
class TrainingRun:
    doc: ModelDoc
    fit: FitResult
    evaluation: Evaluation
    n_tracks: int
    excluded: dict[str, int]
    promotion: registry.Promotion | None
    timings: dict[str, float] = field(default_factory=dict)


def finite(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None (BSON stores of FerretDB refuse NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def projection_sample(
    table: FeatureTable, clusters: NDArray[np.int64], coords: NDArray[np.float64], size: int, seed: int
) -> dict[str, NDArray[Any]]:
    """A seeded sample of tracks in the first two PCA components, for the report's scatter plot."""
    n = len(table)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    return {
        "ids": table.ids[rows],
        "x": coords[rows, 0],
        "y": coords[rows, 1] if coords.shape[1] > 1 else np.zeros(rows.size),
        "cluster": clusters[rows],
        "genre": np.asarray([table.genres[i] or "" for i in rows], dtype=str),
    }


def model_metrics(
    fitted: FitResult, evaluation: Evaluation, table: FeatureTable, holdout: NDArray[np.bool_]
) -> dict[str, Any]:
    best = fitted.best
    metrics: dict[str, Any] = {
        "silhouette": best.silhouette,
        "cost": best.cost,
        "iterations": best.iterations,
        "n_components": fitted.n_components,
        "explained_variance": fitted.explained_variance,
        "n_tracks": len(table),
        "n_train": int((~holdout).sum()),
        "n_holdout": int(holdout.sum()),
        "excluded": table.excluded_counts,
        "sweep": [
            {
                "k": p.k,
                "silhouette": p.silhouette,
                "cost": p.cost,
                "iterations": p.iterations,
                "fit_s": p.fit_s,
            }
            for p in fitted.sweep
        ],
        **evaluation.to_metrics(),
        "timings": fitted.timings,
    }
    return dict(finite(metrics))


def run_training(
    spark: SparkSession,
    db: Database[Doc],
    settings: Settings,
    options: TrainingOptions,
    progress: Progress | None = None,
) -> TrainingRun:
    """Read, fit, evaluate, register and (maybe) promote one model; see the module docstring."""
    progress = progress or NullProgress()
    config = TrainConfig(ks=options.ks, pca_variance=settings.model_pca_variance, seed=settings.model_seed)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    progress.stage(f"reading tracks from {db.name}.tracks", total=count_tracks(db))
    table = load_tracks(db, on_batch=progress.advance)
    timings["read_s"] = time.perf_counter() - started
    excluded = table.excluded_counts
    if sum(excluded.values()):
        progress.note(
            f"left out {sum(excluded.values())} tracks: "
            + ", ".join(f"{r} {n}" for r, n in excluded.items() if n)
        )
    if len(table) == 0:
        raise NoTrainingDataError(
            f"no tracks with features in database {db.name} ({sum(excluded.values())} left out: {excluded}): "
            "run `cadenza etl run` first"
        )
    holdout = holdout_mask(table.ids, options.holdout, settings.model_seed)
    n_train = int((~holdout).sum())
    if n_train < max(config.ks):
        raise NoTrainingDataError(
            f"{n_train} training tracks in database {db.name} are fewer than k={max(config.ks)}: "
            "lower --k or add tracks with `cadenza etl run`"
        )

    started = time.perf_counter()
    progress.stage("explained variance of every PCA component (numpy)")
    ratios = variance_ratios(table.matrix, ~holdout)
    timings["variance_s"] = time.perf_counter() - started

    started = time.perf_counter()
    frame = to_spark(spark, table.ids, table.matrix, holdout)
    fitted = fit(frame.where(~frame["holdout"]), config, progress, ratios)
    timings.update(fitted.timings)
    progress.stage("assigning every track with the fitted pipeline")
    ids, clusters, coords = predict(fitted.pipeline, frame)
    timings["spark_s"] = time.perf_counter() - started
    if not np.array_equal(ids, table.ids):
        raise NoTrainingDataError(
            "Spark returned a different set of tracks than it was given; re-run the training"
        )

    started = time.perf_counter()
    progress.stage("evaluating against genres and baselines")
    evaluation = evaluate(
        ids=ids,
        clusters=clusters,
        coords=coords,
        genres=table.genres,
        holdout=holdout,
        k_clusters=fitted.k,
        plays=play_counts(db),
        top_k=options.top_k,
        seed=settings.model_seed,
    )
    timings["evaluate_s"] = time.perf_counter() - started

    started = time.perf_counter()
    progress.stage("saving the model")
    version = registry.new_version()
    left_out = np.asarray(table.excluded_ids, dtype=np.int64)
    directory = registry.save_files(
        settings,
        version,
        fitted.pipeline,
        fitted.export(version),
        assignments=(
            np.concatenate([ids, left_out]),
            np.concatenate([clusters, np.full(left_out.size, registry.NO_CLUSTER, dtype=np.int64)]),
        ),
        projection=projection_sample(table, clusters, coords, options.projection_sample, settings.model_seed),
    )
    doc = ModelDoc(
        id=version,
        k=fitted.k,
        path=str((directory / registry.PIPELINE_DIR).resolve()),
        export_path=str((directory / registry.EXPORT_FILE).resolve()),
        metrics=model_metrics(fitted, evaluation, table, holdout),
    )
    registry.register(db, doc)
    timings["save_s"] = time.perf_counter() - started

    promotion = None
    should_promote = options.promote if options.promote is not None else registry.current_model(db) is None
    if not should_promote:  # promotion prunes; a version trained and kept aside must too
        registry.prune(db, settings)
    if should_promote:
        started = time.perf_counter()
        promotion = registry.promote(db, settings, version, batch_size=options.batch_size, progress=progress)
        doc = registry.get_model(db, version)
        timings["promote_s"] = time.perf_counter() - started
    return TrainingRun(
        doc=doc,
        fit=fitted,
        evaluation=evaluation,
        n_tracks=len(table),
        excluded=excluded,
        promotion=promotion,
        timings=timings,
    )
