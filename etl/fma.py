"""FMA reader: the published ``fma_metadata`` files and audio layout -> plain records.

Source: an FMA root directory as downloaded (or as ``cadenza sample-data`` writes it):
``fma_metadata/tracks.csv`` (two-level header, ``read_csv(header=[0, 1], index_col=0)``),
``fma_metadata/genres.csv``, optionally ``fma_metadata/features.csv`` (three-level
header), and audio under ``fma_small/``, ``fma_medium/``, ``fma_large/`` or
``fma_full/`` as ``<subset dir>/<first 3 digits>/<6-digit id>.mp3``.
Destination: :class:`FmaTrack` records whose :meth:`FmaTrack.document_fields` map onto
:class:`schemas.documents.TrackDoc`, genres, the tracks whose audio is missing, and
FMA's precomputed features as an ``(n, 518)`` float32 matrix in
:data:`schemas.features.FEATURE_COLUMNS` order. The ETL job consumes all of these.

Pure parsing (``parse_*``, :func:`tracks_from_frame`, :func:`feature_matrix`) is
separate from file access (``read_*``, :func:`load_catalogue`).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from etl.errors import MetadataError
from schemas.features import FEATURE_TRIPLES, N_FEATURES

METADATA_DIR: Final = "fma_metadata"
#: Subsets in FMA's cumulative order: small ⊂ medium ⊂ large; ``full`` holds every track.
SUBSETS: Final = ("small", "medium", "large", "full")
#: Audio folders tried for a track, smallest (30 s clips) first.
AUDIO_DIRS: Final = ("fma_small", "fma_medium", "fma_large", "fma_full")
AUDIO_SUFFIXES: Final = (".mp3", ".ogg", ".flac", ".wav")
_RANK: Final = {name: i for i, name in enumerate(SUBSETS)}

#: ``tracks.csv`` columns the reader needs (level 0, level 1).
REQUIRED_TRACK_COLUMNS: Final = (
    ("track", "title"),
    ("artist", "name"),
    ("album", "title"),
    ("track", "genres"),
    ("track", "genre_top"),
    ("track", "duration"),
    ("set", "subset"),
)


@dataclass(frozen=True)
class Genre:
    """One row of ``genres.csv``."""

    id: int
    title: str
    parent: int
    top_level: int
    n_tracks: int = 0


@dataclass(frozen=True)
class FmaTrack:
    """One row of ``tracks.csv``, reduced to what Cadenza stores."""

    id: int
    title: str = ""
    artist: str = ""
    album: str = ""
    genres: tuple[int, ...] = ()
    genres_all: tuple[int, ...] = ()
    genre_top: str | None = None
    duration_s: float = 0.0
    subset: str | None = None
    split: str | None = None
    audio_path: str | None = None  # relative to the FMA root, posix separators

    def document_fields(self) -> dict[str, Any]:
        """Keyword arguments for :class:`schemas.documents.TrackDoc` (``id`` by name)."""
        return {
            "id": self.id,
            "title": self.title,
            "artist": self.artist,
            "album": self.album,
            "genres": list(self.genres),
            "genre_top": self.genre_top,
            "duration_s": self.duration_s,
            "audio_path": self.audio_path,
            "subset": self.subset,
        }


@dataclass
class Catalogue:
    """What :func:`load_catalogue` found under an FMA root."""

    root: Path
    tracks: list[FmaTrack]
    genres: dict[int, Genre]
    missing_audio: list[int] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (track id, what was wrong)


@dataclass(frozen=True)
class FeatureTable:
    """FMA's ``features.csv``: track ids and an ``(n, 518)`` float32 matrix.

    Rows of tracks FMA failed to analyse are all-NaN in the file and kept as such;
    :meth:`finite` drops them.
    """

    track_ids: np.ndarray  # int64, shape (n,)
    matrix: np.ndarray  # float32, shape (n, 518), FEATURE_COLUMNS order

    def finite(self) -> FeatureTable:
        keep = np.all(np.isfinite(self.matrix), axis=1)
        return FeatureTable(self.track_ids[keep], self.matrix[keep])


# --- pure parsing ----------------------------------------------------------------------


def is_missing(value: object) -> bool:
    """True for pandas' missing values (NaN, None, NA) and blank strings."""
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def parse_text(value: object) -> str:
    """A text cell, ``""`` when missing."""
    return "" if is_missing(value) else str(value).strip()


