"""Train on the sample *audio* catalogue after the real ETL (issue 5's acceptance test).

Sample MP3s in FMA's layout -> ``etl.job.run_etl`` on the session's Spark -> MongoDB ->
``run_training``. The sample genres sound different, so the clusters must follow them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from etl.job import run_etl
from etl.sample_data import write_sample_catalogue
from infra.settings import Settings
from schemas.cluster_model import load_current
from streaming_jobs.model.dataset import load_tracks
from streaming_jobs.model.train import TrainingOptions, run_training

pytestmark = [pytest.mark.stack, pytest.mark.spark]


def test_clusters_of_the_sample_catalogue_follow_its_genres(
    spark: Any, topics: Settings, db: Database[dict[str, Any]], tmp_path: Path
) -> None:
    root = tmp_path / "fma"
    write_sample_catalogue(root, tracks=64, genres=8, seed=3, duration_s=6.0, broken=0)
    summary = run_etl(spark, topics, root)
    assert summary.stored == 64

    run = run_training(spark, db, topics, TrainingOptions(ks=(8,), holdout=0.25))
    metrics = run.doc.metrics
    assert metrics["genre"]["nmi"] >= 0.5
    precision = metrics["recommendation"]["precision"]
    assert precision["cluster"] > precision["random"]
    assert precision["cluster"] > precision["popular"]

    # The promoted model's numpy export assigns every stored track the cluster Spark wrote.
    model = load_current(topics.models_path)
    table = load_tracks(db)
    stored = {d["_id"]: d["cluster"] for d in db.tracks.find({}, {"cluster": 1})}
    assert [stored[int(i)] for i in table.ids] == model.assign(table.matrix).tolist()
