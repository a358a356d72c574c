"""Track id -> cluster under the current model, for the plays stream's executors.

Sources: the current model's ``assignments.npz`` (every track known at training time,
read once per model version from ``<models_path>/<version>/``) and, for ids it does
not hold (tracks that arrived later through ``cadenza.tracks.new``), the ``tracks``
collection by ``_id`` (the only indexed lookup on every MongoDB-compatible server).
Consumers: :mod:`streaming_jobs.streams.shared.play_events`, running inside Spark's Python workers.

A lookup answers, per id, a cluster (``>= 0``), :data:`UNASSIGNED` (the track exists
but has no cluster under the current model yet) or :data:`UNKNOWN` (no such track).
The pointer file ``<models_path>/current`` is checked on every call (one ``stat``), so
a promotion is picked up at the next micro-batch. Unknown ids (and stored
but unlabelled ones) are remembered for ``negative_ttl_s``, so that a flood of plays for
a bogus id costs one query every few seconds, not one per play.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from schemas.cluster_model import CURRENT_FILE, current_version
from streaming_jobs.model.registry import ASSIGNMENTS_FILE

UNASSIGNED: Final = -1
UNKNOWN: Final = -2

#: ``fetch(ids) -> {id: (cluster or None, model_version or None)}`` for the ids that exist.
Fetch = Callable[[list[int]], dict[int, tuple[int | None, str | None]]]


class TrackClusters:
    """Cached, vectorised id -> cluster lookups; see the module docstring."""

    def __init__(
        self,
        models_path: Path,
        fetch: Fetch,
        *,
        negative_ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._models_path = Path(models_path)
        self._fetch = fetch
        self._negative_ttl_s = negative_ttl_s
        self._clock = clock
        self._pointer_stamp: tuple[float, int] | None = None
        self.version: str | None = None
        self._ids: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._clusters: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._extra: dict[int, int] = {}
        self._unknown_until: dict[int, float] = {}
        self._unassigned_until: dict[int, float] = {}
        self.refresh(force=True)

    # --- model version ------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the current model pointer; reload assignments when it changed."""
        pointer = self._models_path / CURRENT_FILE
        try:
            st = pointer.stat()
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            stamp = None
        if not force and stamp == self._pointer_stamp:
            return
        self._pointer_stamp = stamp
        version = current_version(self._models_path)
        if version == self.version and not force:
            return
        self.version = version
        self._extra.clear()
        self._unknown_until.clear()
        self._unassigned_until.clear()
        self._ids, self._clusters = self._load_assignments(version)

    def _load_assignments(self, version: str | None) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        empty = np.empty(0, dtype=np.int64)
        if version is None:
            return empty, empty
        try:
            with np.load(self._models_path / version / ASSIGNMENTS_FILE) as data:
                ids = np.asarray(data["ids"], dtype=np.int64)
                clusters = np.asarray(data["clusters"], dtype=np.int64)
        except FileNotFoundError:
            return empty, empty
        order = np.argsort(ids, kind="stable")
        return ids[order], clusters[order]

    # --- lookups ------------------------------------------------------------------------

    def lookup(self, track_ids: Iterable[int] | NDArray[np.int64]) -> NDArray[np.int64]:
        """Cluster per id (or UNASSIGNED / UNKNOWN), in the order given."""
        self.refresh()
        ids = np.asarray(
            list(track_ids) if not isinstance(track_ids, np.ndarray) else track_ids, dtype=np.int64
        )
        out = np.full(ids.shape, UNKNOWN, dtype=np.int64)
        if ids.size == 0:
            return out
        if self._ids.size:
            pos = np.searchsorted(self._ids, ids)
            pos_clipped = np.minimum(pos, self._ids.size - 1)
            hit = self._ids[pos_clipped] == ids
            out[hit] = self._clusters[pos_clipped[hit]]
        else:
            hit = np.zeros(ids.shape, dtype=bool)
        misses = {int(i) for i in ids[~hit]}
        if misses:
            resolved = self._resolve(misses)
            for index in np.flatnonzero(~hit):
                out[index] = resolved.get(int(ids[index]), UNKNOWN)
        return out

    def _resolve(self, ids: set[int]) -> dict[int, int]:
        now = self._clock()
        found = {i: self._extra[i] for i in ids if i in self._extra}
        for i in ids:
            if i not in found and self._unassigned_until.get(i, 0.0) > now:
                found[i] = UNASSIGNED
        ask = sorted(i for i in ids if i not in found and self._unknown_until.get(i, 0.0) <= now)
        if ask:
            for track_id, (cluster, version) in self._fetch(ask).items():
                if cluster is not None and version is not None and version == self.version:
                    self._extra[track_id] = found[track_id] = int(cluster)
                else:  # stored, not labelled under this model yet: ask again soon
                    self._unassigned_until[track_id] = now + self._negative_ttl_s
                    found[track_id] = UNASSIGNED
            for track_id in ask:
                if track_id not in found:
                    self._unknown_until[track_id] = now + self._negative_ttl_s
        return found
