"""Which part of a track is analysed (FMA's clip rule), and reading it: header only for the
length, one seek and one read for the samples, equal to a straight decode of the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from etl.audio import FMA_CLIP_S, excerpt_window, load_audio, probe, read_mono
from etl.errors import AudioDecodeError, EtlError
from tests.etl._signals import long_music, write_clip


def fma_start(duration_s: int) -> int:
    """mdeff/fma creation.py, trim_audio: ``start = duration // 2 - 15`` (seconds)."""
    return duration_s // 2 - 15


@pytest.mark.parametrize("seconds", [31, 45, 61, 241, 600, 3600])
def test_a_long_track_gives_fmas_clip_from_the_middle(seconds: int) -> None:
    for sr in (22050, 44100):
        for extra in (0, sr // 3):  # the file's own length, not a whole number of seconds
            assert excerpt_window(seconds * sr + extra, sr, FMA_CLIP_S) == (fma_start(seconds) * sr, 30 * sr)


def test_a_track_not_longer_than_the_excerpt_or_excerpt_0_is_whole() -> None:
    sr = 44100
    for frames in (1, sr, 29 * sr, 30 * sr):
        assert excerpt_window(frames, sr, 30.0) == (0, frames)
    for excerpt in (0.0, -1.0):
        assert excerpt_window(600 * sr, sr, excerpt) == (0, 600 * sr)


def test_any_excerpt_length_is_centred_and_inside_the_track() -> None:
    sr = 8000
    assert excerpt_window(100 * sr, sr, 45.0) == (int(27.5 * sr), 45 * sr)
    rng = np.random.default_rng(3)
    for frames, excerpt in zip(rng.integers(1, 10**7, 300), rng.uniform(0.01, 900, 300), strict=True):
        start, length = excerpt_window(int(frames), sr, float(excerpt))
        assert start >= 0 and start + length <= frames and length == min(int(frames), round(excerpt * sr))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pieces_of_an_mp3_equal_its_straight_decode(tmp_path: Path) -> None:
    """libsndfile/mpg123 can decode the first frames after a seek differently from a straight
    decode; read_mono's pre-roll gives exactly the straight decode's samples anywhere."""
    y = long_music(24.0, 44100)
    path = write_clip(tmp_path / "long.mp3", y, 44100, 2)
    straight, sr = load_audio(path)
    assert probe(path).frames == straight.size and sr == 44100
    rng = np.random.default_rng(0)
    for start, frames in [(0, 1000), (1, 44100), (straight.size - 500, 500), (straight.size - 10, 100)] + [
        (int(s), int(n))
        for s, n in zip(rng.integers(0, straight.size, 40), rng.integers(1, 3 * sr, 40), strict=True)
    ]:
        piece = read_mono(path, start, frames)
        np.testing.assert_array_equal(piece, straight[start : start + frames], err_msg=f"start {start}")


def test_probe_reads_the_header_and_broken_files_are_decode_errors(tmp_path: Path) -> None:
    wav = write_clip(tmp_path / "clip.wav", long_music(1.5, 16000), 16000, 2)
    info = probe(wav)
    assert (info.frames, info.sample_rate, info.channels, info.duration_s) == (24000, 16000, 2, 1.5)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp3"
    text.write_text("<html><body>404 Not Found</body></html>\n")
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 22050)
    for path in (empty, text, zero, tmp_path / "missing.mp3", tmp_path):
        with pytest.raises(AudioDecodeError) as info_error:
            probe(path)
        assert isinstance(info_error.value, EtlError) and str(path) in str(info_error.value)
