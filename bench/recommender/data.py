"""Bench only: the synthetic load of ``bench.recommender``.

A 106,574-track catalogue in 16 clusters (random coordinates in a 40-dimensional model
space; also the catalogue of ``bench.recommender.synthetic_worker``'s worker), Zipf-distributed
plays of it encoded as the ``cadenza.plays`` records a producer sends, and a pacer that
yields them at a given rate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from recommender_stream.catalogue import Catalogue
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind

CATALOGUE, CLUSTERS, DIMS = 106_574, 16, 40
KINDS = (PlayKind.PLAY, PlayKind.PLAY, PlayKind.COMPLETE, PlayKind.SKIP, PlayKind.LIKE)


def big_catalogue(seed: int = 1) -> Catalogue:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (CLUSTERS, DIMS))
    labels = rng.integers(0, CLUSTERS, CATALOGUE)
    coords = centres[labels] + rng.normal(0, 1, (CATALOGUE, DIMS))
    cat = Catalogue(model=None, dims=DIMS)
    for i in range(CATALOGUE):
        cat.add(i + 1, int(labels[i]), coords[i], f"track {i + 1}", "bench")
    return cat


def plays(n: int, users: int, tracks: list[int], seed: int = 2) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    picks = rng.zipf(1.3, n) % len(tracks)
    out = []
    for i in range(n):
        user = f"user{rng.integers(0, users)}"
        event = PlayEvent(user_id=user, track_id=tracks[int(picks[i])], kind=KINDS[i % len(KINDS)])
        out.append((encode_key(user), encode(event)))
    return out


def paced(records: list[tuple[bytes, bytes]], rate: float) -> Iterator[tuple[bytes, bytes]]:
    """``records`` one by one, each at its time on a ``rate`` per second schedule."""
    started = time.monotonic()
    for i, record in enumerate(records):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield record
