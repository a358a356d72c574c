"""Sample catalogue generator: a small FMA look-alike with real, synthesised MP3 audio.

Source: nothing but a seed. Destination: ``<directory>/fma_metadata/tracks.csv`` and
``genres.csv`` in FMA's exact multi-row-header layout, and audio under
``<directory>/fma_small/<first 3 digits>/<6-digit id>.mp3``, ready for :mod:`etl.fma`,
the ETL job and the demo (``cadenza sample-data``).

Each genre has its own recipe (tempo, drum pattern, bass, lead instrument, pad, noise,
band limit), so genres differ in timbre, pitch range and rhythm: Karplus-Strong
plucked strings, drum loops, pads, bass lines, noise textures, formant "voices".
Key, tempo, melody and gain vary per track. A few tracks listed in ``tracks.csv`` have
broken audio (empty, truncated MP3, an HTML page named ``.mp3``), as in the real
archive. Everything is deterministic given ``seed``. MP3 is written by libsndfile
(bundled with soundfile); if it lacks MP3, OGG/Vorbis files are written instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from etl.errors import EtlError
from etl.fma import audio_relpath
from etl.synthetic import GENRES, render

BROKEN_KINDS = ("empty", "truncated", "text")
_WORDS = ["amber", "echo", "river", "night", "signal", "glass", "motor", "velvet", "paper", "ghost"]
_SYLLABLES = ["ka", "lo", "mi", "ra", "ne", "tu", "sa", "vo", "di", "pe", "ju", "zo", "fa", "li", "ro", "be"]


@dataclass(frozen=True)
class SampleSummary:
    """What :func:`write_sample_catalogue` wrote."""

    directory: Path
    track_ids: tuple[int, ...]
    broken_ids: tuple[int, ...]
    genres: tuple[str, ...]
    audio_format: str
    sample_rate: int
    channels: int
    duration_s: float
    bytes_written: int
    elapsed_s: float


def audio_format() -> str:
    """``"mp3"`` when this libsndfile can encode MP3, else ``"ogg"``."""
    return "mp3" if "MP3" in sf.available_formats() else "ogg"


# --- metadata (pure) -------------------------------------------------------------------


def _name(rng: np.random.Generator, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES, size=parts)).capitalize()


def _track_ids(n: int, rng: np.random.Generator) -> list[int]:
    """FMA-like ids: start at 2, irregular gaps, at most 6 digits."""
    gaps = rng.integers(1, 12, size=n)
    return [int(i) for i in 1 + np.cumsum(gaps)]


def tracks_frame(
    ids: list[int], genre_of: list[int], duration_s: float, rng: np.random.Generator
) -> pd.DataFrame:
    """``tracks.csv`` rows with FMA's 52 columns under the two-level header."""
    rows = []
    n_artists = max(4, len(ids) // 6)
    artists = [
        f"{_name(rng, 2)} {_name(rng, 2)}" if i % 3 else f"The {_name(rng, 3)}, {_name(rng, 2)} & Co"
        for i in range(n_artists)
    ]
    for tid, g in zip(ids, genre_of, strict=True):
        gid, title = GENRES[g][:2]
        sub = 2000 + g
        genres = [gid] if rng.random() < 0.5 else [sub]
        a = int(rng.integers(n_artists))
        album_id = a * 3 + int(rng.integers(3))
        words = " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 4)))).title()
        created = f"2008-{1 + a % 12:02d}-{1 + tid % 28:02d} 0{tid % 10}:4{a % 10}:12"
        missing = rng.random() < 0.15
        rows.append(
            {
                **{("album", c): v for c, v in _album(rng, album_id, a, created, missing).items()},
                **{("artist", c): v for c, v in _artist(rng, a, artists[a], created).items()},
                ("set", "split"): rng.choice(["training"] * 8 + ["validation", "test"]),
                ("set", "subset"): "small",
                **{
                    ("track", c): v
                    for c, v in {
                        "bit_rate": int(rng.choice([128000, 256000, 320000])),
                        "comments": 0,
                        "composer": np.nan,
                        "date_created": created,
                        "date_recorded": np.nan,
                        "duration": round(duration_s),
                        "favorites": int(rng.integers(0, 20)),
                        "genre_top": title,
                        "genres": str(genres),
                        "genres_all": str(sorted({gid, *genres})),
                        "information": np.nan
                        if missing
                        else f'<p>Recorded live, take {tid % 5}. "{words}"</p>',
                        "interest": int(rng.integers(50, 5000)),
                        "language_code": np.nan if missing else "en",
                        "license": "Attribution-NonCommercial-ShareAlike 3.0 International",
                        "listens": int(rng.integers(10, 3000)),
                        "lyricist": np.nan,
                        "number": int(rng.integers(1, 12)),
                        "publisher": np.nan,
                        "tags": "[]" if missing else str([title.lower()]),
                        "title": f"{words} No. {tid % 97}",
                    }.items()
                },
            }
        )
    frame = pd.DataFrame(rows, index=pd.Index(ids, name="track_id"))
    frame = frame[sorted(frame.columns)]
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def _album(rng: np.random.Generator, album_id: int, a: int, created: str, missing: bool) -> dict[str, object]:
    return {
        "comments": 0,
        "date_created": created,
        "date_released": np.nan if missing else created[:10],
        "engineer": np.nan,
        "favorites": int(rng.integers(0, 5)),
        "id": album_id,
        "information": "<p>Songs, sketches and demos.</p>",
        "listens": int(rng.integers(100, 50000)),
        "producer": np.nan,
        "tags": "[]",
        "title": np.nan if missing else f"{_name(rng, 2)} Sessions, Vol. {album_id % 4 + 1}",
        "tracks": int(rng.integers(3, 15)),
        "type": "Album",
    }


def _artist(rng: np.random.Generator, a: int, name: str, created: str) -> dict[str, object]:
    return {
        "active_year_begin": np.nan,
        "active_year_end": np.nan,
        "associated_labels": np.nan,
        "bio": f"<p>{name} plays, sings, and records at home.</p>",
        "comments": 0,
        "date_created": created,
        "favorites": int(rng.integers(0, 50)),
        "id": a + 1,
        "latitude": np.nan,
        "location": np.nan if a % 2 else "Lausanne, Switzerland",
        "longitude": np.nan,
        "members": np.nan,
        "name": name,
        "related_projects": np.nan,
        "tags": str([name.split(maxsplit=1)[0].lower()]),
        "website": f"http://example.org/{a + 1}",
        "wikipedia_page": np.nan,
    }


def genres_frame(n_genres: int, counts: dict[int, int]) -> pd.DataFrame:
    """``genres.csv``: the top-level genres used, each with one sample sub-genre (ids 2000+)."""
    rows = []
    for g in range(n_genres):
        gid, title, sub = GENRES[g][:3]
        rows.append((gid, counts.get(gid, 0), 0, title, gid))
        rows.append((2000 + g, counts.get(2000 + g, 0), gid, sub, gid))
    frame = pd.DataFrame(rows, columns=["genre_id", "#tracks", "parent", "title", "top_level"])
    return frame.set_index("genre_id").sort_index()


# --- audio (IO) ------------------------------------------------------------------------


def _encode(path: Path, y: np.ndarray, sr: int, fmt: str) -> None:
    subtype = "MPEG_LAYER_III" if fmt == "mp3" else "VORBIS"
    sf.write(path, y, sr, format=fmt.upper(), subtype=subtype)


def _write_track(job: tuple[Path, int, int, int, float, int, int, str]) -> int:
    path, seed, track_id, genre, duration_s, sr, channels, fmt = job
    rng = np.random.default_rng([seed, track_id])
    mono = render(genre, duration_s, sr, rng)
    if channels == 2:
        delay = int(0.011 * sr)
        right = 0.85 * mono + 0.15 * np.concatenate([np.zeros(delay, np.float32), mono])[: mono.size]
        y = np.stack([mono, right.astype(np.float32)], axis=1)
    else:
        y = mono
    path.parent.mkdir(parents=True, exist_ok=True)
    _encode(path, y, sr, fmt)
    return path.stat().st_size


def _write_broken(path: Path, kind: str, sr: int, fmt: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        _encode(path, (0.3 * np.sin(np.arange(sr) * 0.05)).astype(np.float32), sr, fmt)
        path.write_bytes(path.read_bytes()[:600])  # past the header, before the first full frame
    else:
        path.write_text("<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n")
    return path.stat().st_size


def write_sample_catalogue(
    directory: Path | str,
    tracks: int = 400,
    genres: int = 8,
    seed: int = 0,
    *,
    duration_s: float = 30.0,
    sample_rate: int = 22050,
    channels: int = 1,
    broken: int = 3,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SampleSummary:
    """Write ``tracks`` playable tracks plus ``broken`` broken ones in FMA's layout.

    ``genres`` (1..16) top-level genres are used round-robin, the first eight being
    fma_small's. FMA's own clips are 30 s, 44.1 kHz stereo (``sample_rate=44100,
    channels=2``); the default 22.05 kHz mono encodes about four times faster.
    ``workers`` > 1 encodes in that many processes. ``progress(done, total)`` is called
    after each file. Existing files are overwritten.
    """
    if not 1 <= genres <= len(GENRES):
        raise EtlError(f"genres must be between 1 and {len(GENRES)}, got {genres}")
    if tracks < 1 or broken < 0 or duration_s <= 0 or channels not in (1, 2):
        raise EtlError("need tracks >= 1, broken >= 0, duration_s > 0 and channels 1 or 2")
    started = time.perf_counter()
    root = Path(directory)
    fmt = audio_format()
    rng = np.random.default_rng(seed)
    ids = _track_ids(tracks + broken, rng)
    bad = sorted(int(i) for i in rng.choice(ids, size=broken, replace=False))  # scattered, as in FMA
    good = sorted(set(ids) - set(bad))
    genre = dict(zip(good, (int(g) for g in rng.permutation(np.arange(tracks) % genres)), strict=True))
    genre |= {t: int(rng.integers(genres)) for t in bad}
    genre_of = [genre[t] for t in ids]
    frame = tracks_frame(ids, genre_of, duration_s, rng)
    meta = root / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    frame.to_csv(meta / "tracks.csv")
    counts: dict[int, int] = {}
    for cell in frame[("track", "genres_all")]:
        for gid in _ids_of(cell):
            counts[gid] = counts.get(gid, 0) + 1
    genres_frame(genres, counts).to_csv(meta / "genres.csv")

    path_of = {tid: root / audio_relpath(tid, "fma_small", f".{fmt}") for tid in ids}
    jobs = [(path_of[t], seed, t, genre[t], duration_s, sample_rate, channels, fmt) for t in good]
    total = len(ids)
    size = sum(_write_broken(path_of[t], BROKEN_KINDS[i % 3], sample_rate, fmt) for i, t in enumerate(bad))
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
            for done, written in enumerate(pool.map(_write_track, jobs, chunksize=4), len(bad) + 1):
                size += written
                if progress:
                    progress(done, total)
    else:
        for done, job in enumerate(jobs, len(bad) + 1):
            size += _write_track(job)
            if progress:
                progress(done, total)
    return SampleSummary(
        directory=root,
        track_ids=tuple(good),
        broken_ids=tuple(bad),
        genres=tuple(GENRES[g][1] for g in range(genres)),
        audio_format=fmt,
        sample_rate=sample_rate,
        channels=channels,
        duration_s=duration_s,
        bytes_written=size + sum(os.path.getsize(meta / f) for f in ("tracks.csv", "genres.csv")),
        elapsed_s=time.perf_counter() - started,
    )


def _ids_of(cell: str) -> list[int]:
    """Our own ``str(list_of_ints)`` cells back to ints."""
    return [int(x) for x in cell.strip("[]").split(",") if x.strip()]
