"""FMA's standard audio features: one audio file or signal -> 518 float32 values.

Source: an audio file (MP3, OGG/Vorbis, FLAC, WAV; mono or multi-channel; any sample
rate from 8 kHz up) decoded with soundfile (libsndfile, which bundles mpg123 for MP3),
or a signal already in memory. Destination: a float32 vector in
:data:`schemas.features.FEATURE_COLUMNS` order, which the ETL job stores in MongoDB
``tracks`` and publishes on ``cadenza.tracks.new``.

Computed as FMA's own ``features.py`` (github.com/mdeff/fma) did, call by call, ported
to librosa 0.11: native sample rate mixed to mono; zcr (frames 2048, hop 512); one CQT
magnitude (hop 512, 84 bins at 12 per octave from C1, tuning estimated from the signal)
giving chroma_cqt and chroma_cens, and tonnetz from chroma_cens; one STFT magnitude
``S`` (n_fft 2048, hop 512) giving chroma_stft (from ``S**2``), rmse, spectral
centroid/bandwidth/contrast (6 bands)/rolloff, and 20 MFCCs of a mel spectrogram of
``S**2`` in dB; per coefficient kurtosis (Fisher), max, mean, median, min, skew
(biased), std over frames. librosa >= 0.10 defaults chroma_cqt/cens to 36 bins per
octave, so 12 is passed explicitly. Two FMA quirks are kept so extracted rows sit next
to rows imported from ``features.csv``: FMA called chroma_stft and spectral_* without
``sr``, i.e. on librosa's default 22050 Hz axis (:data:`FMA_SPECTRAL_SR`); and ``rmse``
is FMA-era librosa's ``sqrt(mean over bins of S**2)`` (librosa >= 0.7 ``rms(S=)`` is
about 45x smaller).

Speed: one decode, one STFT, one CQT; tuning, zcr, centroid/bandwidth/rolloff use
exact re-implementations that skip librosa's redundant work (results are identical).

Robustness: at low sample rates the top CQT bins whose filters would cross Nyquist are
dropped (:func:`cqt_bins`; 8 kHz keeps 83 of 84) and chroma folds the rest. Clips
shorter than a frame are analysed as they are (librosa's short-signal warnings are
silenced, nothing is padded). Constant rows (silence) get skew = kurtosis = 0, not
NaN. Undecodable files raise :class:`AudioDecodeError`; non-finite results
:class:`FeatureError`.

Numba: importing this module sets ``NUMBA_CACHE_DIR`` to ``<cache_dir>/numba``
(``CADENZA_CACHE_DIR``) unless set, so librosa's JIT kernels compile once per machine,
not once per process (first call ~15 s otherwise). Import it before librosa/numba, or
set the variable in the environment (Spark executors).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from schemas.features import FEATURE_SIZES, FEATURE_TRIPLES, N_FEATURES, STATISTICS


def numba_cache_dir() -> Path:
    """Where numba keeps compiled kernels: ``$NUMBA_CACHE_DIR``, else ``<cache_dir>/numba``."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    try:
        from infra.settings import get_settings

        base = get_settings().cache_dir
    except Exception:  # a broken CADENZA_* variable must not break feature extraction
        base = Path.home() / ".cache" / "cadenza"
    return base / "numba"


os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache_dir()))

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from etl.errors import AudioDecodeError, FeatureError  # noqa: E402

N_FFT: Final = 2048
HOP: Final = 512
BINS_PER_OCTAVE: Final = 12
CQT_BINS: Final = 7 * 12
N_CHROMA: Final = 12
N_MFCC: Final = 20
#: Sample rate FMA's code implicitly gave chroma_stft and spectral_* (librosa's default).
FMA_SPECTRAL_SR: Final = 22050
#: Below this rate under 6 of the 7 CQT octaves fit below Nyquist; refuse rather than guess.
MIN_SAMPLE_RATE: Final = 4000
#: Agreement of :func:`extract_signal` with librosa's own per-feature functions (tests, bench).
RTOL: Final = 1e-4
ATOL: Final = 1e-4

