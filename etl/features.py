"""FMA's standard audio features: one audio file or signal -> 518 float32 values.

Source: an audio file (MP3, OGG/Vorbis, FLAC, WAV; mono or multi-channel; any sample
rate from 8 kHz up), read in bounded pieces by :mod:`etl.audio`, or a signal already in
memory. Destination: a float32 vector in :data:`schemas.features.FEATURE_COLUMNS` order,
which the ETL job stores in MongoDB ``tracks`` and publishes on ``cadenza.tracks.new``.

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

Which audio: :func:`analyse_file` analyses ``excerpt_s`` seconds from the middle of a
file (0: all of it); the ETL passes FMA's 30 s clip (:func:`etl.audio.excerpt_window`),
the audio FMA's features describe. A track not longer than the excerpt is analysed whole.

Bounded memory: an excerpt of up to :data:`BLOCK_HOPS` hops (+ margins; ~64 s at 44.1 kHz)
is decoded in one piece. A longer one (or a whole long track) is analysed in blocks that
give the whole signal's frames to float32 rounding: each block is decoded with
:data:`MARGIN_S` of context either side (every frame is local but for that context), in
two passes. The first measures what the frames share over the whole signal
(:class:`Calibration`: the CQT's and chroma_stft's tuning, the dB floors of the MFCCs'
mel spectrogram and of spectral contrast), the second computes each block's frames
with it; chroma_cens (smoothed over 41 frames) and tonnetz are made at the end from
the blocks' un-normalised chroma. What stays in memory is one block's audio and spectra
plus the frame rows (57 values, 268 bytes, per 512 samples: 1.4 MB per minute of 44.1
kHz audio), since the median needs every frame. chroma_cens quantises chroma at fixed
steps, so rounding can move a frame across one; on a 10-minute MP3 the worst feature
differed from the whole signal's by 0.49 of :data:`RTOL`/:data:`ATOL`.

Speed: one decode, one STFT, one CQT per piece (blocks: two decodes and STFTs); tuning,
zcr, centroid/bandwidth/rolloff use exact re-implementations that skip librosa's
redundant work, and spectral contrast one that takes the whole signal's dB floors
(results are identical).

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

import itertools
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

from etl.audio import excerpt_window, probe, read_mono  # noqa: E402
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
#: Hops per block of a long excerpt or track (2.6 M samples, ~59 s at 44.1 kHz): bounds the
#: samples, STFT and CQT of one piece (a worker peaked at 451-468 MiB on a 10-minute
#: 44.1 kHz track, ``python -m bench.etl_memory``).
BLOCK_HOPS: Final = 5120
#: Audio decoded either side of a block so its frames equal the whole signal's. The lowest
#: CQT filter (C1) with its resampling stages reaches ~0.5 s (measured: from 0.5 s of
#: context on, block frames equal whole-signal frames to float32 rounding); 2 s is 4x that.
MARGIN_S: Final = 2.0
#: ``librosa.power_to_db``'s ``top_db`` (FMA used the default): the dB floor, below the
#: maximum over all frames, of the MFCCs' mel spectrogram and of spectral contrast.
TOP_DB: Final = 80.0
#: ``librosa.feature.spectral_contrast``'s bands as FMA called it: 6 octaves from 200 Hz
#: (on FMA's 22050 Hz axis), peaks and valleys the top and bottom 2 % of each band.
CONTRAST_BANDS: Final = 6
CONTRAST_FMIN: Final = 200.0
CONTRAST_QUANTILE: Final = 0.02

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


def tuning_candidates(spec: np.ndarray, sr: float) -> tuple[np.ndarray, np.ndarray]:
    """Pitches and magnitudes of the spectral peaks ``librosa.estimate_tuning`` draws on.

    librosa's piptrack (150 Hz..4 kHz, threshold 0.1 of each frame's max) interpolates
    and finds peaks in every bin, then keeps the band; the same arithmetic runs here on
    the band and its two neighbouring bins only. Frames are independent, so the peaks of
    a signal's blocks together are the signal's peaks.
    """
    n_fft = 2 * (spec.shape[0] - 1)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    band = np.flatnonzero((freqs >= 150.0) & (freqs < min(4000.0, sr / 2.0)))
    if band.size == 0 or band[0] < 1:
        pitches, mags = librosa.piptrack(S=spec, sr=sr)
        found = pitches > 0
        return pitches[found], mags[found]
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
    return pitch, mid[rows, cols] + dskew[rows, cols]


def tuning_from(pitch: np.ndarray, mag: np.ndarray) -> float:
    """``estimate_tuning``'s last step: the tuning of the peaks at or above the median magnitude."""
    threshold = np.median(mag) if mag.size else 0.0
    with _quiet():
        tuning = librosa.pitch_tuning(
            pitch[mag >= threshold], resolution=0.01, bins_per_octave=BINS_PER_OCTAVE
        )
    return float(tuning)


