"""The ETL commands of the ``cadenza`` CLI: registered, working end to end, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from pymongo.database import Database
from typer.testing import CliRunner

from etl.cli import register
from etl.sample_data import write_sample_catalogue
from etl.writer import count
from infra.settings import Settings

Db = Database[dict[str, Any]]


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    register(root)
    return root


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings as the CADENZA_* variables a command reads."""
    for name, value in {
        "CADENZA_MONGODB_URI": settings.mongo_uri,
        "CADENZA_MONGODB_DB": settings.mongodb_db,
        "CADENZA_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "CADENZA_TOPIC_PREFIX": settings.topic_prefix,
        "CADENZA_DATA_DIR": str(settings.data_dir),
        "CADENZA_SPARK_MASTER": "local[2]",
    }.items():
        monkeypatch.setenv(name, value)
    return settings


def cadenza(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``cadenza`` entry point, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "infra", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_commands_are_registered_in_the_cadenza_cli() -> None:
    root = cadenza("--help")
    assert root.returncode == 0 and "etl" in root.stdout and "sample-data" in root.stdout
    etl = cadenza("etl", "--help")
    assert etl.returncode == 0 and "run" in etl.stdout and "import-features" in etl.stdout


@pytest.mark.parametrize("command", ["run", "import-features"])
def test_a_missing_fma_directory_is_a_one_line_error(command: str, tmp_path: Path) -> None:
    result = cadenza("etl", command, "--fma-dir", str(tmp_path / "nope"))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: FMA directory")
    assert "does not exist" in lines[0] and "cadenza sample-data" in lines[0]


def test_sample_data_writes_an_fma_layout(app: typer.Typer, tmp_path: Path) -> None:
    target = tmp_path / "fma"
    args = ["sample-data", str(target), "--tracks", "4", "--genres", "2", "--duration", "1", "--broken", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (target / "fma_metadata" / "tracks.csv").is_file()
    assert len(list((target / "fma_small").glob("*/*.mp3"))) == 5
    assert "playable tracks" in result.output and "cadenza etl run --fma-dir" in result.output


@pytest.mark.stack
def test_import_features_synthetic(app: typer.Typer, env: Settings, db: Db) -> None:
    args = ["etl", "import-features", "--synthetic", "60", "--genres", "4", "--seed", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert count(db.tracks) == 60 and "stored (new)" in result.output
    assert {d["source"] for d in db.tracks.find({}, {"source": 1})} == {"synthetic"}


@pytest.mark.stack
@pytest.mark.spark
def test_etl_run_stores_tracks_and_keeps_the_callers_spark(
    app: typer.Typer, env: Settings, db: Db, spark: Any, tmp_path: Path
) -> None:
    sample = write_sample_catalogue(tmp_path / "fma", tracks=5, genres=2, seed=3, duration_s=2.0, broken=1)
    result = CliRunner().invoke(app, ["etl", "run", "--fma-dir", str(sample.directory)])
    assert result.exit_code == 0, result.output
    assert sorted(d["_id"] for d in db.tracks.find({}, {"_id": 1})) == sorted(sample.track_ids)
    assert "stored (new)" in result.output and "AudioDecodeError" in result.output
    assert spark.range(3).count() == 3  # the session the command found was not stopped
