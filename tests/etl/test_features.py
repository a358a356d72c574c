"""The extractor equals FMA's recipe computed independently with librosa's own functions.

The reference below is FMA's ``features.py`` ported to librosa 0.11 (decode with
``librosa.load(sr=None, mono=True)``, one librosa call per feature, FMA's column
MultiIndex, scipy statistics). It shares no code with ``etl.features``. Clips are
written in every supported format, mono and stereo, 8 to 48 kHz, including a 0.5 s
clip and silence.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from etl import features as fx
from etl.audio import load_audio, probe
from etl.errors import AudioDecodeError, EtlError, FeatureError
from schemas.features import FEATURE_COLUMNS, N_FEATURES
from tests.etl._signals import long_music, music, write_clip


def fma_reference(x: np.ndarray, sr: int) -> np.ndarray:
    """FMA's compute_features, librosa 0.11 spelling, in FEATURE_COLUMNS order."""
    sizes = {"chroma_stft": 12, "chroma_cqt": 12, "chroma_cens": 12, "tonnetz": 6, "mfcc": 20, "rmse": 1}
    sizes |= {"zcr": 1, "spectral_centroid": 1, "spectral_bandwidth": 1, "spectral_contrast": 7}
    sizes |= {"spectral_rolloff": 1}
    moments = ("mean", "std", "skew", "kurtosis", "median", "min", "max")
    columns = pd.MultiIndex.from_tuples(
        [(n, m, f"{i + 1:02d}") for n, s in sizes.items() for m in moments for i in range(s)]
    ).sort_values()
    out = pd.Series(index=columns, dtype=np.float64)

    def feature_stats(name: str, values: np.ndarray) -> None:
        v = values.astype(np.float64)
        out[name, "mean"] = np.mean(v, axis=1)
        out[name, "std"] = np.std(v, axis=1)
        out[name, "skew"] = np.nan_to_num(stats.skew(v, axis=1))  # constant rows: NaN -> 0
        out[name, "kurtosis"] = np.nan_to_num(stats.kurtosis(v, axis=1))
        out[name, "median"] = np.median(v, axis=1)
        out[name, "min"] = np.min(v, axis=1)
        out[name, "max"] = np.max(v, axis=1)

    feature_stats("zcr", librosa.feature.zero_crossing_rate(x, frame_length=2048, hop_length=512))
    n_bins = 84
    while True:  # FMA asked for 84 bins; at 8 kHz librosa refuses the top one(s)
        try:
            cqt = np.abs(
                librosa.cqt(x, sr=sr, hop_length=512, bins_per_octave=12, n_bins=n_bins, tuning=None)
            )
            break
        except librosa.ParameterError:
            n_bins -= 1
    feature_stats(
        "chroma_cqt", librosa.feature.chroma_cqt(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)
    )
    cens = librosa.feature.chroma_cens(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)
    feature_stats("chroma_cens", cens)
    feature_stats("tonnetz", librosa.feature.tonnetz(chroma=cens))
    stft = np.abs(librosa.stft(x, n_fft=2048, hop_length=512))
    feature_stats("chroma_stft", librosa.feature.chroma_stft(S=stft**2, n_chroma=12))  # FMA: no sr
    feature_stats("rmse", np.sqrt(np.mean(np.abs(stft) ** 2, axis=0, keepdims=True)))  # librosa 0.5 rmse(S=)
    feature_stats("spectral_centroid", librosa.feature.spectral_centroid(S=stft))
    feature_stats("spectral_bandwidth", librosa.feature.spectral_bandwidth(S=stft))
    feature_stats("spectral_contrast", librosa.feature.spectral_contrast(S=stft, n_bands=6))
    feature_stats("spectral_rolloff", librosa.feature.spectral_rolloff(S=stft))
    mel = librosa.feature.melspectrogram(sr=sr, S=stft**2)
    feature_stats("mfcc", librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20))
    assert [f"{f}_{s}_{n}" for f, s, n in out.index] == list(FEATURE_COLUMNS)
    return out.to_numpy()


