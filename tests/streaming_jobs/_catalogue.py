"""A small genre-structured synthetic catalogue of ``tracks`` documents for model tests.

Each genre is a random centre in the 518-dimensional feature space; a track is its
genre's centre plus unit noise, then every column gets its own scale and offset (as
FMA's features do: MFCCs near -150, centroids near 2000 Hz, …) and one column is
constant (zero std, which Spark's scaler maps to 0). A few documents are unusable
(missing, wrong length, null or string values, other feature set) and a few usable ones
have no ``genre_top``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymongo.database import Database

from infra.mongo import client as mongo_client
from infra.settings import Settings
from schemas.features import FEATURE_SET_VERSION, N_FEATURES

Db = Database[dict[str, Any]]

GENRES = ("Electronic", "Experimental", "Folk", "Hip-Hop", "Instrumental", "International", "Pop", "Rock")
CONSTANT_COLUMN = 7


@dataclass(frozen=True)
class Catalogue:
    docs: list[dict[str, Any]]
    bad: dict[str, int]  # exclusion reason -> count
    n_valid: int
    n_unlabelled: int


def make_catalogue(
    n_genres: int = 8, per_genre: int = 40, separation: float = 4.0, seed: int = 7, unlabelled: int = 4
) -> Catalogue:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, (n_genres, N_FEATURES))
    scales = 10.0 ** rng.uniform(-2, 3, N_FEATURES)
    offsets = rng.normal(0.0, 100.0, N_FEATURES)
    docs: list[dict[str, Any]] = []
    track_id = 1000
    for g in range(n_genres):
        x = centres[g] + rng.standard_normal((per_genre, N_FEATURES))
        x = x * scales + offsets
        x[:, CONSTANT_COLUMN] = 0.25
        for row in x:
            track_id += int(rng.integers(1, 4))
            docs.append(
                {
                    "_id": track_id,
                    "title": f"track {track_id}",
                    "genre_top": GENRES[g % len(GENRES)],
                    "features": row.tolist(),
                    "feature_set_version": FEATURE_SET_VERSION,
                }
            )
    for i in rng.choice(len(docs), size=unlabelled, replace=False):
        docs[int(i)]["genre_top"] = None
    template = docs[0]["features"]
    bad_docs: list[tuple[str, dict[str, Any]]] = [
        ("missing", {}),
        ("missing", {"features": None}),
        ("wrong_length", {"features": template[:100]}),
        ("not_finite", {"features": [*template[:-1], None]}),
        ("not_finite", {"features": [*template[:-1], "loud"]}),
        ("other_feature_set", {"features": template, "feature_set_version": "old-1"}),
    ]
    bad: dict[str, int] = {}
    for reason, fields in bad_docs:
        track_id += 1
        docs.append({"_id": track_id, "title": f"broken {track_id}", "genre_top": "Rock", **fields})
        bad[reason] = bad.get(reason, 0) + 1
    n_valid = n_genres * per_genre
    return Catalogue(docs=docs, bad=bad, n_valid=n_valid, n_unlabelled=unlabelled)


@contextmanager
def isolated_database(stack_overrides: dict[str, Any], data_dir: Path) -> Iterator[tuple[Settings, Db]]:
    """Like the ``settings``/``db`` fixtures, for module-scoped fixtures: the session's
    stack, a fresh database and data dir, dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    base = {k: v for k, v in stack_overrides.items() if k != "data_dir"}
    settings = Settings(**base, data_dir=data_dir, topic_prefix=f"t{tag}.", mongodb_db=f"t_{tag}")
    mongo = mongo_client(settings)
    try:
        yield settings, mongo[settings.mongodb_db]
    finally:
        mongo.drop_database(settings.mongodb_db)
        mongo.close()
