"""The model registry: versioned model files, their ``models`` documents, and the current model.

Sources: a fitted model from :mod:`streaming_jobs.model.kmeans` (PipelineModel + numpy
export), its evaluation, and the ``tracks`` collection (when promoting). Destinations:

* files under ``settings.models_path``::

      <version>/pipeline/          Spark PipelineModel (StandardScaler -> PCA -> KMeans)
      <version>/export.json        numpy twin (schemas.cluster_model.ClusterModel)
      <version>/assignments.npz    cluster of every track at training time (-1 = left out)
      <version>/projection.npz     sample of tracks in the first two PCA components (report)
      <version>/catalogue.npz      every track's cluster, PCA coordinates and public fields,
                                   with the track topics' offsets it covers (cold starts:
                                   schemas.catalogue_snapshot, streaming_jobs.model.snapshot)
      current                      one line: the current version

* one ``models`` document per version (:class:`schemas.documents.ModelDoc`), exactly one
  with ``current: true``;
* ``cluster`` and ``model_version`` of every track when a model is promoted (bulk
  ``UpdateOne`` by ``_id`` in batches; tracks without usable features get ``cluster:
  null``). Promotion writes the training's assignments first, then the catalogue
  snapshot (one scan of ``tracks``, which also finds the tracks added since training:
  their clusters are written next), then flips ``current`` (others false, then this one
  true), then the pointer file, so "current" always means "tracks done" (and, unless it
  could not be written, "snapshot there").

Bounded: after a promotion, :func:`prune` deletes the files and ``models`` document of
every version but the current one and the ``model_keep`` newest others (rollback
targets). The current version (its ``models`` flag or the pointer file) is never
deleted, nor a version whose files live outside ``settings.models_path``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray
from pymongo import DESCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import PyMongoError

from infra.mongo import Doc
from infra.settings import Settings
from schemas.cluster_model import CURRENT_FILE, EXPORT_FILE, ClusterModel, ClusterModelError, current_version
from schemas.documents import ModelDoc, new_id
from streaming_jobs.errors import ModelNotFoundError, RegistryError
from streaming_jobs.model.dataset import load_tracks
from streaming_jobs.model.progress import NullProgress, Progress
from streaming_jobs.model.snapshot import write_snapshot

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel


log = logging.getLogger(__name__)

MODELS: Final = "models"
TRACKS: Final = "tracks"
PIPELINE_DIR: Final = "pipeline"
ASSIGNMENTS_FILE: Final = "assignments.npz"
PROJECTION_FILE: Final = "projection.npz"
NO_CLUSTER: Final = -1


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique version id: ``20260126-094512-3fa2b1``."""
    return f"{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}-{new_id()[:6]}"


def version_dir(settings: Settings, version: str) -> Path:
    return settings.models_path / version


# --- files -------------------------------------------------------------------------------


def save_files(
    settings: Settings,
    version: str,
    pipeline: PipelineModel,
    export: ClusterModel,
    *,
    assignments: tuple[NDArray[np.int64], NDArray[np.int64]],
    projection: dict[str, NDArray[Any]],
) -> Path:
    """Write the pipeline, the export, the assignments and the projection sample."""
    directory = version_dir(settings, version)
    directory.mkdir(parents=True, exist_ok=True)
    pipeline.write().overwrite().save(str((directory / PIPELINE_DIR).resolve()))
    export.save(directory / EXPORT_FILE)
    ids, clusters = assignments
    np.savez_compressed(directory / ASSIGNMENTS_FILE, ids=ids, clusters=clusters)
    np.savez_compressed(directory / PROJECTION_FILE, **projection)  # type: ignore[arg-type]
    return directory


def load_export(doc: ModelDoc) -> ClusterModel:
    try:
        return ClusterModel.load(Path(doc.export_path))
    except ClusterModelError as err:
        raise RegistryError(f"model {doc.id}: {err}") from None


def load_pipeline(doc: ModelDoc) -> PipelineModel:
    from pyspark.ml import PipelineModel

    if not Path(doc.path).is_dir():
        raise RegistryError(f"model {doc.id}: no pipeline at {doc.path}; retrain with `cadenza model train`")
    return PipelineModel.load(str(doc.path))


def load_assignments(doc: ModelDoc) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    path = Path(doc.export_path).parent / ASSIGNMENTS_FILE
    try:
        with np.load(path) as data:
            return np.asarray(data["ids"], dtype=np.int64), np.asarray(data["clusters"], dtype=np.int64)
    except FileNotFoundError:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)


