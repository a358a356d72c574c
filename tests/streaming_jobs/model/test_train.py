"""Training end to end on real Spark (local[2]) and the real local MongoDB-compatible server.

One k-range training (k = 6, 8, 10) on a synthetic catalogue of 8 genres x 40 tracks
(plus unusable documents) is shared by the tests of this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from infra.settings import Settings
from schemas.cluster_model import CURRENT_FILE, ClusterModel, current_version, load_current
from schemas.documents import ModelDoc
from streaming_jobs.errors import NoTrainingDataError
from streaming_jobs.model import registry
from streaming_jobs.model.dataset import holdout_mask, load_tracks, to_spark
from streaming_jobs.model.kmeans import predict
from streaming_jobs.model.report import PLOTS, write_report
from streaming_jobs.model.train import TrainingOptions, TrainingRun, run_training
from tests.streaming_jobs._catalogue import Catalogue, Db, isolated_database, make_catalogue

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [pytest.mark.stack, pytest.mark.spark]


class Trained:
    def __init__(self, settings: Settings, db: Db, catalogue: Catalogue, run: TrainingRun) -> None:
        self.settings, self.db, self.catalogue, self.run = settings, db, catalogue, run

    @property
    def doc(self) -> ModelDoc:
        return self.run.doc


@pytest.fixture(scope="module")
def trained(
    stack_overrides: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, spark: SparkSession
) -> Iterator[Trained]:
    with isolated_database(stack_overrides, tmp_path_factory.mktemp("train")) as (settings, db):
        catalogue = make_catalogue(n_genres=8, per_genre=40, separation=2.5)
        db.tracks.insert_many(catalogue.docs)
        run = run_training(spark, db, settings, TrainingOptions(ks=(6, 8, 10)))
        yield Trained(settings, db, catalogue, run)


def test_left_out_rows_are_counted_not_dropped_silently(trained: Trained) -> None:
    assert trained.run.excluded == {"missing": 2, "wrong_length": 1, "not_finite": 2, "other_feature_set": 1}
    assert trained.run.excluded == {r: trained.catalogue.bad.get(r, 0) for r in trained.run.excluded}
    m = trained.doc.metrics
    assert m["excluded"] == trained.run.excluded
    assert m["n_tracks"] == trained.catalogue.n_valid == m["n_train"] + m["n_holdout"]
    assert m["n_holdout"] > 0


def test_k_range_keeps_the_best_silhouette(trained: Trained) -> None:
    sweep = trained.doc.metrics["sweep"]
    assert [p["k"] for p in sweep] == [6, 8, 10]
    best = max(sweep, key=lambda p: p["silhouette"])
    assert trained.doc.k == best["k"] == 8  # 8 genres, well separated
    assert all(p["cost"] > 0 for p in sweep)
    assert sweep[0]["cost"] > sweep[1]["cost"]  # fewer clusters than genres cost more


def test_metrics_are_present_and_sensible(trained: Trained) -> None:
    m = trained.doc.metrics
    assert -1 <= m["silhouette"] <= 1 and m["silhouette"] > 0.5
    assert 2 <= m["n_components"] < 518 and m["explained_variance"] >= 0.9
    assert sum(m["cluster_sizes"]) == m["n_tracks"] and len(m["cluster_sizes"]) == trained.doc.k
    genre = m["genre"]
    assert genre["n_labelled"] == trained.catalogue.n_valid - trained.catalogue.n_unlabelled
    assert genre["nmi"] >= 0.5 and 0 <= genre["ari"] <= 1 and 0 <= genre["purity"] <= 1
    reco = m["recommendation"]
    precision = reco["precision"]
    assert reco["k"] == 10 and reco["n_queries"] > 0
    assert precision["cluster"] > precision["random"] and precision["cluster"] > precision["popular"]
    assert reco["popularity_source"] == "most_frequent_genre"  # no plays in this database
    counts = np.asarray(m["contingency"]["counts"]).reshape(trained.doc.k, len(m["contingency"]["genres"]))
    assert counts.sum() == genre["n_labelled"]


def test_files_and_registry_document(trained: Trained) -> None:
    doc = registry.get_model(trained.db, trained.doc.id)
    assert doc.current and doc.k == trained.doc.k
    assert Path(doc.path).is_dir() and Path(doc.export_path).is_file()
    assert Path(doc.path) == trained.settings.models_path.resolve() / doc.id / "pipeline"
    assert current_version(trained.settings.models_path) == doc.id
    assert (trained.settings.models_path / CURRENT_FILE).read_text().strip() == doc.id
    assert registry.get_model(trained.db, "current").id == doc.id
    assert [d.id for d in registry.list_models(trained.db)] == [doc.id]


def test_first_model_is_promoted_and_written_to_every_track(trained: Trained) -> None:
    promotion = trained.run.promotion
    assert promotion is not None and promotion.previous is None
    assert promotion.tracks_written == len(trained.catalogue.docs)
    ids, clusters = registry.load_assignments(trained.doc)
    expected = dict(zip(ids.tolist(), clusters.tolist(), strict=True))
    for doc in trained.db.tracks.find({}, {"cluster": 1, "model_version": 1}):
        assert doc["model_version"] == trained.doc.id
        want = expected[doc["_id"]]
        assert doc["cluster"] == (None if want == registry.NO_CLUSTER else want)
    assert sum(c == registry.NO_CLUSTER for c in clusters.tolist()) == sum(trained.catalogue.bad.values())


def test_numpy_export_assigns_every_track_like_spark(trained: Trained, spark: SparkSession) -> None:
    table = load_tracks(trained.db)
    model = ClusterModel.load(Path(trained.doc.export_path))
    assert model.k == trained.doc.k and model.n_components == trained.doc.metrics["n_components"]
    frame = to_spark(spark, table.ids, table.matrix, holdout_mask(table.ids, 0.2, 42))
    ids, spark_clusters, spark_coords = predict(trained.run.fit.pipeline, frame)
    assert np.array_equal(ids, table.ids)
    assert np.array_equal(model.assign(table.matrix), spark_clusters)
    np.testing.assert_allclose(model.transform(table.matrix), spark_coords, rtol=1e-9, atol=1e-9)
    assert [model.assign_one(v) for v in table.matrix[:20]] == spark_clusters[:20].tolist()
    assert load_current(trained.settings.models_path).version == trained.doc.id


def test_saved_pipeline_reloads_with_identical_predictions(trained: Trained, spark: SparkSession) -> None:
    table = load_tracks(trained.db)
    frame = to_spark(spark, table.ids, table.matrix, holdout_mask(table.ids, 0.2, 42))
    reloaded = registry.load_pipeline(registry.get_model(trained.db, trained.doc.id))
    ids, clusters, coords = predict(reloaded, frame)
    _, before, before_coords = predict(trained.run.fit.pipeline, frame)
    assert np.array_equal(clusters, before) and np.array_equal(coords, before_coords)
    saved_ids, saved = registry.load_assignments(trained.doc)
    by_id = dict(zip(saved_ids.tolist(), saved.tolist(), strict=True))
    assert [by_id[i] for i in ids.tolist()] == clusters.tolist()


def test_report_writes_html_and_pngs(trained: Trained, tmp_path: Path) -> None:
    page = write_report(trained.doc, registry.load_projection(trained.doc), tmp_path / "report")
    html = page.read_text()
    assert trained.doc.id in html and "precision@10" in html
    for name in PLOTS:
        png = tmp_path / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name
        assert f'src="{name}"' in html


def test_no_tracks_is_an_error_that_says_what_to_do(settings: Settings, db: Db, spark: SparkSession) -> None:
    with pytest.raises(NoTrainingDataError, match="run `cadenza etl run` first"):
        run_training(spark, db, settings, TrainingOptions(ks=(4,)))
    db.tracks.insert_many([{"_id": 1, "features": None}, {"_id": 2, "features": [1.0]}])
    with pytest.raises(NoTrainingDataError, match="2 left out"):
        run_training(spark, db, settings, TrainingOptions(ks=(4,)))
    assert registry.list_models(db) == []
