"""Import precomputed features: FMA's ``features.csv`` (or synthetic rows) -> MongoDB ``tracks``.

Sources: ``fma_metadata/features.csv`` + ``tracks.csv`` of an FMA root (read by
:mod:`etl.fma`), for people with FMA's metadata archive but not its audio
(``source="fma-features"``); or ``n`` synthetic FMA-shaped rows from
:func:`etl.synthetic.synthetic_features` with titles, artists and genre names, for
scale tests (``source="synthetic"``). Destination: the same ``tracks`` documents the
batch job writes (:class:`~schemas.documents.TrackDoc` shape, vectors packed by
:func:`schemas.vectors.pack_many`), inserted in unordered
batches from two threads, so building a batch overlaps with storing the previous one.
Rows already stored (duplicate ``_id``) are left as they are and counted. No events
are published: a bulk import seeds the catalogue that the model is trained on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from etl import writer
from etl.errors import EtlError
from etl.fma import SUBSETS, read_features, read_tracks, tracks_from_frame
from etl.synthetic import GENRES, synthetic_features
from infra.mongo import client, database, init_db, ping
from infra.settings import Settings
from schemas.events import utcnow
from schemas.features import FEATURE_SET_VERSION, N_FEATURES
from schemas.vectors import pack_many

Progress = Callable[[int, int], None]

FMA_SOURCE: Final = "fma-features"
SYNTHETIC_SOURCE: Final = "synthetic"
BATCH: Final = 500
THREADS: Final = 2


@dataclass(frozen=True)
class FeatureRows:
    """Rows to import: ids, an ``(n, 518)`` float32 matrix and per-row metadata fields."""

    ids: np.ndarray
    matrix: np.ndarray
    meta: list[dict[str, Any]]
    source: str
    not_finite: int = 0  # rows dropped: FMA could not analyse the track (NaN features)
    without_metadata: int = 0  # rows dropped: not in tracks.csv (or not in the subset)


@dataclass(frozen=True)
class ImportSummary:
    source: str
    rows: int
    stored: int
    already: int
    not_finite: int
    without_metadata: int
    elapsed_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def table_rows(self) -> list[tuple[str, str]]:
        """(label, value) lines of the end-of-run table."""
        return [
            ("source", self.source),
            ("rows offered", str(self.rows)),
            ("stored (new)", str(self.stored)),
            ("already stored", str(self.already)),
            ("dropped: non-finite features", str(self.not_finite)),
            ("dropped: no metadata / other subset", str(self.without_metadata)),
            ("rows/s", f"{self.rows_per_s:,.0f}"),
            ("elapsed", f"{self.elapsed_s:.1f} s"),
        ]


# --- rows (pure apart from reading the CSV files) --------------------------------------


def fma_rows(root: Path | str, subset: str = "full") -> FeatureRows:
    """FMA's published features of the tracks of ``subset``, with their ``tracks.csv`` metadata."""
    if subset not in SUBSETS:
        raise EtlError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    root = Path(root)
    tracks, _problems = tracks_from_frame(read_tracks(root), subset)
    table = read_features(root)
    finite = table.finite()
    by_id = {t.id: t for t in tracks}
    keep = np.array([int(i) in by_id for i in finite.track_ids], dtype=bool)
    ids = finite.track_ids[keep]
    meta = []
    for track_id in ids.tolist():
        fields = by_id[track_id].document_fields()
        del fields["id"]
        meta.append(fields)
    return FeatureRows(
        ids=ids,
        matrix=finite.matrix[keep],
        meta=meta,
        source=FMA_SOURCE,
        not_finite=len(table.track_ids) - len(finite.track_ids),
        without_metadata=int((~keep).sum()),
    )


