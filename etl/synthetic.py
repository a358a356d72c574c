"""Synthetic data with genre structure: audio clips and feature matrices (pure, no IO).

Source: a seed. Destinations: :func:`render` makes the audio that
:mod:`etl.sample_data` encodes into the sample catalogue; :func:`synthetic_features`
makes ``(n, 518)`` float32 matrices in :data:`schemas.features.FEATURE_COLUMNS` order
for scale tests of the model (``streaming_jobs``) without any audio.

Audio: every genre of :data:`GENRES` has a :class:`Recipe` (tempo, drum pattern, bass,
lead instrument and register, pad, noise texture, scale, band limit), so genres differ
in timbre, pitch range and rhythm. Instruments: Karplus-Strong plucked strings (and a
buzzing "sitar"), additive piano, electric piano, detuned saws, distorted power chords,
bowed strings, formant voices and speech, kick/snare/hat/ride/hand-drum one-shots,
noise textures with glitches, crackle and hiss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import signal

from schemas.features import FEATURE_SIZES, FEATURE_TRIPLES, N_FEATURES, STATISTICS


@dataclass(frozen=True)
class Recipe:
    """How a genre sounds. ``bpm`` 0 means no grid (textures, speech)."""

    bpm: float
    drums: str = "none"
    bass: str = "none"
    lead: str = "none"
    register: int = 60
    pad: float = 0.0
    noise: float = 0.0
    scale: tuple[int, ...] = (0, 2, 4, 5, 7, 9, 11)
    step: int = 2
    band: tuple[float, float] | None = None


_MINOR: Final = (0, 2, 3, 5, 7, 8, 10)
_PENTA: Final = (0, 3, 5, 7, 10)
#: (FMA top-level genre id, title, sample sub-genre title, recipe); first 8 = fma_small's.
GENRES: Final[tuple[tuple[int, str, str, Recipe], ...]] = (
    (15, "Electronic", "Techno", Recipe(126, "four", "saw", "saw", 64, 0.3, 0.0, _MINOR, 2)),
    (38, "Experimental", "Noise", Recipe(0, noise=1.0)),
    (17, "Folk", "Free-Folk", Recipe(96, lead="pluck", register=55, step=1)),
    (21, "Hip-Hop", "Rap", Recipe(88, "boombap", "sub", "speech", 45, 0.0, 0.0, _MINOR, 1)),
    (1235, "Instrumental", "Ambient", Recipe(66, lead="piano", register=62, pad=0.7, step=4)),
    (
        2,
        "International",
        "Indian",
        Recipe(100, "hand", "none", "sitar", 62, 0.3, 0.0, (0, 1, 4, 5, 7, 8, 11)),
    ),
    (10, "Pop", "Synth-Pop", Recipe(116, "pop", "saw", "voice", 60, 0.35, 0.0, step=2)),
    (12, "Rock", "Punk", Recipe(150, "rock", "saw", "power", 40, 0.0, 0.0, _PENTA, 2)),
    (3, "Blues", "Delta Blues", Recipe(74, "shuffle", "walk", "pluck", 50, 0.0, 0.0, (0, 3, 5, 6, 7, 10), 3)),
    (5, "Classical", "Chamber Music", Recipe(60, lead="strings", register=55, pad=0.4, step=4)),
    (9, "Country", "Bluegrass", Recipe(112, "country", "walk", "pluck", 62, step=1)),
    (13, "Easy Listening", "Lounge", Recipe(84, "brush", "sub", "epiano", 72, 0.6, 0.0, step=4)),
    (4, "Jazz", "Bebop", Recipe(160, "ride", "walk", "piano", 60, 0.0, 0.0, (0, 2, 3, 5, 7, 9, 10), 3)),
    (8, "Old-Time / Historic", "78 rpm", Recipe(104, lead="piano", register=60, noise=0.3, band=(300, 3000))),
    (14, "Soul-RnB", "Funk", Recipe(78, "boombap", "saw", "voice", 55, 0.5, 0.0, _MINOR, 2)),
    (20, "Spoken", "Poetry", Recipe(0, lead="speech", register=45, noise=0.05)),
)

_PATTERNS: Final[dict[str, dict[str, str]]] = {
    "four": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "..x...x...x...x."},
    "pop": {"kick": "x.......x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "rock": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "xxxxxxxxxxxxxxxx"},
    "boombap": {"kick": "x......x..x.....", "snare": "....x.......x...", "hat": "x...x...x...x..."},
    "hand": {"tabla": "x..x..x.x.x..x.x"},
    "shuffle": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "x..x.xx..x.xx..x"},
    "country": {"kick": "x.......x.......", "snare": "....x.......x..."},
    "ride": {"ride": "x...x..xx...x..x", "kick": "x..............."},
    "brush": {"hat": "x.x.x.x.x.x.x.x."},
}
_VOWELS: Final = ((800, 1150, 2900), (400, 1600, 2700), (270, 2290, 3010), (450, 800, 2830), (325, 700, 2530))


def _hz(midi: float) -> float:
    return float(440.0 * 2.0 ** ((midi - 69) / 12))


def _filt(x: np.ndarray, sr: int, kind: str, freq: float | tuple[float, float], order: int = 2) -> np.ndarray:
    """Butterworth filter; cut-offs are clamped below Nyquist."""
    nyq = 0.45 * sr
    f = tuple(min(max(v, 20.0), nyq) for v in freq) if isinstance(freq, tuple) else min(freq, nyq)
    sos = signal.butter(order, f, btype=kind, fs=sr, output="sos")
    return np.asarray(signal.sosfilt(sos, x))


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _saw(f: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    phase = np.cumsum(np.broadcast_to(np.asarray(f, dtype=np.float64), (n,))) / sr
    return 2.0 * (phase % 1.0) - 1.0


def _pluck(f: float, n: int, sr: int, rng: np.random.Generator, decay: float = 0.996) -> np.ndarray:
    """Karplus-Strong: a noise burst circulating in a damped delay line of one period."""
    p = max(2, round(sr / f))
    y = np.zeros(n + p + 1)
    y[1 : p + 1] = rng.uniform(-1, 1, p)
    for start in range(p + 1, n + p + 1, p):
        end = min(start + p, n + p + 1)
        y[start:end] = decay * 0.5 * (y[start - p : end - p] + y[start - p - 1 : end - p - 1])
    return y[p + 1 :]


def _voice(f0: float, n: int, sr: int, rng: np.random.Generator, speech: bool) -> np.ndarray:
    """Glottal sawtooth through three vowel formants; speech adds a falling contour and a consonant."""
    t = _t(n, sr)
    contour = (
        f0 * (1 - 0.25 * t / max(t[-1], 1e-3)) if speech else f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    )
    src = _saw(contour, n, sr)
    vowel = _VOWELS[int(rng.integers(len(_VOWELS)))]
    y = np.zeros(n)
    for k, fm in enumerate(vowel):
        y += _filt(src, sr, "bandpass", (fm * 0.92, fm * 1.08)) / (k + 1)
    env = np.minimum(1.0, t / 0.02) * np.minimum(1.0, (t[-1] - t) / 0.04 + 1e-3)
    if speech:
        burst = min(n, int(0.03 * sr))
        y[:burst] += 0.5 * _filt(rng.standard_normal(burst), sr, "highpass", 3000.0)
    return np.asarray(y * env)


def _instrument(kind: str, midi: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    f, t = _hz(midi), _t(n, sr)
    if kind in ("pluck", "sitar"):
        y = _pluck(f, n, sr, rng, 0.998 if kind == "sitar" else 0.995)
        return np.tanh(3 * y) if kind == "sitar" else y
    if kind == "piano":
        return np.sum(
            [np.sin(2 * np.pi * k * f * t) / k * np.exp(-t * (1.5 + k)) for k in range(1, 7)], axis=0
        )
    if kind == "epiano":
        return (
            (np.sin(2 * np.pi * f * t) + 0.2 * np.sin(4 * np.pi * f * t))
            * np.exp(-2 * t)
            * (1 + 0.3 * np.sin(10 * np.pi * t))
        )
    if kind == "saw":
        y = _saw(f, n, sr) + _saw(f * 1.006, n, sr)
        return _filt(y, sr, "lowpass", 2500.0) * np.exp(-t * 3) * np.minimum(1, t / 0.005)
    if kind == "power":
        y = _saw(f, n, sr) + _saw(1.5 * f, n, sr) + 0.5 * _saw(2 * f, n, sr)
        return _filt(np.tanh(5 * y), sr, "lowpass", 3500.0) * np.minimum(1, t / 0.003)
    if kind == "strings":
        vib = f * (1 + 0.004 * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(vib) / sr
        y = np.sum([np.sin(k * phase) / k for k in range(1, 9)], axis=0)
        return y * np.minimum(1, t / 0.15) * np.minimum(1, (t[-1] - t) / 0.1 + 1e-3)
    if kind in ("voice", "speech"):
        return _voice(f, n, sr, rng, kind == "speech")
    if kind == "bass-saw":
        return _filt(_saw(f, n, sr), sr, "lowpass", 400.0) * np.exp(-t * 4)
    if kind == "bass-sub":
        return np.tanh(1.5 * np.sin(2 * np.pi * f * t)) * np.exp(-t * 1.5)
    if kind == "bass-walk":
        return (np.sin(2 * np.pi * f * t) + 0.2 * np.sin(6 * np.pi * f * t)) * np.exp(-t * 5)
    raise ValueError(f"unknown instrument {kind!r}")


def _drum(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int((0.6 if kind == "ride" else 0.35) * sr)
    t, noise = _t(n, sr), rng.standard_normal(n)
    if kind == "kick":
        return np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-t * 30)) / sr) * np.exp(-t * 8)
    if kind == "snare":
        tone = 0.4 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 25)
        return 0.6 * _filt(noise, sr, "bandpass", (1500.0, 6000.0)) * np.exp(-t * 20) + tone
    if kind == "hat":
        return 0.3 * _filt(noise, sr, "highpass", 0.3 * sr) * np.exp(-t * 60)
    if kind == "ride":
        metal = sum(np.sin(2 * np.pi * min(fm, 0.44 * sr) * t) for fm in (3120.0, 4150.0, 5470.0))
        return 0.2 * (_filt(noise, sr, "highpass", 0.25 * sr) + 0.3 * metal) * np.exp(-t * 5)
    f = rng.uniform(180, 420)  # tabla-like hand drum with a falling pitch
    return np.sin(2 * np.pi * np.cumsum(f * (1 + 0.3 * np.exp(-t * 20))) / sr) * np.exp(-t * 12)


def _texture(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Noise bands under slow random swells, plus glitch bursts and sine sweeps."""
    knots = np.linspace(0, n, max(3, n // sr + 2))
    y = np.zeros(n)
    for lo in rng.uniform(100, 0.3 * sr, size=4):
        swell = np.interp(np.arange(n), knots, rng.uniform(0, 1, knots.size)) ** 2
        y += _filt(rng.standard_normal(n), sr, "bandpass", (lo, lo * rng.uniform(1.2, 2.0))) * swell
    for start in rng.integers(0, n, size=max(1, n // sr)):
        m = min(n - start, int(rng.uniform(0.02, 0.25) * sr))
        y[start : start + m] += np.sign(np.sin(2 * np.pi * rng.uniform(40, 2000) * _t(m, sr))) * 0.6
    m = min(n, 2 * sr)
    start = int(rng.integers(0, n - m + 1))
    y[start : start + m] += 0.4 * signal.chirp(
        _t(m, sr), rng.uniform(100, 500), m / sr, rng.uniform(1000, 0.4 * sr)
    )
    return y


def _add(buf: np.ndarray, sound: np.ndarray, at: int, gain: float = 1.0) -> None:
    end = min(buf.size, at + sound.size)
    if at < end:
        buf[at:end] += gain * sound[: end - at]


def render(genre: int, duration_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One mono float32 clip of ``GENRES[genre]`` (peak 0.3..0.9), varied by ``rng``."""
    recipe = GENRES[genre][3]
    n = max(1, int(duration_s * sr))
    buf = np.zeros(n)
    key = int(rng.integers(0, 12))
    scale = np.array(recipe.scale)
    if recipe.bpm:
        step = int(sr * 60 / (recipe.bpm * rng.uniform(0.96, 1.04)) / 4)
        kits = {k: _drum(k, sr, rng) for k in _PATTERNS.get(recipe.drums, {})}
        degree = int(rng.integers(0, len(scale)))
        for i, at in enumerate(range(0, n, step)):
            chord = (0, 5, 3, 4)[(i // 16) % 4]
            for kind, pattern in _PATTERNS.get(recipe.drums, {}).items():
                if pattern[i % 16] == "x":
                    _add(buf, kits[kind], at, 0.8)
            if recipe.bass != "none" and i % 4 == 0:
                note = 33 + key + scale[chord % len(scale)]
                _add(buf, _instrument(f"bass-{recipe.bass}", note, 4 * step, sr, rng), at, 0.6)
            if recipe.pad and i % 16 == 0:
                for d in (0, 2, 4):
                    note = recipe.register - 12 + key + scale[(chord + d) % len(scale)]
                    pad = _filt(_saw(_hz(note), 16 * step, sr), sr, "lowpass", 1200.0)
                    _add(buf, pad * np.minimum(1, _t(16 * step, sr) / 0.5), at, 0.12 * recipe.pad)
            if recipe.lead != "none" and i % recipe.step == 0 and rng.random() > 0.15:
                degree = int(np.clip(degree + rng.integers(-2, 3), 0, 2 * len(scale) - 1))
                note = recipe.register + key + 12 * (degree // len(scale)) + scale[degree % len(scale)]
                length = int(
                    recipe.step * step * (2.5 if recipe.lead in ("pluck", "sitar", "piano") else 0.9)
                )
                _add(buf, _instrument(recipe.lead, note, length, sr, rng), at, 0.5)
    elif recipe.lead == "speech":
        at = 0
        while at < n:
            for _ in range(int(rng.integers(1, 4))):
                m = int(rng.uniform(0.12, 0.28) * sr)
                _add(buf, _instrument("speech", recipe.register + key + rng.uniform(-2, 4), m, sr, rng), at)
                at += m + int(rng.uniform(0.0, 0.05) * sr)
            at += int(rng.uniform(0.15, 0.9) * sr)
    if recipe.noise:
        texture = _texture(n, sr, rng) if recipe.noise >= 0.5 else rng.standard_normal(n) * 0.3
        if recipe.band:  # old records: crackle on top of the hiss
            crackle = np.zeros(n)
            crackle[rng.integers(0, n, size=int(duration_s * 30))] = rng.uniform(-3, 3, int(duration_s * 30))
            texture = texture + crackle
        buf += recipe.noise * texture * (np.abs(buf).max() or 1.0)
    if recipe.band:
        buf = _filt(buf, sr, "bandpass", recipe.band, order=4)
    peak = np.abs(buf).max()
    return (buf * (rng.uniform(0.3, 0.9) / peak if peak > 0 else 0.0)).astype(np.float32)


# --- synthetic feature matrices --------------------------------------------------------

#: Per feature: typical frame value, spread, lower and upper bound of frame values.
_SCALES: Final[dict[str, tuple[float, float, float, float]]] = {
    "chroma_cens": (0.25, 0.08, 0.0, 1.0),
    "chroma_cqt": (0.45, 0.15, 0.0, 1.0),
    "chroma_stft": (0.45, 0.15, 0.0, 1.0),
    "mfcc": (0.0, 20.0, -np.inf, np.inf),
    "rmse": (3.0, 2.0, 0.0, np.inf),
    "spectral_bandwidth": (2000.0, 500.0, 0.0, np.inf),
    "spectral_centroid": (1800.0, 700.0, 0.0, np.inf),
    "spectral_contrast": (20.0, 6.0, 0.0, np.inf),
    "spectral_rolloff": (3800.0, 1500.0, 0.0, np.inf),
    "tonnetz": (0.0, 0.05, -1.0, 1.0),
    "zcr": (0.08, 0.04, 0.0, 1.0),
}
_LATENT: Final = 12
_CHUNK: Final = 16384


def _coefficients() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per coefficient (74): centre, spread, bounds, and its column for each statistic (7, 74)."""
    centre, spread, low, high, cols = [], [], [], [], []
    position = {triple: i for i, triple in enumerate(FEATURE_TRIPLES)}
    for name, size in FEATURE_SIZES.items():
        c, s, lo, hi = _SCALES[name]
        for i in range(size):
            if name == "mfcc":  # MFCC 1 is large and negative, 2 positive, the rest shrink
                c, s = ((-150.0, 80.0), (100.0, 30.0))[i] if i < 2 else (0.0, 20.0 / np.sqrt(i))
            centre.append(c)
            spread.append(s)
            low.append(lo)
            high.append(hi)
            cols.append([position[(name, stat, f"{i + 1:02d}")] for stat in STATISTICS])
    return (np.array(centre), np.array(spread), np.array(low), np.array(high), np.array(cols).T)


def synthetic_features(n: int, genres: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(track_ids, genre_labels, matrix)``: ``n`` fake FMA feature vectors with genre structure.

    Each genre is a centroid in a 12-dimensional latent space; a track is its genre's
    centroid plus unit noise, projected linearly to each coefficient's mean, log-std,
    skew and log-kurtosis. Statistics are consistent (std > 0, min <= median, mean <=
    max, kurtosis >= skew**2 - 2 and heavy-tailed) and on FMA's scales (MFCC 1 near
    -150, spectral centroid near 1800 Hz, chroma within [0, 1], ...). Labels are genre
    indices ``0..genres-1`` (``GENRES[i]`` names the first 16). Track ids are unique,
    increasing and at most 6 digits for n up to ~500,000. Deterministic by ``seed``.
    """
    if n < 0 or genres < 1:
        raise ValueError("need n >= 0 and genres >= 1")
    rng = np.random.default_rng(seed)
    centre, spread, low, high, cols = _coefficients()
    k = centre.size
    centroids = rng.normal(0.0, 2.5, (genres, _LATENT))
    proj = rng.normal(0.0, 1.0 / np.sqrt(_LATENT * (1 + 2.5**2)), (_LATENT, 4 * k))
    ids = 1 + np.cumsum(rng.integers(1, 3, n))
    labels = rng.integers(0, genres, n)
    out = np.empty((n, N_FEATURES), dtype=np.float32)
    positive = low >= 0
    for start in range(0, n, _CHUNK):
        g = labels[start : start + _CHUNK]
        m = g.size
        z = centroids[g] + rng.standard_normal((m, _LATENT))
        a, b, c, e = np.split(z @ proj + 0.3 * rng.standard_normal((m, 4 * k)), 4, axis=1)
        mean = np.where(positive, centre * np.exp(0.3 * a), centre + spread * a)
        std = 0.5 * spread * np.exp(0.3 * b)
        skew = 0.8 * c + 0.3
        kurt = skew**2 - 1.5 + np.exp(0.9 * e)
        median = mean - 0.25 * skew * std
        tails = np.exp(0.3 * rng.standard_normal((2, m, k)))
        lo = np.minimum(mean - std * (1.5 + tails[0]), median)
        hi = np.maximum(mean + std * (1.5 + np.abs(skew) + tails[1]), median)
        stats = {"kurtosis": kurt, "max": hi, "mean": mean, "median": median, "min": lo, "skew": skew}
        stats["std"] = std
        for row, stat in enumerate(STATISTICS):
            v = stats[stat]
            if stat in ("max", "mean", "median", "min"):  # monotone clip keeps min <= . <= max
                v = np.clip(v, low, high)
            out[start : start + m, cols[row]] = v
    return ids.astype(np.int64), labels.astype(np.int64), out
