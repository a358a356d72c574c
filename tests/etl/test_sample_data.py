"""The sample catalogue is FMA-shaped, real audio, deterministic, and its genres are audible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from etl import fma
from etl.errors import AudioDecodeError, EtlError
from etl.features import extract_file
from etl.sample_data import SampleSummary, audio_format, write_sample_catalogue

GENRES, PER_GENRE, SECONDS = 8, 5, 8.0


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> SampleSummary:
    root = tmp_path_factory.mktemp("sample")
    return write_sample_catalogue(root, tracks=GENRES * PER_GENRE, genres=GENRES, seed=7, duration_s=SECONDS)


def test_mp3_is_available_here() -> None:
    assert audio_format() == "mp3"  # libsndfile >= 1.1 bundled with soundfile encodes MP3


def test_layout_is_fma_exactly(catalogue: SampleSummary) -> None:
    meta = catalogue.directory / "fma_metadata"
    lines = (meta / "tracks.csv").read_text().splitlines()
    assert lines[0].startswith(",album,album,") and lines[0].endswith(",track,track")
    assert lines[1].startswith(",comments,date_created,date_released,") and lines[1].endswith(",tags,title")
    assert lines[2] == "track_id" + "," * 52
    assert (meta / "genres.csv").read_text().splitlines()[0] == "genre_id,#tracks,parent,title,top_level"
    frame = fma.read_tracks(catalogue.directory)
    assert frame.shape == (GENRES * PER_GENRE + 3, 52)
    for tid in catalogue.track_ids + catalogue.broken_ids:
        assert (catalogue.directory / fma.audio_relpath(tid, "fma_small")).is_file()


def test_reader_sees_every_track_with_audio_and_genre(catalogue: SampleSummary) -> None:
    cat = fma.load_catalogue(catalogue.directory, subset="small")
    assert cat.missing_audio == [] and cat.problems == []
    assert [t.id for t in cat.tracks] == sorted(catalogue.track_ids + catalogue.broken_ids)
    tops = {t.genre_top for t in cat.tracks}
    assert tops == set(catalogue.genres) and len(tops) == GENRES
    counts = {g: sum(t.genre_top == g for t in cat.tracks if t.id in catalogue.track_ids) for g in tops}
    assert set(counts.values()) == {PER_GENRE}  # balanced
    assert all(cat.genres[t.genres_all[0]].parent == 0 for t in cat.tracks)
    assert all(t.duration_s == round(SECONDS) and t.title and t.artist for t in cat.tracks)


def test_audio_files_are_real_mp3_of_the_requested_shape(catalogue: SampleSummary) -> None:
    for tid in catalogue.track_ids[:5]:
        info = sf.info(catalogue.directory / fma.audio_relpath(tid, "fma_small"))
        assert (info.format, info.samplerate, info.channels) == ("MP3", 22050, 1)
        assert abs(info.duration - SECONDS) < 0.1


def test_broken_files_fail_to_decode(catalogue: SampleSummary) -> None:
    sizes = []
    for tid in catalogue.broken_ids:
        path = catalogue.directory / fma.audio_relpath(tid, "fma_small")
        sizes.append(path.stat().st_size)
        with pytest.raises(AudioDecodeError):
            extract_file(path)
    assert len(sizes) == 3 and 0 in sizes and all(s < 1000 for s in sizes)


def test_genres_are_separable_by_their_features(catalogue: SampleSummary) -> None:
    cat = fma.load_catalogue(catalogue.directory)
    good = [t for t in cat.tracks if t.id in catalogue.track_ids]
    assert all(t.audio_path is not None for t in good)
    x = np.array([extract_file(catalogue.directory / str(t.audio_path)) for t in good], dtype=np.float64)
    labels = np.array([t.genre_top for t in good])
    z = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    hits = 0
    for i in range(len(z)):  # leave-one-out nearest centroid
        rest = np.arange(len(z)) != i
        centroids = {g: z[rest & (labels == g)].mean(axis=0) for g in set(labels)}
        hits += min(centroids, key=lambda g: float(np.linalg.norm(z[i] - centroids[g]))) == labels[i]
    accuracy = hits / len(z)
    assert accuracy >= 0.75, f"nearest-centroid accuracy {accuracy:.2f} (chance {1 / GENRES:.2f})"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_by_seed(tmp_path: Path) -> None:
    a = write_sample_catalogue(tmp_path / "a", 6, 3, seed=11, duration_s=1.5)
    b = write_sample_catalogue(tmp_path / "b", 6, 3, seed=11, duration_s=1.5, workers=2)
    write_sample_catalogue(tmp_path / "c", 6, 3, seed=12, duration_s=1.5)
    assert a.track_ids == b.track_ids and a.broken_ids == b.broken_ids
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")
    snap_a, snap_c = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "c")
    assert snap_a["fma_metadata/tracks.csv"] != snap_c["fma_metadata/tracks.csv"]
    audio_a = [v for k, v in snap_a.items() if k.startswith("fma_small")]
    audio_c = [v for k, v in snap_c.items() if k.startswith("fma_small")]
    assert audio_a != audio_c


def test_fma_like_rate_and_stereo(tmp_path: Path) -> None:
    summary = write_sample_catalogue(
        tmp_path, tracks=2, genres=2, duration_s=1.0, sample_rate=44100, channels=2, broken=0
    )
    assert summary.broken_ids == () and summary.bytes_written > 0
    info = sf.info(tmp_path / fma.audio_relpath(summary.track_ids[0], "fma_small"))
    assert (info.samplerate, info.channels) == (44100, 2)


@pytest.mark.parametrize(
    "kwargs", [{"genres": 0}, {"genres": 17}, {"tracks": 0}, {"duration_s": 0.0}, {"channels": 3}]
)
def test_bad_arguments_are_etl_errors(tmp_path: Path, kwargs: dict[str, float]) -> None:
    with pytest.raises(EtlError):
        write_sample_catalogue(tmp_path, **kwargs)  # type: ignore[arg-type]  # tests are not type-checked