def assert_matches(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == (N_FEATURES,) and ours.dtype == np.float32
    assert np.all(np.isfinite(ours))
    bad = ~np.isclose(ours, ref, rtol=fx.RTOL, atol=fx.ATOL)
    detail = [(FEATURE_COLUMNS[i], float(ours[i]), float(ref[i])) for i in np.flatnonzero(bad)[:5]]
    assert not bad.any(), f"{bad.sum()} columns differ, e.g. {detail}"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("fmt", "sr", "channels", "seconds"),
    [
        *[(f, 22050, ch, 3.0) for f in ("wav", "flac", "ogg", "mp3") for ch in (1, 2)],
        *[("wav", sr, 1, 2.0) for sr in (8000, 11025, 16000, 32000, 44100, 48000)],
        ("mp3", 8000, 2, 2.0),
        ("mp3", 48000, 2, 2.0),
        ("flac", 44100, 2, 0.5),
        ("mp3", 22050, 1, 0.5),
        ("wav", 8000, 1, 0.5),
    ],
)
def test_extract_file_matches_fma_reference(
    tmp_path: Path, fmt: str, sr: int, channels: int, seconds: float
) -> None:
    path = write_clip(tmp_path / f"clip.{fmt}", music(seconds, sr, seed=sr + channels), sr, channels)
    x, rate = librosa.load(path, sr=None, mono=True)
    assert rate == sr
    assert_matches(fx.extract_file(path), fma_reference(x, int(rate)))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_silence_is_finite_and_matches_reference(sr: int) -> None:
    y = np.zeros(sr, dtype=np.float32)
    ours = fx.extract_signal(y, sr)
    assert_matches(ours, fma_reference(y, sr))
    skew_kurt = [i for i, c in enumerate(FEATURE_COLUMNS) if "_skew_" in c or "_kurtosis_" in c]
    assert np.all(ours[skew_kurt] == 0)


def test_naive_baseline_agrees_with_fast_path() -> None:
    y = music(3.0, 22050, seed=5)
    fast, naive = fx.extract_signal(y, 22050), fx.extract_naive(y, 22050)
    np.testing.assert_allclose(fast, naive, rtol=fx.RTOL, atol=fx.ATOL)


