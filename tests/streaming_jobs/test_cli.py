"""``cadenza model …`` end to end: train twice, list, show, promote (with a track added
since training), report, and one-line errors. Real Spark and the real local stack."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner, Result

from infra.settings import Settings
from schemas.catalogue_snapshot import load_snapshot, snapshot_path
from schemas.cluster_model import ClusterModel, current_version
from schemas.topics import TRACKS_ASSIGNED, TRACKS_NEW
from schemas.vectors import unpack_many
from streaming_jobs.cli import register
from streaming_jobs.errors import ModelNotFoundError, TrainingConfigError
from streaming_jobs.model import registry
from streaming_jobs.model.report import PLOTS
from tests.streaming_jobs._catalogue import Db, isolated_database, make_catalogue

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [pytest.mark.stack, pytest.mark.spark]


@dataclass
class Cli:
    settings: Settings
    db: Db
    env: dict[str, str]
    app: typer.Typer

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(self.app, list(args), env=self.env)


@pytest.fixture(scope="module")
def cli(
    stack_overrides: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, spark: SparkSession
) -> Iterator[Cli]:
    app = typer.Typer()
    register(app)
    with isolated_database(stack_overrides, tmp_path_factory.mktemp("cli")) as (settings, db):
        db.tracks.insert_many(make_catalogue(n_genres=4, per_genre=20, separation=3.0, unlabelled=0).docs)
        env = {
            "CADENZA_MONGODB_URI": settings.mongo_uri,
            "CADENZA_MONGODB_DB": settings.mongodb_db,
            "CADENZA_DATA_DIR": str(settings.data_dir),
            "CADENZA_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "CADENZA_TOPIC_PREFIX": settings.topic_prefix,
            # the test run's session is reused (getOrCreate): keep its runtime settings
            "CADENZA_SPARK_MASTER": "local[2]",
            "CADENZA_SPARK_SHUFFLE_PARTITIONS": str(spark.conf.get("spark.sql.shuffle.partitions")),
        }
        yield Cli(settings, db, env, app)


@pytest.fixture(scope="module")
def two_models(cli: Cli) -> tuple[str, str]:
    """Train the first model (promoted automatically) and a second one (not promoted)."""
    empty = cli("model", "list")
    assert empty.exit_code == 0 and "no models" in empty.output
    first = cli("model", "train", "--k", "4")
    assert first.exit_code == 0, first.output
    assert "promoted" in first.output and "silhouette" in first.output
    second = cli("model", "train", "--k", "3", "--holdout", "0.25")
    assert second.exit_code == 0, second.output
    assert "not promoted" in second.output
    docs = registry.list_models(cli.db)
    assert len(docs) == 2
    return docs[1].id, docs[0].id  # list is newest first


def test_list_marks_exactly_one_current_model(cli: Cli, two_models: tuple[str, str]) -> None:
    first, second = two_models
    result = cli("model", "list")
    assert result.exit_code == 0 and first in result.output and second in result.output
    current = [line for line in result.output.splitlines() if "*" in line]
    assert len(current) == 1 and first in current[0]
    assert [d.id for d in registry.list_models(cli.db) if d.current] == [first]


def test_promote_writes_every_track_and_flips_the_registry(cli: Cli, two_models: tuple[str, str]) -> None:
    first, second = two_models
    template = cli.db.tracks.find_one({"cluster": {"$ne": None}})
    assert template is not None and template["model_version"] == first
    cli.db.tracks.insert_one({**template, "_id": 999_999, "cluster": None, "model_version": None})

    result = cli("model", "promote", second)
    assert result.exit_code == 0, result.output
    assert f"{second} is current" in result.output and f"was {first}" in result.output
    assert "+1 added since training" in result.output

    assert [d.id for d in registry.list_models(cli.db) if d.current] == [second]
    assert current_version(cli.settings.models_path) == second
    model = ClusterModel.load(Path(registry.get_model(cli.db, second).export_path))
    assert model.k == 3
    versions = {d["model_version"] for d in cli.db.tracks.find({}, {"model_version": 1})}
    assert versions == {second}
    added = cli.db.tracks.find_one({"_id": 999_999})
    assert added is not None and added["cluster"] == model.assign_one(template["features"])
    assert {d["cluster"] for d in cli.db.tracks.find({"features": {"$ne": None}}, {"cluster": 1})} <= {
        None,
        0,
        1,
        2,
    }
    # The promotion wrote the catalogue snapshot: every track, placed as MongoDB now says,
    # with the track topics' offsets it covers.
    snapshot = load_snapshot(snapshot_path(cli.settings.models_path, second), second)
    stored = {d["_id"]: d for d in cli.db.tracks.find({}, {"cluster": 1, "title": 1})}
    assert sorted(stored) == snapshot.ids.tolist()
    rows = {row.track_id: row for row in snapshot.rows()}
    assert all(
        rows[t].cluster == d["cluster"] and rows[t].title == d.get("title", "") for t, d in stored.items()
    )
    np.testing.assert_allclose(
        snapshot.coords[snapshot.ids.tolist().index(999_999)],
        model.transform(unpack_many([template["features"]]).matrix)[0],
        rtol=1e-5,
        atol=1e-5,
    )
    assert snapshot.offsets is not None
    assert set(snapshot.offsets) == {cli.settings.topic(TRACKS_NEW), cli.settings.topic(TRACKS_ASSIGNED)}


def test_snapshot_command_rewrites_the_file_with_new_tracks(cli: Cli, two_models: tuple[str, str]) -> None:
    _, second = two_models
    path = snapshot_path(cli.settings.models_path, second)
    before = load_snapshot(path) if path.exists() else None
    template = cli.db.tracks.find_one({"cluster": {"$ne": None}})
    assert template is not None
    with_audio = {**template, "_id": 888_888, "title": "Imported later", "audio_path": "000/888888.mp3"}
    cli.db.tracks.insert_one(with_audio)
    cli.db.tracks.insert_one({"_id": 888_889, "title": "No features", "features": [1.0, "x"]})

    result = cli("model", "snapshot", "current")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "no topic offsets" not in result.output
    after = load_snapshot(path, current_version(cli.settings.models_path))
    assert before is None or len(after) == len(before) + 2
    rows = {row.track_id: row for row in after.rows()}
    assert rows[888_888].title == "Imported later" and rows[888_888].cluster is not None
    assert rows[888_889].cluster is None and rows[888_889].title == "No features"
    assert rows[888_888].playable and not rows[888_889].playable


def test_show_and_report(cli: Cli, two_models: tuple[str, str], tmp_path: Path) -> None:
    _, second = two_models
    shown = cli("model", "show", second)
    assert shown.exit_code == 0 and second in shown.output and "precision@10" in shown.output
    out = tmp_path / "report"
    report = cli("model", "report", second, "--out", str(out))
    assert report.exit_code == 0, report.output
    assert (out / "index.html").is_file() and all((out / name).is_file() for name in PLOTS)


def test_bad_options_and_unknown_versions_raise_actionable_errors(cli: Cli) -> None:
    both = cli("model", "train", "--k", "4", "--k-range", "2:3")
    assert isinstance(both.exception, TrainingConfigError) and "not both" in str(both.exception)
    unknown = cli("model", "show", "nope")
    assert isinstance(unknown.exception, ModelNotFoundError) and "cadenza model list" in str(
        unknown.exception
    )


def test_installed_cli_prints_one_line_errors(cli: Cli) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra", "model", "show", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**_base_env(), **cli.env},
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no model 'nope'")


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
