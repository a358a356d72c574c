"""Test helpers for the extractor's tests: a music-like test signal and audio files of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}


def music(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A few decaying harmonic notes over noise: pitched, rhythmic, broadband."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.02 * rng.standard_normal(t.size)
    for k, start in enumerate(np.arange(0, seconds, 0.25)):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        env = np.where(t >= start, np.exp(-(t - start) * 6), 0.0)
        y += env * sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 6)) * (0.5 + 0.1 * (k % 3))
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def long_music(seconds: float, sr: int) -> np.ndarray:
    """:func:`music` in 4 s sections of their own notes (music() of a long signal is slow)."""
    sections = [music(4.0, sr, seed=k) for k in range(int(np.ceil(seconds / 4.0)))]
    return np.concatenate(sections)[: int(seconds * sr)]


def write_clip(path: Path, y: np.ndarray, sr: int, channels: int) -> Path:
    """``y`` as an audio file in the format of ``path``'s suffix; stereo: a second, different channel."""
    data = y if channels == 1 else np.stack([y, 0.6 * y[::-1].copy()], axis=1)
    fmt = path.suffix[1:]
    sf.write(path, data, sr, format=fmt.upper(), subtype=SUBTYPES[fmt])
    return path
