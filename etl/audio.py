"""Reading audio files in bounded pieces: how long a file is, which part of it to analyse, its samples.

Source: an audio file (MP3, OGG/Vorbis, FLAC, WAV; any channels and sample rate) read with
soundfile (libsndfile, which bundles mpg123 for MP3). Destination: mono float32 samples
for :mod:`etl.features`, one piece at a time, never more than the caller asked for.

- :func:`probe` reads the header only: frames, rate, channels. The frame count is
  libsndfile's: exact for WAV, FLAC, OGG and for MP3s with a Xing/LAME/Info header (what
  LAME writes); for an MP3 without one, mpg123's estimate from the bit rate (reads stop
  at that count, as a whole-file read does; a count past the real end just reads less).
- :func:`excerpt_window` is FMA's clip rule (mdeff/fma ``creation.py``, ``trim_audio``:
  ``start = duration // 2 - 15``, 30 s, only tracks longer than 30 s are cut), applied to
  the file's own length, for any excerpt length: the middle of the track; a track not
  longer than the excerpt is analysed whole.
- :func:`read_mono` decodes ``frames`` samples from ``start`` as one seek and one read,
  starting :data:`PREROLL` samples early and dropping them. Measured with libsndfile
  1.2.2 on LAME-encoded MP3s: up to ~3 MPEG frames after a seek, and after the boundary
  between two reads, can decode differently from a straight decode of the file (runs of
  zeros where the straight decode has music); decoding 8 frames early
  and reading the piece in one call gave the straight decode's samples exactly at 32 to
  48 kHz (MPEG-1), and within float32 rounding (3e-8) at 16 to 24 kHz (MPEG-2). So a
  piece is never assembled from several reads, and no piece starts cold.
- :func:`load_audio` decodes a whole file in one read (the benchmark's naive baseline).

Stereo and multi-channel audio is mixed to mono by the mean of the channels, in float32,
as librosa does. Every decoding failure is an :class:`AudioDecodeError` naming the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import soundfile as sf

from etl.errors import AudioDecodeError

#: Length of FMA's clips, the excerpt FMA's published features describe (``trim_audio``).
FMA_CLIP_S: Final = 30.0
#: Samples decoded and dropped before every piece: 8 MPEG-1 layer III frames (16 at MPEG-2).
PREROLL: Final = 8 * 1152
_DECODE_ERRORS: Final = (sf.SoundFileError, RuntimeError, ValueError, OSError)


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: ``frames`` per channel at ``sample_rate``."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _cannot_decode(path: Path) -> str:
    return (
        f"{path}: cannot decode audio: the file is corrupt, truncated or not MP3/OGG/FLAC/WAV; "
        "re-download or re-encode it"
    )


def _checked(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(f"{p}: no such file; check the FMA directory (CADENZA_FMA_DIR)")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"{p}: the file is empty (0 bytes); re-download it or skip the track")
    return p


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Frames, sample rate and channels from the header, without decoding the audio."""
    p = _checked(path)
    try:
        info = sf.info(str(p))
    except _DECODE_ERRORS as exc:
        raise AudioDecodeError(_cannot_decode(p)) from exc
    if info.frames <= 0:
        raise AudioDecodeError(f"{p}: decodes to 0 samples; the file is truncated or empty")
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


def excerpt_window(frames: int, sample_rate: int, excerpt_s: float) -> tuple[int, int]:
    """``(start, length)`` in samples of the part of a ``frames``-long track to analyse.

    ``excerpt_s`` <= 0, or a track not longer than it: the whole track. Otherwise FMA's
    clip: ``excerpt_s`` seconds from ``floor(duration / 2) - excerpt_s / 2`` seconds (for 30 s
    exactly FMA's ``duration // 2 - 15``), kept inside the track.
    """
    length = round(excerpt_s * sample_rate)
    if excerpt_s <= 0 or length <= 0 or frames <= length:
        return 0, frames
    start_s = math.floor(frames / sample_rate / 2) - excerpt_s / 2
    start = min(max(0, round(start_s * sample_rate)), frames - length)
    return start, length


def _mono(data: np.ndarray) -> np.ndarray:
    """``(n, channels)`` float32 -> contiguous mono float32 (channel mean, as librosa)."""
    y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(y, dtype=np.float32)


def read_mono(path: str | os.PathLike[str], start: int, frames: int) -> np.ndarray:
    """Mono float32 samples ``start`` to ``start + frames`` (fewer at the end of the file).

    One seek to :data:`PREROLL` samples early and one read; see the module docstring.
    """
    p = _checked(path)
    first = max(0, start - PREROLL)
    try:
        with sf.SoundFile(p) as audio:
            if first:
                audio.seek(first)
            data = audio.read(frames=start + frames - first, dtype="float32", always_2d=True)
    except _DECODE_ERRORS as exc:
        raise AudioDecodeError(_cannot_decode(p)) from exc
    return _mono(data[start - first :])


def load_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode a whole file at its native rate, mixed to mono float32 -> ``(y, sr)``.

    Memory grows with the file (a 10-minute 44.1 kHz track is 106 MB of mono samples);
    the ETL reads pieces instead (:func:`etl.features.analyse_file`).
    """
    p = _checked(path)
    try:
        with sf.SoundFile(p) as audio:  # read as librosa.load does: same samples, bit for bit
            sr = audio.samplerate
            data = audio.read(frames=-1, dtype="float32", always_2d=True)
    except _DECODE_ERRORS as exc:
        raise AudioDecodeError(_cannot_decode(p)) from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{p}: decodes to 0 samples; the file is truncated or empty")
    return _mono(data), int(sr)