def synthetic_rows(n: int, genres: int = 16, seed: int = 0, id_offset: int = 0) -> FeatureRows:
    """``n`` synthetic rows with genre structure, FMA-like titles, artists and genre names;
    ``id_offset`` is added to every id (to keep clear of tracks already stored: the demo's
    sample)."""
    if not 1 <= genres <= len(GENRES):
        raise EtlError(f"--genres must be between 1 and {len(GENRES)}, got {genres}")
    if n < 1:
        raise EtlError(f"--synthetic needs a positive number of rows, got {n}")
    if id_offset < 0:
        raise EtlError(f"--id-offset must not be negative, got {id_offset}")
    ids, labels, matrix = synthetic_features(n, genres=genres, seed=seed)
    ids += id_offset
    rng = np.random.default_rng([seed, 1])
    artists = rng.integers(0, max(1, n // 7), size=n)
    meta = []
    for track_id, label, artist in zip(ids.tolist(), labels.tolist(), artists.tolist(), strict=True):
        genre_id, title = GENRES[label][:2]
        meta.append(
            {
                "title": f"{title} Study No. {track_id}",
                "artist": f"Synthetic Artist {artist:05d}",
                "album": f"Synthetic Album {artist:05d}-{track_id % 3}",
                "genres": [genre_id],
                "genre_top": title,
                "duration_s": 30.0,
                "audio_path": None,
                "subset": None,
            }
        )
    return FeatureRows(ids=ids, matrix=matrix, meta=meta, source=SYNTHETIC_SOURCE)


def documents(rows: FeatureRows, start: int, stop: int) -> list[writer.Doc]:
    """``tracks`` documents of rows ``start:stop`` (the TrackDoc shape, built without pydantic)."""
    now = utcnow()
    vectors = pack_many(rows.matrix[start:stop])
    return [
        {
            "_id": track_id,
            **rows.meta[start + i],
            "features": vector,
            "feature_set_version": FEATURE_SET_VERSION,
            "source": rows.source,
            "cluster": None,
            "model_version": None,
            "updated": now,
        }
        for i, (track_id, vector) in enumerate(zip(rows.ids[start:stop].tolist(), vectors, strict=True))
    ]


# --- storing ---------------------------------------------------------------------------


def import_rows(
    settings: Settings,
    rows: FeatureRows,
    progress: Progress | None = None,
    batch: int = BATCH,
) -> ImportSummary:
    """Insert ``rows`` into ``tracks``; rows already stored are counted, not changed."""
    started = time.perf_counter()
    if rows.matrix.shape != (len(rows.ids), N_FEATURES) or len(rows.meta) != len(rows.ids):
        raise EtlError(f"feature rows are malformed: {rows.matrix.shape} for {len(rows.ids)} ids")
    total = len(rows.ids)
    mongo = client(settings)
    stored = 0
    try:
        ping(settings, mongo)
        db = database(settings, mongo)
        init_db(db)
        tracks = db[writer.TRACKS]
        done = 0
        pending: deque[tuple[int, Future[set[int]]]] = deque()
        with ThreadPoolExecutor(THREADS, thread_name_prefix="cadenza-import") as pool:
            for start in range(0, total, batch):
                docs = documents(rows, start, min(start + batch, total))
                pending.append((len(docs), pool.submit(writer.insert_new, tracks, docs)))
                while len(pending) > THREADS or (pending and start + batch >= total):
                    size, future = pending.popleft()
                    stored += len(future.result())
                    done += size
                    if progress:
                        progress(done, total)
    finally:
        mongo.close()
    return ImportSummary(
        source=rows.source,
        rows=total,
        stored=stored,
        already=total - stored,
        not_finite=rows.not_finite,
        without_metadata=rows.without_metadata,
        elapsed_s=time.perf_counter() - started,
    )


def import_fma(
    settings: Settings, root: Path | str, subset: str = "full", progress: Progress | None = None
) -> ImportSummary:
    """``features.csv`` + ``tracks.csv`` of an FMA root -> ``tracks`` (elapsed includes reading)."""
    started = time.perf_counter()
    summary = import_rows(settings, fma_rows(root, subset), progress)
    return replace(summary, elapsed_s=time.perf_counter() - started)


def import_synthetic(
    settings: Settings,
    n: int,
    genres: int = 16,
    seed: int = 0,
    *,
    progress: Progress | None = None,
    id_offset: int = 0,
) -> ImportSummary:
    """``n`` synthetic rows -> ``tracks`` (elapsed includes generating them)."""
    started = time.perf_counter()
    summary = import_rows(settings, synthetic_rows(n, genres, seed, id_offset), progress)
    return replace(summary, elapsed_s=time.perf_counter() - started)
