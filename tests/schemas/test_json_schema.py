"""Exported JSON Schemas describe what the decoders accept (checked with a validator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import PlayEvent, encode
from schemas.json_schema import export
from schemas.topics import TOPICS

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema ships with the dev extras")


def test_export_writes_one_valid_schema_per_topic(tmp_path: Path) -> None:
    written = export(tmp_path, "cadenza.")
    assert sorted(p.name for p in written) == sorted(f"cadenza.{t.name}.schema.json" for t in TOPICS)
    for path in written:
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["x-kafka"]["topic"] == path.name.removesuffix(".schema.json")


def test_schema_accepts_valid_and_rejects_invalid_play(tmp_path: Path) -> None:
    (path,) = [p for p in export(tmp_path) if p.name == "cadenza.plays.schema.json"]
    validator = jsonschema.Draft202012Validator(
        json.loads(path.read_text()), format_checker=jsonschema.FormatChecker()
    )
    good = json.loads(encode(PlayEvent(user_id="alice", track_id=2, kind="like")))
    assert list(validator.iter_errors(good)) == []
    bad = {**good, "kind": "rewind", "position_s": -1}
    messages = " ".join(e.message for e in validator.iter_errors(bad))
    assert "rewind" in messages and "-1" in messages
    # The topic-evolution rule: a field added by a newer producer is not an error.
    assert list(validator.iter_errors({**good, "source": "radio"})) == []