_C1_HZ: Final = float(librosa.note_to_hz("C1"))
# float32 resolution: a row whose variance is below (resolution * mean)**2 is constant.
_RESOLUTION: Final = float(np.finfo(np.float32).resolution)
_QUIET: Final = (
    r"n_fft=\d+ is too large for input signal",
    r"Trying to estimate tuning from empty frequency set",
    r"Empty filters detected in mel frequency basis",
    r"n_fft=\d+ is too small for input signal",
)


def _column_index() -> dict[str, np.ndarray]:
    """feature -> (7, size) positions in FEATURE_COLUMNS, statistics in STATISTICS order."""
    position = {triple: i for i, triple in enumerate(FEATURE_TRIPLES)}
    return {
        name: np.array([[position[(name, stat, f"{i + 1:02d}")] for i in range(size)] for stat in STATISTICS])
        for name, size in FEATURE_SIZES.items()
    }


_INDEX: Final = _column_index()


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence librosa's expected warnings (short clips, silence, low sample rates)."""
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        yield


# --- pure maths ------------------------------------------------------------------------


def summarise(values: np.ndarray) -> np.ndarray:
    """Statistics of each row over frames: shape (7, rows) in :data:`STATISTICS` order.

    Computed in float64 from float32 rows: mean, std, skew and kurtosis as scipy's
    defaults (biased, Fisher), median, min, max. Rows that are constant up to float32
    resolution get skew = kurtosis = 0 (scipy would give NaN).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise FeatureError(f"cannot summarise an array of shape {x.shape}: the clip has no frames")
    mean = x.mean(axis=1)
    d = x - mean[:, None]
    d2 = d * d
    m2 = d2.mean(axis=1)
    m3 = (d2 * d).mean(axis=1)
    m4 = (d2 * d2).mean(axis=1)
    degenerate = m2 <= (_RESOLUTION * np.abs(mean)) ** 2
    safe = np.where(degenerate, 1.0, m2)
    skew = np.where(degenerate, 0.0, m3 / safe**1.5)
    kurt = np.where(degenerate, 0.0, m4 / safe**2 - 3.0)
    by_name = {
        "kurtosis": kurt,
        "max": x.max(axis=1),
        "mean": mean,
        "median": np.median(x, axis=1),
        "min": x.min(axis=1),
        "skew": skew,
        "std": np.sqrt(m2),
    }
    return np.stack([by_name[s] for s in STATISTICS])


def assemble(frames: dict[str, np.ndarray]) -> np.ndarray:
    """Per-feature frame matrices (``{"mfcc": (20, t), ...}``) -> the 518-vector.

    Raises :class:`FeatureError` when a feature is missing, has the wrong number of
    coefficients, or any statistic is not finite.
    """
    out = np.full(N_FEATURES, np.nan, dtype=np.float64)
    for name, size in FEATURE_SIZES.items():
        if name not in frames:
            raise FeatureError(f"feature {name!r} was not computed")
        rows = frames[name]
        if rows.ndim != 2 or rows.shape[0] != size:
            raise FeatureError(f"feature {name!r} has shape {rows.shape}, expected ({size}, frames)")
        if not np.all(np.isfinite(rows)):
            raise FeatureError(f"feature {name!r} has non-finite frames; the audio is probably corrupt")
        out[_INDEX[name]] = summarise(rows)
    if not np.all(np.isfinite(out)):
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise FeatureError(
            f"feature vector has non-finite values (first at column {bad}); "
            "the audio is probably corrupt, re-encode or skip the file"
        )
    return out.astype(np.float32)


def cqt_bins(sr: float, tuning: float = 0.0) -> int:
    """Number of CQT bins (at most 84, 12 per octave from C1) that fit below Nyquist.

    librosa refuses a constant-Q basis whose top filter (centre frequency plus half its
    bandwidth) exceeds ``sr / 2``; for low sample rates (8 kHz) we drop the top bins
    instead of failing. Raises :class:`FeatureError` below :data:`MIN_SAMPLE_RATE`.
    """
    if sr < MIN_SAMPLE_RATE:
        raise FeatureError(f"sample rate {sr} Hz is below {MIN_SAMPLE_RATE} Hz; resample the audio first")
    fmin = _C1_HZ * 2.0 ** (tuning / BINS_PER_OCTAVE)
    for n_bins in range(CQT_BINS, 1, -1):
        freqs = librosa.cqt_frequencies(n_bins=n_bins, fmin=fmin, bins_per_octave=BINS_PER_OCTAVE)
        _, cutoff = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr, window="hann")
        if cutoff <= sr / 2.0:
            return n_bins
    raise FeatureError(f"no CQT bin fits below Nyquist at {sr} Hz")  # unreachable above MIN


def _mono(y: np.ndarray) -> np.ndarray:
    """``(n,)`` or librosa's ``(channels, n)`` -> contiguous float32 mono."""
    y = np.asarray(y)
    if y.ndim == 2:
        y = y.mean(axis=0, dtype=np.float32) if y.shape[0] > 1 else y[0]
    elif y.ndim != 1:
        raise FeatureError(f"expected a (n,) or (channels, n) signal, got shape {y.shape}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.size == 0:
        raise FeatureError("the signal is empty (0 samples)")
    if not np.all(np.isfinite(y)):
        raise FeatureError("the signal contains NaN or infinite samples")
    return y


def _check_rate(sr: float) -> None:
    if not np.isfinite(sr) or sr < MIN_SAMPLE_RATE:
        raise FeatureError(f"sample rate {sr} Hz is below {MIN_SAMPLE_RATE} Hz; resample the audio first")


def _fma_rmse(spec: np.ndarray) -> np.ndarray:
    """FMA-era ``librosa.feature.rmse(S=spec)``: root mean square over frequency bins."""
    return np.sqrt(np.mean(spec * spec, axis=0, keepdims=True))


def zero_crossing_rate(y: np.ndarray) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512)``, exactly.

    Sign changes are counted once and summed per frame with a cumulative sum, instead of
    re-scanning every sample in four overlapping frames.
    """
    padded = np.pad(y, N_FFT // 2, mode="edge")
    negative = padded < np.float64(-1e-10)  # librosa: |x| <= 1e-10 counts as zero (positive)
    crossings = np.concatenate(([0], np.cumsum(negative[1:] != negative[:-1], dtype=np.int64)))
    starts = np.arange(1 + (padded.size - N_FFT) // HOP) * HOP
    counts = crossings[starts + N_FFT - 1] - crossings[starts]
    return (counts / N_FFT)[np.newaxis, :]


def estimate_tuning(spec: np.ndarray, sr: float) -> float:
    """``librosa.estimate_tuning(S=spec, sr=sr, bins_per_octave=12)``, same result, faster.

    librosa's piptrack (150 Hz..4 kHz, threshold 0.1 of each frame's max) interpolates
    and finds peaks in every bin, then keeps the band; the same arithmetic runs here on
    the band and its two neighbouring bins only.
    """
    n_fft = 2 * (spec.shape[0] - 1)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    band = np.flatnonzero((freqs >= 150.0) & (freqs < min(4000.0, sr / 2.0)))
    if band.size == 0 or band[0] < 1:
        return float(librosa.estimate_tuning(S=spec, sr=sr, bins_per_octave=BINS_PER_OCTAVE))
    lo, hi = int(band[0]), int(band[-1]) + 1
    x = spec[lo - 1 : hi + 1]
    prev, mid, nxt = x[:-2], x[1:-1], x[2:]
    # librosa's numba stencil does this arithmetic in float64, then stores float32.
    a = (nxt + prev).astype(np.float64) - 2.0 * mid.astype(np.float64)
    b = (nxt - prev).astype(np.float64) / 2.0
    flat = np.abs(b) >= np.abs(a)
    shift = np.where(flat, 0.0, -b / np.where(flat, 1.0, a)).astype(spec.dtype)
    dskew = 0.5 * ((nxt - prev) / 2.0) * shift
    kept = x * (x > 0.1 * spec.max(axis=0))
    rows, cols = np.nonzero((kept[1:-1] > kept[:-2]) & (kept[1:-1] >= kept[2:]))
    pitch = ((rows + lo + shift[rows, cols]) * float(sr) / n_fft).astype(spec.dtype)
    mag = mid[rows, cols] + dskew[rows, cols]
    threshold = np.median(mag) if mag.size else 0.0
    tuning = librosa.pitch_tuning(pitch[mag >= threshold], resolution=0.01, bins_per_octave=BINS_PER_OCTAVE)
    return float(tuning)


def spectral_shape(spec: np.ndarray) -> dict[str, np.ndarray]:
    """Centroid, bandwidth and rolloff of a magnitude STFT on FMA's 22050 Hz axis.

    Equal to librosa's ``spectral_centroid``/``spectral_bandwidth``/``spectral_rolloff``
    with ``sr=FMA_SPECTRAL_SR``; the L1-normalised spectrum is computed once, and the
    rolloff is the first bin whose cumulative energy reaches 85 %.
    """
    freq = librosa.fft_frequencies(sr=FMA_SPECTRAL_SR, n_fft=2 * (spec.shape[0] - 1))
    norm = librosa.util.normalize(spec, norm=1, axis=0)
    centroid = np.sum(freq[:, np.newaxis] * norm, axis=0, keepdims=True)
    bandwidth = librosa.feature.spectral_bandwidth(S=norm, freq=freq, centroid=centroid, norm=False)
    total = np.cumsum(spec, axis=0)
    rolloff = freq[np.argmax(total >= 0.85 * total[-1], axis=0)][np.newaxis, :]
    return {"spectral_centroid": centroid, "spectral_bandwidth": bandwidth, "spectral_rolloff": rolloff}


def feature_frames(y: np.ndarray, sr: float) -> dict[str, np.ndarray]:
    """Every feature's frame matrix from one STFT and one CQT of a mono signal."""
    with _quiet():
        spec = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
        # What librosa.cqt(tuning=None) estimates from y: piptrack on this very STFT.
        tuning = estimate_tuning(spec, sr)
        n_bins = cqt_bins(sr, tuning)
        cqt = np.abs(
            librosa.cqt(
                y, sr=sr, hop_length=HOP, n_bins=n_bins, bins_per_octave=BINS_PER_OCTAVE, tuning=tuning
            )
        )
        cens = librosa.feature.chroma_cens(C=cqt, n_chroma=N_CHROMA, bins_per_octave=BINS_PER_OCTAVE)
        frames = {
            "zcr": zero_crossing_rate(y),
            "chroma_cqt": librosa.feature.chroma_cqt(C=cqt, n_chroma=N_CHROMA, bins_per_octave=12),
            "chroma_cens": cens,
            "tonnetz": librosa.feature.tonnetz(chroma=cens),
        }
        del cqt
        power = spec * spec
        mel = librosa.feature.melspectrogram(S=power, sr=sr)
        stft_tuning = estimate_tuning(power, FMA_SPECTRAL_SR)
        frames |= spectral_shape(spec) | {
            "chroma_stft": librosa.feature.chroma_stft(S=power, sr=FMA_SPECTRAL_SR, tuning=stft_tuning),
            "rmse": _fma_rmse(spec),
            "spectral_contrast": librosa.feature.spectral_contrast(S=spec, sr=FMA_SPECTRAL_SR, n_bands=6),
            "mfcc": librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC),
        }
    return frames