def estimate_tuning(spec: np.ndarray, sr: float) -> float:
    """``librosa.estimate_tuning(S=spec, sr=sr, bins_per_octave=12)``, same result, faster."""
    return tuning_from(*tuning_candidates(spec, sr))


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


def contrast_bands(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peaks and valleys, ``(7, frames)`` each, of ``librosa.feature.spectral_contrast(S=spec,
    sr=FMA_SPECTRAL_SR, n_bands=6)``, by librosa's own arithmetic.

    Kept apart because librosa returns ``power_to_db(peak) - power_to_db(valley)``, each
    floored :data:`TOP_DB` below its maximum over all frames: blocks of a signal must
    share those floors (:func:`spectral_contrast`), which librosa's function cannot take.
    """
    freq = librosa.fft_frequencies(sr=FMA_SPECTRAL_SR, n_fft=2 * (spec.shape[0] - 1))
    octaves = np.zeros(CONTRAST_BANDS + 2)
    octaves[1:] = CONTRAST_FMIN * (2.0 ** np.arange(0, CONTRAST_BANDS + 1))
    valley = np.zeros((CONTRAST_BANDS + 1, spec.shape[1]))
    peak = np.zeros_like(valley)
    for k, (low, high) in enumerate(itertools.pairwise(octaves)):
        band = (freq >= low) & (freq <= high)
        inside = np.flatnonzero(band)
        if k > 0:
            band[inside[0] - 1] = True
        if k == CONTRAST_BANDS:
            band[inside[-1] + 1 :] = True
        sub = spec[band]
        if k < CONTRAST_BANDS:
            sub = sub[:-1]
        n = int(np.maximum(np.rint(CONTRAST_QUANTILE * np.sum(band)), 1))
        ordered = np.sort(sub, axis=0)
        valley[k] = np.mean(ordered[:n], axis=0)
        peak[k] = np.mean(ordered[-n:], axis=0)
    return peak, valley


def _db(power: np.ndarray) -> np.ndarray:
    """``librosa.power_to_db`` without its floor (applied by the caller, from every frame)."""
    return librosa.power_to_db(power, top_db=None)


def spectral_contrast(
    peak: np.ndarray, valley: np.ndarray, floors: tuple[np.floating, np.floating] | None = None
) -> np.ndarray:
    """Spectral contrast from :func:`contrast_bands`; ``floors`` (peak dB, valley dB) of the
    whole signal, or ``None``: these frames are the whole signal (exactly librosa's result)."""
    peak_db, valley_db = _db(peak), _db(valley)
    peak_floor, valley_floor = floors or (peak_db.max() - TOP_DB, valley_db.max() - TOP_DB)
    return np.maximum(peak_db, peak_floor) - np.maximum(valley_db, valley_floor)


@dataclass(frozen=True)
class Calibration:
    """What the frames of a signal share, measured over all of it: the CQT's tuning,
    chroma_stft's tuning, and the dB floors of the MFCCs' mel spectrogram and of spectral
    contrast's peaks and valleys (``None``: the frames' own maximum minus :data:`TOP_DB`,
    as ``power_to_db`` does when the frames are the whole signal)."""

    tuning: float
    stft_tuning: float
    mel_floor: np.floating | None = None
    contrast_floors: tuple[np.floating, np.floating] | None = None


class Calibrating:
    """:class:`Calibration` of a signal from the STFT frames of its blocks, one block at a time."""

    def __init__(self, sr: float) -> None:
        self.sr = sr
        self._peaks: list[tuple[np.ndarray, np.ndarray]] = []
        self._stft_peaks: list[tuple[np.ndarray, np.ndarray]] = []
        self._db_max: list[tuple[np.floating, ...]] = []  # per block: mel, contrast peak, valley

    def add(self, spec: np.ndarray) -> None:
        """Take in a block's STFT magnitude frames (only the block's own frames)."""
        power = spec * spec
        self._peaks.append(tuning_candidates(spec, self.sr))
        self._stft_peaks.append(tuning_candidates(power, FMA_SPECTRAL_SR))
        with _quiet():
            mel = librosa.feature.melspectrogram(S=power, sr=self.sr)
        self._db_max.append(tuple(_db(x).max() for x in (mel, *contrast_bands(spec))))

    def result(self) -> Calibration:
        if not self._db_max:
            raise FeatureError("the signal is empty (0 frames)")
        tunings = [
            tuning_from(*(np.concatenate(part) for part in zip(*peaks, strict=True)))
            for peaks in (self._peaks, self._stft_peaks)
        ]
        mel, peak, valley = (max(column) - TOP_DB for column in zip(*self._db_max, strict=True))
        return Calibration(tunings[0], tunings[1], mel, (peak, valley))


def _stft(y: np.ndarray) -> np.ndarray:
    with _quiet():
        return np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))