def test_stereo_signal_is_mixed_to_mono() -> None:
    left, right = music(1.5, 16000, seed=1), music(1.5, 16000, seed=2)
    stereo = np.stack([left, right])  # librosa's (channels, n)
    np.testing.assert_array_equal(
        fx.extract_signal(stereo, 16000), fx.extract_signal((left + right) / np.float32(2), 16000)
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 44100, 48000])
def test_fast_helpers_equal_librosa(sr: int) -> None:
    rng = np.random.default_rng(sr)
    signals = [
        music(2.0, sr, seed=sr),
        rng.standard_normal(sr).astype(np.float32),
        np.zeros(3000, np.float32),
    ]
    for y in signals:
        spec = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
        for s, rate in ((spec, sr), (spec**2, 22050)):
            assert fx.estimate_tuning(s, rate) == librosa.estimate_tuning(S=s, sr=rate, bins_per_octave=12)
        np.testing.assert_array_equal(
            fx.zero_crossing_rate(y), librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512)
        )
        shape = fx.spectral_shape(spec)
        for name, func in (
            ("spectral_centroid", librosa.feature.spectral_centroid),
            ("spectral_bandwidth", librosa.feature.spectral_bandwidth),
            ("spectral_rolloff", librosa.feature.spectral_rolloff),
        ):
            np.testing.assert_allclose(shape[name], func(S=spec, sr=22050), rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(
            fx.spectral_contrast(*fx.contrast_bands(spec)),
            librosa.feature.spectral_contrast(S=spec, sr=22050, n_bands=6),
        )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("sr", [8000, 11025, 22050, 48000])
def test_cqt_bins_is_the_largest_basis_librosa_accepts(sr: int) -> None:
    y = music(0.5, sr)
    n = fx.cqt_bins(sr)
    assert (n == 84) == (sr >= 11025)
    assert librosa.cqt(y, sr=sr, n_bins=n, bins_per_octave=12, tuning=0.0).shape[0] == n
    if n < 84:
        with pytest.raises(librosa.ParameterError):
            librosa.cqt(y, sr=sr, n_bins=n + 1, bins_per_octave=12, tuning=0.0)


def test_sample_rate_below_minimum_is_a_feature_error() -> None:
    with pytest.raises(FeatureError, match="resample"):
        fx.extract_signal(np.ones(1000, np.float32), 2000)


@pytest.mark.parametrize(
    "signal",
    [
        np.array([], np.float32),
        np.array([0.1, np.nan, 0.2] * 1000, np.float32),
        np.zeros((2, 2, 2), np.float32),
    ],
    ids=["empty", "nan", "3d"],
)
def test_bad_signals_are_feature_errors(signal: np.ndarray) -> None:
    with pytest.raises(FeatureError):
        fx.extract_signal(signal, 22050)


def test_broken_files_are_decode_errors(tmp_path: Path) -> None:
    good = write_clip(tmp_path / "good.mp3", music(2.0, 22050), 22050, 1)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(good.read_bytes()[:600])
    text = tmp_path / "text.mp3"
    text.write_text("<html><body>404 Not Found</body></html>\n")
    zero_frames = tmp_path / "zero.wav"
    sf.write(zero_frames, np.zeros(0, np.float32), 22050)
    for path in (empty, truncated, text, zero_frames, tmp_path / "missing.mp3", tmp_path):
        for excerpt_s in (0.0, 30.0, 0.5):
            with pytest.raises(AudioDecodeError) as info:
                fx.analyse_file(path, excerpt_s)
            assert isinstance(info.value, EtlError)
            assert str(path) in str(info.value)
    assert fx.extract_file(good).shape == (N_FEATURES,)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32, st.tuples(st.integers(1, 6), st.integers(1, 40)), elements=st.floats(-1e3, 1e3, width=32)
    )
)
def test_summarise_matches_scipy_and_is_finite(values: np.ndarray) -> None:
    out = fx.summarise(values)
    assert out.shape == (7, values.shape[0]) and np.all(np.isfinite(out))
    v = values.astype(np.float64)
    by = dict(zip(("kurtosis", "max", "mean", "median", "min", "skew", "std"), out, strict=True))
    np.testing.assert_allclose(by["mean"], v.mean(axis=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(by["std"], v.std(axis=1), rtol=1e-9, atol=1e-9)
    assert np.all(by["min"] <= by["median"]) and np.all(by["median"] <= by["max"])
    spread = v.std(axis=1) > 1e-3 * (1 + np.abs(v.mean(axis=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: "precision loss" on flat rows
        skew, kurt = stats.skew(v, axis=1), stats.kurtosis(v, axis=1)
    np.testing.assert_allclose(by["skew"][spread], skew[spread], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(by["kurtosis"][spread], kurt[spread], rtol=1e-6, atol=1e-6)
    constant = np.ptp(v, axis=1) == 0
    assert np.all(by["skew"][constant] == 0) and np.all(by["kurtosis"][constant] == 0)


def test_assemble_rejects_missing_or_misshapen_features() -> None:
    frames = fx.feature_frames(music(1.0, 22050), 22050.0)
    assert fx.assemble(frames).shape == (N_FEATURES,)
    with pytest.raises(FeatureError, match="mfcc"):
        fx.assemble({k: v for k, v in frames.items() if k != "mfcc"})
    with pytest.raises(FeatureError, match="tonnetz"):
        fx.assemble(frames | {"tonnetz": frames["tonnetz"][:5]})
    with pytest.raises(FeatureError, match="non-finite"):
        fx.assemble(frames | {"zcr": np.full_like(frames["zcr"], np.inf)})


def test_numba_cache_dir_follows_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert "NUMBA_CACHE_DIR" in os.environ  # set when etl.features was imported
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("CADENZA_CACHE_DIR", str(tmp_path))
    assert fx.numba_cache_dir() == tmp_path / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "own"))
    assert fx.numba_cache_dir() == tmp_path / "own"


def test_warm_up_compiles_the_kernels_into_numbas_cache(tmp_path: Path) -> None:
    """One process fills an empty cache with the kernels extraction uses (the gufuncs whose
    concurrent compilation can corrupt it), so the ETL's workers only load them."""
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    subprocess.run(
        [sys.executable, "-c", "from etl.features import warm_up; warm_up()"],
        env=env,
        check=True,
        timeout=300,
    )
    cached = [p.name for p in (tmp_path / "numba").rglob("guf-*.nbi")]
    assert any("_pi_wrapper" in name for name in cached), cached
    assert any("_zc_wrapper" in name for name in cached), cached


# --- which audio: FMA's excerpt, whole tracks in blocks ---------------------------------


def test_the_excerpt_is_fmas_clip_from_the_middle_and_only_it_is_decoded(tmp_path: Path) -> None:
    sr = 22050
    y = long_music(75.0, sr)
    path = write_clip(tmp_path / "track.wav", y, sr, 1)
    result = fx.analyse_file(path, 30.0)
    assert (result.track_s, result.offset_s, result.duration_s) == (75.0, 22.0, 30.0)  # 75 // 2 - 15
    assert result.decoded == result.largest_piece == 30 * sr  # the excerpt, nothing else
    clip = load_audio(path)[0][22 * sr : 52 * sr]
    np.testing.assert_array_equal(result.features, fx.extract_signal(clip, sr))


def test_a_track_shorter_than_the_excerpt_is_analysed_whole(tmp_path: Path) -> None:
    sr = 16000
    path = write_clip(tmp_path / "short.flac", long_music(20.0, sr), sr, 2)
    result = fx.analyse_file(path, 30.0)
    assert (result.track_s, result.offset_s, result.duration_s, result.decoded) == (20.0, 0.0, 20.0, 20 * sr)
    np.testing.assert_array_equal(result.features, fx.extract_signal(*load_audio(path)))
    np.testing.assert_array_equal(result.features, fx.extract_file(path))  # excerpt 0: whole


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("fmt", "sr", "seconds", "excerpt_s", "window"),
    [
        ("wav", 22050, 25.0, 0.0, (0.0, 25.0)),
        ("wav", 22050, 25.0, 20.0, (2.0, 20.0)),
        ("mp3", 44100, 12.0, 0.0, (0.0, 12.0)),
    ],
)
def test_long_audio_is_analysed_in_blocks_as_the_whole_signal_would_be(
    tmp_path: Path, fmt: str, sr: int, seconds: float, excerpt_s: float, window: tuple[float, float]
) -> None:
    """Blocks of 4.6 s plus 2 s margins, two passes: the frames of the whole signal.

    (MP3 at 44.1 kHz: MPEG-2 files, 24 kHz and below, decode to samples that differ from a
    straight decode at float32 rounding after a seek, which moves features measuring the
    decoder's noise floor, e.g. the top spectral-contrast valley of a low-passed MP3.)
    """
    hops = round(4.6 * sr / 512)
    path = write_clip(tmp_path / f"track.{fmt}", long_music(seconds, sr), sr, 2)
    result = fx.analyse_file(path, excerpt_s, block_hops=hops)
    assert (result.offset_s, result.duration_s) == window
    margins = 2 * math.ceil(fx.MARGIN_S * sr / 512) * 512  # either side, in whole hops
    assert result.largest_piece <= hops * 512 + margins  # never more than a block and its margins
    assert result.decoded > 2 * result.duration_s * sr  # two passes
    start, length = round(window[0] * sr), round(window[1] * sr)
    whole = fx.extract_signal(load_audio(path)[0][start : start + length], sr)
    np.testing.assert_allclose(result.features, whole, rtol=fx.RTOL, atol=fx.ATOL)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_mp3_header_that_overstates_the_length_ends_the_track_where_the_audio_ends(tmp_path: Path) -> None:
    """A constant-bit-rate MP3 without its Info frame: libsndfile estimates the length from
    the bit rate, a little long. Pieces past the real end read less; nothing else changes.

    (Without that frame, samples after a seek differ from a straight decode's at float32
    rounding, 6e-8, as in MPEG-2 files; the top spectral-contrast band's valley, above the
    MP3's low-pass, measures that noise and moves by up to ~1 %.)
    """
    sr = 44100
    path = tmp_path / "cbr.mp3"
    cbr = {"bitrate_mode": "CONSTANT", "compression_level": 0.5}  # 0.5: a CBR rate, with an Info tag
    sf.write(path, long_music(15.0, sr), sr, format="MP3", subtype="MPEG_LAYER_III", **cbr)
    data = path.read_bytes()
    info_at = data.index(b"Info")  # LAME's Info tag, in the first frame (at 0: no ID3 tag)
    next_frame = data.index(data[:2], info_at)  # the next frame header (the tag's frame is zeros)
    path.write_bytes(data[next_frame:])
    y = load_audio(path)[0]
    assert probe(path).frames > y.size  # the header's estimate overstates the length
    hops = round(4.6 * sr / 512)
    result = fx.analyse_file(path, 0.0, block_hops=hops)
    assert (result.track_s, result.offset_s, result.duration_s) == (y.size / sr, 0.0, y.size / sr)
    whole = fx.extract_signal(y, sr)
    top = np.array([c.startswith("spectral_contrast_") and c.endswith("_07") for c in FEATURE_COLUMNS])
    np.testing.assert_allclose(result.features[~top], whole[~top], rtol=fx.RTOL, atol=fx.ATOL)
    np.testing.assert_allclose(result.features[top], whole[top], rtol=0.02)
    # an excerpt that ends before the audio does: the track's duration is the header's
    assert fx.analyse_file(path, 12.0).track_s == probe(path).duration_s