def extract_signal(y: np.ndarray, sr: float) -> np.ndarray:
    """518 float32 features (FEATURE_COLUMNS order) of a mono ``(n,)`` or ``(channels, n)`` signal."""
    _check_rate(sr)
    return assemble(feature_frames(_mono(y), float(sr)))


def warm_up() -> None:
    """Compile librosa's numba kernels in this one process (or load them from the cache).

    Run it before several processes extract at once (the ETL's Spark workers): numba's
    cache of ``@guvectorize`` kernels can be left inconsistent when two processes compile
    them at the same time (numba issue #10128), and every later process that loads it
    crashes with a segmentation fault."""
    extract_signal(np.random.default_rng(0).standard_normal(2 * 22_050).astype(np.float32), 22_050.0)


def extract_naive(y: np.ndarray, sr: float) -> np.ndarray:
    """Benchmark baseline: every feature from the signal by its own librosa call.

    Same definitions as :func:`extract_signal` (they agree within :data:`RTOL`/:data:`ATOL`)
    but each call redoes its own STFT or CQT and tuning, as a straightforward script does.
    Needs the full 84-bin CQT, so librosa refuses sample rates below about 8.3 kHz.
    """
    _check_rate(sr)
    y, rate, fs = _mono(y), float(sr), FMA_SPECTRAL_SR
    with _quiet():
        mel = librosa.feature.melspectrogram(y=y, sr=rate, n_fft=N_FFT, hop_length=HOP)
        cens = librosa.feature.chroma_cens(y=y, sr=rate, hop_length=HOP, bins_per_octave=12)
        frames = {
            "zcr": librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP),
            "chroma_cqt": librosa.feature.chroma_cqt(y=y, sr=rate, hop_length=HOP, bins_per_octave=12),
            "chroma_cens": cens,
            "tonnetz": librosa.feature.tonnetz(
                chroma=librosa.feature.chroma_cens(y=y, sr=rate, hop_length=HOP, bins_per_octave=12)
            ),
            "chroma_stft": librosa.feature.chroma_stft(y=y, sr=fs, n_fft=N_FFT, hop_length=HOP),
            "rmse": _fma_rmse(np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))),
            "spectral_centroid": librosa.feature.spectral_centroid(y=y, sr=fs, n_fft=N_FFT, hop_length=HOP),
            "spectral_bandwidth": librosa.feature.spectral_bandwidth(y=y, sr=fs, n_fft=N_FFT, hop_length=HOP),
            "spectral_contrast": librosa.feature.spectral_contrast(y=y, sr=fs, n_fft=N_FFT, hop_length=HOP),
            "spectral_rolloff": librosa.feature.spectral_rolloff(y=y, sr=fs, n_fft=N_FFT, hop_length=HOP),
            "mfcc": librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC),
        }
    return assemble(frames)


# --- IO edge ---------------------------------------------------------------------------


def load_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode a whole file at its native rate, mixed to mono float32 -> ``(y, sr)``.

    Raises :class:`AudioDecodeError` for a missing, empty, corrupt or non-audio file.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(f"{p}: no such file; check the FMA directory (CADENZA_FMA_DIR)")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"{p}: the file is empty (0 bytes); re-download it or skip the track")
    try:
        with sf.SoundFile(p) as audio:  # read as librosa.load does: same samples, bit for bit
            sr = audio.samplerate
            data = audio.read(frames=-1, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, OSError) as exc:
        raise AudioDecodeError(
            f"{p}: cannot decode audio: the file is corrupt, truncated or not MP3/OGG/FLAC/WAV; "
            "re-download or re-encode it"
        ) from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{p}: decodes to 0 samples; the file is truncated or empty")
    y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(y, dtype=np.float32), int(sr)


def extract_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode once and return the 518 float32 features of one audio file."""
    y, sr = load_audio(path)
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError(f"{path}: decoded samples are not finite; the file is corrupt")
    return extract_signal(y, sr)