def piece_frames(y: np.ndarray, sr: float, spec: np.ndarray, cal: Calibration) -> dict[str, np.ndarray]:
    """Frame matrices of one piece of a signal from its STFT magnitude ``spec`` and one CQT.

    Every feature but chroma_cqt, chroma_cens and tonnetz, which :func:`finish_frames`
    makes from ``"chroma"``: the CQT's chroma before normalisation.
    """
    with _quiet():
        n_bins = cqt_bins(sr, cal.tuning)
        cqt = np.abs(
            librosa.cqt(
                y, sr=sr, hop_length=HOP, n_bins=n_bins, bins_per_octave=BINS_PER_OCTAVE, tuning=cal.tuning
            )
        )
        frames = {
            "zcr": zero_crossing_rate(y),
            "chroma": librosa.feature.chroma_cqt(C=cqt, n_chroma=N_CHROMA, bins_per_octave=12, norm=None),
        }
        del cqt
        power = spec * spec
        db = _db(librosa.feature.melspectrogram(S=power, sr=sr))
        floor = db.max() - TOP_DB if cal.mel_floor is None else cal.mel_floor
        frames |= spectral_shape(spec) | {
            "chroma_stft": librosa.feature.chroma_stft(S=power, sr=FMA_SPECTRAL_SR, tuning=cal.stft_tuning),
            "rmse": _fma_rmse(spec),
            "spectral_contrast": spectral_contrast(*contrast_bands(spec), cal.contrast_floors),
            "mfcc": librosa.feature.mfcc(S=np.maximum(db, floor), n_mfcc=N_MFCC),
        }
    return frames