def load_projection(doc: ModelDoc) -> dict[str, NDArray[Any]]:
    path = Path(doc.export_path).parent / PROJECTION_FILE
    try:
        with np.load(path) as data:
            return {name: np.asarray(data[name]) for name in data.files}
    except FileNotFoundError:
        raise RegistryError(
            f"model {doc.id}: {path} is missing; retrain with `cadenza model train`"
        ) from None


def write_pointer(models_path: Path, version: str) -> Path:
    """``<models_path>/current`` := version (atomic replace)."""
    models_path.mkdir(parents=True, exist_ok=True)
    path = models_path / CURRENT_FILE
    tmp = path.with_name(f".{CURRENT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- the models collection -------------------------------------------------------------


def register(db: Database[Doc], doc: ModelDoc) -> None:
    try:
        db[MODELS].replace_one({"_id": doc.id}, doc.to_mongo(), upsert=True)
    except PyMongoError as err:
        raise RegistryError(f"saving model {doc.id} in database {db.name} failed ({err})") from None


def list_models(db: Database[Doc]) -> list[ModelDoc]:
    """Every registered model, newest first."""
    try:
        return [ModelDoc.model_validate(d) for d in db[MODELS].find().sort("created", DESCENDING)]
    except PyMongoError as err:
        raise RegistryError(f"reading models from database {db.name} failed ({err})") from None


def current_model(db: Database[Doc]) -> ModelDoc | None:
    try:
        doc = db[MODELS].find_one({"current": True})
    except PyMongoError as err:
        raise RegistryError(f"reading models from database {db.name} failed ({err})") from None
    return None if doc is None else ModelDoc.model_validate(doc)


def get_model(db: Database[Doc], version: str) -> ModelDoc:
    """The model ``version`` (or the current one for ``"current"``)."""
    if version == "current":
        doc = current_model(db)
        if doc is None:
            raise ModelNotFoundError(f"database {db.name} has no current model: run `cadenza model train`")
        return doc
    try:
        raw = db[MODELS].find_one({"_id": version})
    except PyMongoError as err:
        raise RegistryError(f"reading models from database {db.name} failed ({err})") from None
    if raw is None:
        raise ModelNotFoundError(f"no model {version!r} in database {db.name}: see `cadenza model list`")
    return ModelDoc.model_validate(raw)


# --- tracks ------------------------------------------------------------------------------


#: Bulk writes in flight at once while writing clusters back: FerretDB's SQLite backend
#: serialises the writes themselves but decodes and re-encodes each document on its own
#: goroutine, so a few concurrent bulk writes about double the rate on two cores.
WRITERS: Final = 4


def write_clusters(
    db: Database[Doc],
    ids: NDArray[np.int64],
    clusters: NDArray[np.int64],
    version: str,
    *,
    batch_size: int = 1000,
    on_batch: Callable[[int], None] | None = None,
    writers: int = WRITERS,
) -> int:
    """Set ``cluster`` (None for -1) and ``model_version`` on tracks, ``writers`` unordered
    bulk writes of ``batch_size`` at a time; returns matched count."""

    def write(start: int) -> int:
        ops = [
            UpdateOne(
                {"_id": int(t)},
                {"$set": {"cluster": None if c == NO_CLUSTER else int(c), "model_version": version}},
            )
            for t, c in zip(
                ids[start : start + batch_size], clusters[start : start + batch_size], strict=True
            )
        ]
        if not ops:
            return 0
        matched = db[TRACKS].bulk_write(ops, ordered=False).matched_count
        if on_batch is not None:
            on_batch(len(ops))
        return matched

    try:
        with ThreadPoolExecutor(max(1, writers), thread_name_prefix="write-clusters") as pool:
            return sum(pool.map(write, range(0, ids.size, batch_size)))
    except PyMongoError as err:
        raise RegistryError(
            f"writing clusters of model {version} to {db.name}.tracks failed ({err}); "
            f"re-run `cadenza model promote {version}`"
        ) from None


def assign_stale(db: Database[Doc], model: ClusterModel, *, batch_size: int = 1000) -> int:
    """Assign, with numpy, every track not yet labelled with ``model``'s version (tracks
    added since training, or every track of an older model); returns tracks written."""
    table = load_tracks(db, query={"model_version": {"$ne": model.version}})
    excluded = np.asarray(table.excluded_ids, dtype=np.int64)
    clusters = model.assign(table.matrix) if len(table) else np.empty(0, dtype=np.int64)
    ids = np.concatenate([table.ids, excluded])
    labels = np.concatenate([clusters, np.full(excluded.size, NO_CLUSTER, dtype=np.int64)])
    return write_clusters(db, ids, labels, model.version, batch_size=batch_size)


# --- pruning ----------------------------------------------------------------------------


def prunable(docs: list[ModelDoc], current: set[str], keep: int) -> list[ModelDoc]:
    """The versions to delete (pure): all but those in ``current`` and the ``keep`` newest
    others (by creation time, then version id, which sorts by time too)."""
    others = sorted(
        (d for d in docs if d.id not in current and not d.current),
        key=lambda d: (d.created, d.id),
        reverse=True,
    )
    return others[keep:]


def _own_directory(settings: Settings, doc: ModelDoc) -> Path | None:
    """The version's folder if it is ``<models_path>/<version>`` (both its paths inside), else None."""
    root = settings.models_path.resolve()
    directory = (root / doc.id).resolve()
    if directory.parent != root:
        return None
    for path in (doc.path, doc.export_path):
        if directory not in Path(path).resolve().parents:
            return None
    return directory


def prune(db: Database[Doc], settings: Settings, *, keep: int | None = None) -> list[str]:
    """Delete the files and ``models`` documents of old versions, keeping the current one
    (flag and pointer file) and the ``keep`` (default ``settings.model_keep``) newest
    others; return the versions deleted. A version whose files are not under
    ``settings.models_path`` (another deployment's) is left alone; a folder that cannot be
    deleted keeps its document, so the next prune tries again."""
    keep = settings.model_keep if keep is None else keep
    current = {v for v in (current_version(settings.models_path),) if v}
    own = {doc.id: (doc, path) for doc in list_models(db) if (path := _own_directory(settings, doc))}
    deleted = []
    for doc in prunable([d for d, _ in own.values()], current, keep):
        directory = own[doc.id][1]
        try:
            shutil.rmtree(directory)
        except FileNotFoundError:
            pass
        except OSError:  # left for the next prune, with its document
            continue
        try:
            db[MODELS].delete_one({"_id": doc.id, "current": {"$ne": True}})
        except PyMongoError as err:
            raise RegistryError(f"deleting old model {doc.id} from {db.name}.models failed ({err})") from None
        deleted.append(doc.id)
    return deleted


@dataclass(frozen=True)
class Promotion:
    version: str
    previous: str | None
    tracks_written: int
    tracks_caught_up: int
    pruned: tuple[str, ...] = ()  # old versions deleted (settings.model_keep)
    snapshot: Path | None = None  # the catalogue snapshot (None: it could not be written)


def promote(
    db: Database[Doc],
    settings: Settings,
    version: str,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> Promotion:
    """Make ``version`` the current model: tracks, then ``models`` flags, then the pointer;
    then :func:`prune` old versions."""
    progress = progress or NullProgress()
    doc = get_model(db, version)
    model = load_export(doc)
    previous = current_model(db)
    ids, clusters = load_assignments(doc)
    progress.stage(f"writing clusters of {doc.id} to tracks", total=int(ids.size))
    written = write_clusters(db, ids, clusters, doc.id, batch_size=batch_size, on_batch=progress.advance)
    progress.stage("writing the catalogue snapshot (cold starts)", total=int(ids.size))
    try:
        written_snapshot = write_snapshot(db, settings, model, on_batch=progress.advance)
    except RegistryError as err:  # an optimisation: readers scan tracks without it
        log.warning("promoting %s without a catalogue snapshot: %s", doc.id, err)
        snapshot: Path | None = None
        progress.stage("assigning tracks added since training (numpy)")
        caught_up = assign_stale(db, model, batch_size=batch_size)
    else:
        # The snapshot's scan placed every track: those not labelled with this model yet
        # (added since training, or left out of it) get its clusters now.
        snapshot = written_snapshot.path
        stale_ids, stale_clusters = written_snapshot.stale
        progress.stage("assigning tracks added since training (numpy)", total=int(stale_ids.size))
        caught_up = write_clusters(
            db, stale_ids, stale_clusters, doc.id, batch_size=batch_size, on_batch=progress.advance
        )
    try:
        db[MODELS].update_many({"_id": {"$ne": doc.id}, "current": True}, {"$set": {"current": False}})
        db[MODELS].update_one({"_id": doc.id}, {"$set": {"current": True}})
    except PyMongoError as err:
        raise RegistryError(
            f"promoting {doc.id} failed ({err}); re-run `cadenza model promote {doc.id}`"
        ) from None
    write_pointer(settings.models_path, doc.id)
    pruned = prune(db, settings)
    return Promotion(
        version=doc.id,
        previous=previous.id if previous is not None and previous.id != doc.id else None,
        tracks_written=written,
        tracks_caught_up=caught_up,
        pruned=tuple(pruned),
        snapshot=snapshot,
    )