def parse_list(value: object) -> list[Any]:
    """A Python list literal cell (``"[21, 45]"``, ``"['awol']"``) -> list; missing -> [].

    Parsed with :func:`ast.literal_eval` (never ``eval``). Raises ``ValueError`` for
    anything that is not a list literal.
    """
    if is_missing(value):
        return []
    try:
        parsed = ast.literal_eval(str(value).strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a list literal: {str(value)[:60]!r}") from exc
    if not isinstance(parsed, list | tuple):
        raise ValueError(f"not a list literal: {str(value)[:60]!r}")
    return list(parsed)


def parse_ids(value: object) -> tuple[int, ...]:
    """A genre-id list cell -> tuple of ints (raises ``ValueError`` on non-integers)."""
    items = parse_list(value)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise ValueError(f"genre list holds non-integers: {str(value)[:60]!r}")
    return tuple(items)


def parse_duration(value: object) -> float:
    """Seconds as float; missing, negative or unparsable -> 0.0."""
    try:
        seconds = 0.0 if is_missing(value) else float(str(value))
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0


def audio_relpath(track_id: int, audio_dir: str = "fma_large", suffix: str = ".mp3") -> str:
    """FMA's audio path of a track: ``fma_large/000/000002.mp3`` (posix, relative)."""
    if track_id < 0 or track_id > 999_999:
        raise ValueError(f"FMA track ids have at most 6 digits, got {track_id}")
    tid = f"{track_id:06d}"
    return f"{audio_dir}/{tid[:3]}/{tid}{suffix}"


def in_subset(track_subset: str | None, wanted: str) -> bool:
    """Whether a track whose ``set.subset`` is ``track_subset`` belongs to ``wanted``.

    Cumulative: a ``small`` track is also in medium, large and full; every track is
    in ``full``.
    """
    if wanted not in _RANK:
        raise ValueError(f"unknown subset {wanted!r}; choose one of {', '.join(SUBSETS)}")
    if wanted == "full":
        return True
    return track_subset in _RANK and _RANK[track_subset] <= _RANK[wanted]


def candidate_dirs(track_subset: str | None) -> tuple[str, ...]:
    """Audio folders that can hold a track of this subset, smallest first."""
    rank = _RANK.get(track_subset or "", _RANK["full"])
    return AUDIO_DIRS[rank:]


def _check_columns(columns: Iterable[tuple[str, str]], source: str) -> None:
    present = set(columns)
    missing = [c for c in REQUIRED_TRACK_COLUMNS if c not in present]
    if missing:
        names = ", ".join(".".join(c) for c in missing)
        raise MetadataError(
            f"{source} lacks column(s) {names}; expected FMA's fma_metadata/tracks.csv "
            "(two header rows: e.g. 'track' over 'title')"
        )


def tracks_from_frame(
    frame: pd.DataFrame, subset: str = "full"
) -> tuple[list[FmaTrack], list[tuple[int, str]]]:
    """Rows of a ``tracks.csv`` frame (two-level columns) -> tracks of ``subset``.

    Returns ``(tracks, problems)``; a row whose genre lists do not parse keeps empty
    genres and is reported in ``problems`` instead of failing the whole catalogue.
    """
    if not isinstance(frame.columns, pd.MultiIndex) or frame.columns.nlevels != 2:
        raise MetadataError("tracks.csv must have a two-level header (read with header=[0, 1], index_col=0)")
    _check_columns(frame.columns, "tracks.csv")
    n = len(frame)

    def column(top: str, name: str) -> list[object]:
        return frame[(top, name)].tolist() if (top, name) in frame.columns else [None] * n

    tracks: list[FmaTrack] = []
    problems: list[tuple[int, str]] = []
    rows = zip(
        frame.index.tolist(),
        column("set", "subset"),
        column("track", "genres"),
        column("track", "genres_all"),
        column("track", "title"),
        column("artist", "name"),
        column("album", "title"),
        column("track", "genre_top"),
        column("track", "duration"),
        column("set", "split"),
        strict=True,
    )
    for raw_id, sub, genres_cell, all_cell, title, artist, album, top, duration, split in rows:
        try:
            track_id = int(str(raw_id))
        except ValueError:
            problems.append((-1, f"track id {raw_id!r} is not an integer; row skipped"))
            continue
        track_subset = parse_text(sub) or None
        if not in_subset(track_subset, subset):
            continue
        genres: tuple[int, ...] = ()
        genres_all: tuple[int, ...] = ()
        try:
            genres = parse_ids(genres_cell)
            genres_all = parse_ids(all_cell) if not is_missing(all_cell) else genres
        except ValueError as exc:
            problems.append((track_id, f"track.genres: {exc}"))
        tracks.append(
            FmaTrack(
                id=track_id,
                title=parse_text(title),
                artist=parse_text(artist),
                album=parse_text(album),
                genres=genres,
                genres_all=genres_all,
                genre_top=parse_text(top) or None,
                duration_s=parse_duration(duration),
                subset=track_subset,
                split=parse_text(split) or None,
            )
        )
    return tracks, problems


def genres_from_frame(frame: pd.DataFrame) -> dict[int, Genre]:
    """``genres.csv`` rows (index ``genre_id``) -> ``{id: Genre}``."""
    needed = {"title", "parent", "top_level"}
    if not needed <= set(frame.columns):
        raise MetadataError(
            f"genres.csv lacks column(s) {', '.join(sorted(needed - set(frame.columns)))}; "
            "expected FMA's header genre_id,#tracks,parent,title,top_level"
        )
    out: dict[int, Genre] = {}
    for raw_id, row in frame.iterrows():
        gid = int(str(raw_id))
        n = row.get("#tracks")
        out[gid] = Genre(
            id=gid,
            title=parse_text(row["title"]),
            parent=int(row["parent"]) if not is_missing(row["parent"]) else 0,
            top_level=int(row["top_level"]) if not is_missing(row["top_level"]) else gid,
            n_tracks=int(n) if n is not None and not is_missing(n) else 0,
        )
    return out


def feature_matrix(frame: pd.DataFrame) -> FeatureTable:
    """A ``features.csv`` frame (three-level columns) -> :class:`FeatureTable`.

    Columns are matched by FMA's ``(feature, statistics, number)`` triples, so their
    order in the file does not matter; all 518 must be present.
    """
    if not isinstance(frame.columns, pd.MultiIndex) or frame.columns.nlevels != 3:
        raise MetadataError(
            "features.csv must have a three-level header (feature, statistics, number); "
            "read it with header=[0, 1, 2], index_col=0"
        )
    columns = pd.MultiIndex.from_tuples([(str(f), str(s), str(n).zfill(2)) for f, s, n in frame.columns])
    frame = frame.set_axis(columns, axis=1)
    missing = [t for t in FEATURE_TRIPLES if t not in set(columns)]
    if missing:
        shown = ", ".join("/".join(t) for t in missing[:5])
        raise MetadataError(
            f"features.csv lacks {len(missing)} of {N_FEATURES} feature columns (e.g. {shown}); "
            "use FMA's fma_metadata/features.csv"
        )
    try:
        matrix = frame.loc[:, list(FEATURE_TRIPLES)].to_numpy(dtype=np.float32)
        ids = np.asarray([int(str(i)) for i in frame.index], dtype=np.int64)
    except ValueError as exc:
        raise MetadataError(f"features.csv holds a non-numeric value or track id: {exc}") from exc
    return FeatureTable(ids, matrix)


# --- IO edge ---------------------------------------------------------------------------


def metadata_path(root: Path, name: str) -> Path:
    """``<root>/fma_metadata/<name>``; ``root`` may also be the metadata folder itself."""
    root = Path(root)
    direct = root / name
    return direct if direct.is_file() and root.name == METADATA_DIR else root / METADATA_DIR / name


def _read_csv(path: Path, header: Sequence[int] | int) -> pd.DataFrame:
    if not path.is_file():
        raise MetadataError(
            f"{path} not found; point CADENZA_FMA_DIR at the folder holding fma_metadata/ "
            "(download fma_metadata.zip from FMA) or run `cadenza sample-data`"
        )
    try:
        return pd.read_csv(path, index_col=0, header=header, low_memory=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{path} is not a readable FMA CSV file: {exc}") from exc


def read_tracks(root: Path) -> pd.DataFrame:
    """``tracks.csv`` as FMA documents it: ``read_csv(header=[0, 1], index_col=0)``."""
    return _read_csv(metadata_path(root, "tracks.csv"), [0, 1])


def read_genres(root: Path) -> dict[int, Genre]:
    return genres_from_frame(_read_csv(metadata_path(root, "genres.csv"), 0))


def read_features(root: Path) -> FeatureTable:
    """FMA's precomputed ``features.csv`` as an ``(n, 518)`` float32 matrix."""
    return feature_matrix(_read_csv(metadata_path(root, "features.csv"), [0, 1, 2]))


def locate_audio(root: Path, track: FmaTrack, audio_dirs: Sequence[str] = AUDIO_DIRS) -> str | None:
    """Relative path of a track's first existing audio file, else ``None``.

    Folders are tried smallest subset first; ``.mp3`` (FMA's format) before the other
    suffixes of :data:`AUDIO_SUFFIXES` (a sample catalogue written without MP3 support).
    """
    if not 0 <= track.id <= 999_999:
        return None
    for folder in candidate_dirs(track.subset):
        if folder in audio_dirs:
            for suffix in AUDIO_SUFFIXES:
                rel = audio_relpath(track.id, folder, suffix)
                if (root / rel).is_file():
                    return rel
    return None


def load_catalogue(
    root: Path | str, subset: str = "full", audio_dirs: Sequence[str] = AUDIO_DIRS
) -> Catalogue:
    """Read an FMA root: tracks of ``subset`` with their audio located, and genres.

    Tracks whose audio is in none of ``audio_dirs`` keep ``audio_path=None`` and are
    listed in :attr:`Catalogue.missing_audio`. ``genres.csv`` is optional.
    """
    root = Path(root)
    if not root.is_dir():
        raise MetadataError(f"FMA directory {root} does not exist; set CADENZA_FMA_DIR")
    tracks, problems = tracks_from_frame(read_tracks(root), subset)
    genres_file = metadata_path(root, "genres.csv")
    genres = read_genres(root) if genres_file.is_file() else {}
    located: list[FmaTrack] = []
    missing: list[int] = []
    for track in tracks:
        rel = locate_audio(root, track, audio_dirs)
        if rel is None:
            missing.append(track.id)
        located.append(replace(track, audio_path=rel))
    return Catalogue(root=root, tracks=located, genres=genres, missing_audio=missing, problems=problems)