def finish_frames(frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`piece_frames` of a whole signal -> every feature's frame matrix.

    chroma_cqt, chroma_cens and tonnetz from the un-normalised chroma: a 12-bin input at
    12 bins per octave from C1 maps one-to-one onto the 12 chroma, so librosa's own
    functions on it give exactly what they give on the CQT.
    """
    out = {name: rows for name, rows in frames.items() if name != "chroma"}
    with _quiet():
        cens = librosa.feature.chroma_cens(C=frames["chroma"], n_chroma=N_CHROMA, bins_per_octave=12)
        out |= {
            "chroma_cqt": librosa.feature.chroma_cqt(
                C=frames["chroma"], n_chroma=N_CHROMA, bins_per_octave=12
            ),
            "chroma_cens": cens,
            "tonnetz": librosa.feature.tonnetz(chroma=cens),
        }
    return out


def feature_frames(y: np.ndarray, sr: float) -> dict[str, np.ndarray]:
    """Every feature's frame matrix from one STFT and one CQT of a mono signal."""
    spec = _stft(y)
    # What librosa.cqt(tuning=None) estimates from y: piptrack on this very STFT.
    cal = Calibration(estimate_tuning(spec, sr), estimate_tuning(spec * spec, FMA_SPECTRAL_SR))
    return finish_frames(piece_frames(y, sr, spec, cal))


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


@dataclass(frozen=True)
class Analysis:
    """The features of one file and what was analysed: ``offset_s`` and ``duration_s`` of
    the excerpt in a ``track_s``-long file; ``decoded`` samples in all (every piece with its
    margins, both passes of a long excerpt; not the decoder's pre-roll), at most
    ``largest_piece`` of them at once."""

    features: np.ndarray
    sample_rate: int
    track_s: float
    offset_s: float
    duration_s: float
    decoded: int
    largest_piece: int


def _decoded(path: Path, y: np.ndarray) -> np.ndarray:
    """``y`` if it holds finite samples, else the :class:`AudioDecodeError` of ``path``."""
    if y.size == 0:
        raise AudioDecodeError(f"{path}: decodes to 0 samples; the file is truncated or empty")
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError(f"{path}: decoded samples are not finite; the file is corrupt")
    return y


class _Blocks:
    """The blocks of samples ``start .. start + length`` of a file, each decoded with up to
    ``margin`` samples of context either side; yields ``(samples, first, stop)``: the piece
    and which of its frames are the block's own (``stop`` None: to the end)."""

    def __init__(self, path: Path, start: int, length: int, block: int, margin: int) -> None:
        self.path, self.start, self.length, self.block, self.margin = path, start, length, block, margin
        self.decoded = self.largest = 0
        self.short = False  # the file ended before the header said

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, int | None]]:
        at = 0
        while at < self.length:
            first, stop = max(0, at - self.margin), min(self.length, at + self.block + self.margin)
            y = _decoded(self.path, read_mono(self.path, self.start + first, stop - first))
            self.decoded += y.size
            self.largest = max(self.largest, y.size)
            if y.size < stop - first:  # an MP3 header's length is an estimate
                self.length, self.short = first + y.size, True
                if at >= self.length:
                    return
            last = at + self.block >= self.length
            yield y, (at - first) // HOP, None if last else (at + self.block - first) // HOP
            at += self.block


def _analyse_blocks(blocks: _Blocks, sr: float) -> np.ndarray:
    """Features of a long signal, block by block in two passes (see the module docstring)."""
    calibrating = Calibrating(sr)
    for y, first, stop in blocks:
        calibrating.add(_stft(y)[:, first:stop])
    cal = calibrating.result()
    parts: list[dict[str, np.ndarray]] = []
    for y, first, stop in blocks:
        frames = piece_frames(y, sr, _stft(y), cal)
        parts.append({name: rows[:, first:stop].copy() for name, rows in frames.items()})
        del frames
    joined = {name: np.concatenate([part.pop(name) for part in parts], axis=1) for name in list(parts[0])}
    return assemble(finish_frames(joined))


def analyse_file(path: str | os.PathLike[str], excerpt_s: float, *, block_hops: int = BLOCK_HOPS) -> Analysis:
    """The 518 features of ``excerpt_s`` seconds from the middle of an audio file (FMA's clip
    rule, :func:`etl.audio.excerpt_window`; 0: the whole file), in bounded memory.

    An excerpt of up to ``block_hops`` hops plus margins is decoded in one piece, a longer
    one in blocks of ``block_hops`` hops (see the module docstring). Raises
    :class:`AudioDecodeError` for a missing, empty, corrupt or non-audio file and
    :class:`FeatureError` when the samples give no finite features.
    """
    p = Path(path)
    info = probe(p)
    sr = info.sample_rate
    _check_rate(sr)
    start, length = excerpt_window(info.frames, sr, excerpt_s)
    block, margin = block_hops * HOP, math.ceil(MARGIN_S * sr / HOP) * HOP
    if length <= block + 2 * margin:
        y = _decoded(p, read_mono(p, start, length))
        track = start + y.size if y.size < length else info.frames
        return Analysis(extract_signal(y, sr), sr, track / sr, start / sr, y.size / sr, y.size, y.size)
    blocks = _Blocks(p, start, length, block, margin)
    features = _analyse_blocks(blocks, float(sr))
    track = start + blocks.length if blocks.short else info.frames
    return Analysis(features, sr, track / sr, start / sr, blocks.length / sr, blocks.decoded, blocks.largest)


def extract_file(path: str | os.PathLike[str], excerpt_s: float = 0.0) -> np.ndarray:
    """The 518 float32 features of one audio file (or of its excerpt: :func:`analyse_file`)."""
    return analyse_file(path, excerpt_s).features
