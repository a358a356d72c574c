"""What an executor stores for one track: its excerpt's features, the excerpt, the whole duration."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.features import extract_file
from etl.fma import FmaTrack
from etl.partition import WorkItem, analyse
from schemas.documents import TrackDoc
from schemas.vectors import unpack
from tests.etl._signals import long_music, write_clip


def item(root: Path, seconds: float, metadata_s: float) -> WorkItem:
    sr = 16000
    (root / "fma_full" / "000").mkdir(parents=True)
    write_clip(root / "fma_full" / "000" / "000002.wav", long_music(seconds, sr), sr, 2)
    track = FmaTrack(id=2, title="Food", duration_s=metadata_s, audio_path="fma_full/000/000002.wav")
    return WorkItem(2, str(track.audio_path), track.document_fields())


def test_a_long_track_is_stored_with_its_excerpt_and_whole_duration(tmp_path: Path) -> None:
    doc, event = analyse(tmp_path, item(tmp_path, 65.0, 65.0), 30.0)
    assert doc["excerpt"] == {"offset_s": 17.0, "duration_s": 30.0}  # 65 // 2 - 15
    assert doc["duration_s"] == event.duration_s == 65.0  # the track's, not the excerpt's
    assert TrackDoc.model_validate(doc).to_mongo().keys() == doc.keys()
    assert not np.array_equal(unpack(doc["features"]), extract_file(tmp_path / doc["audio_path"]))


def test_whole_tracks_and_files_without_a_duration(tmp_path: Path) -> None:
    doc, _ = analyse(tmp_path, item(tmp_path, 12.5, 0.0), 0.0)  # metadata without a duration
    assert doc["excerpt"] == {"offset_s": 0.0, "duration_s": 12.5} and doc["duration_s"] == 12.5
    np.testing.assert_array_equal(unpack(doc["features"]), extract_file(tmp_path / doc["audio_path"]))
