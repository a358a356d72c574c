"""The `cadenza` CLI: help, schemas export, db init, config, against the real stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from infra.settings import Settings
from schemas.features import N_FEATURES
from schemas.topics import TOPICS

ROOT = Path(__file__).resolve().parents[2]


def _cli(args: list[str], settings: Settings | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if settings is not None:
        env.update(
            CADENZA_MONGODB_URI=settings.mongo_uri,
            CADENZA_MONGODB_DB=settings.mongodb_db,
            CADENZA_KAFKA_BOOTSTRAP=settings.bootstrap_servers,
            CADENZA_TOPIC_PREFIX=settings.topic_prefix,
            CADENZA_DATA_DIR=str(settings.data_dir),
        )
    return subprocess.run(
        [sys.executable, "-m", "infra", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command_group() -> None:
    result = _cli(["--help"])
    assert result.returncode == 0
    for name in ("stack", "db", "schemas", "config", "demo"):
        assert re.search(rf"│ {name}\b", result.stdout), name


def test_schemas_export_writes_json_schema_files(tmp_path: Path) -> None:
    result = _cli(["schemas", "export", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "out").glob("*.schema.json"))
    assert len(files) == len(TOPICS)
    plays = json.loads((tmp_path / "out" / "cadenza.plays.schema.json").read_text())
    assert set(plays["required"]) >= {"user_id", "track_id", "kind"}


@pytest.mark.stack
def test_db_init_twice_changes_nothing(settings: Settings, mongo: object) -> None:
    first = _cli(["db", "init"], settings)
    assert first.returncode == 0, first.stderr
    assert "collection tracks" in first.stdout
    second = _cli(["db", "init"], settings)
    assert second.returncode == 0
    assert "0 change(s)" in second.stdout


@pytest.mark.stack
def test_db_migrate_packs_legacy_vectors_once(settings: Settings, mongo: MongoClient[dict[str, Any]]) -> None:
    tracks = mongo[settings.mongodb_db].tracks
    tracks.insert_many([{"_id": i, "features": [float(i)] * N_FEATURES} for i in range(1, 4)])
    tracks.insert_one({"_id": 9, "features": [1.0, 2.0]})
    first = _cli(["db", "migrate", "--batch-size", "2"], settings)
    assert first.returncode == 1, first.stderr  # one vector could not be converted
    assert "converted 3 · already packed 0 · failed 1 (wrong_length: 1)" in first.stdout
    assert "track 9: wrong_length: 2 values, expected 518" in first.stdout
    assert tracks.count_documents({"features": {"$type": "binData"}}) == 3
    tracks.delete_one({"_id": 9})
    second = _cli(["db", "migrate"], settings)
    assert second.returncode == 0, second.stderr
    assert "nothing changed: converted 0 · already packed 3 · failed 0" in second.stdout


def test_readme_configuration_table_is_current() -> None:
    table = _cli(["config", "--markdown"]).stdout.strip()
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- settings-table:start -->")[1].split("<!-- settings-table:end -->")[0]
    assert block.strip() == table
    for name in Settings.model_fields:
        assert f"CADENZA_{name.upper()}" in table


def test_invalid_setting_is_reported_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "CADENZA_KAFKA_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "infra", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "CADENZA_KAFKA_PORT" in result.stderr and "Traceback" not in result.stderr
