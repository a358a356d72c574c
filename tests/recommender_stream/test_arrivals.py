"""New tracks kept for the next catalogue reload are bounded and forgotten once stored
(regression: every ``tracks.new`` event was kept in memory for the worker's lifetime)."""

from __future__ import annotations

import numpy as np

from recommender_stream.catalogue import Catalogue
from recommender_stream.listener import Limits
from recommender_stream.processor import Processor, Record
from schemas.codec import encode
from schemas.events import TrackEvent
from schemas.features import N_FEATURES


def processor(kept: int) -> Processor:
    return Processor(
        catalogue=Catalogue(model=None, dims=2),
        limits=Limits(10, 600.0, 50),
        k=5,
        half_life_s=600.0,
        arrivals_kept=kept,
    )


def arrive(p: Processor, track_id: int) -> None:
    event = TrackEvent(track_id=track_id, title=f"t{track_id}", features=[float(track_id)] * N_FEATURES)
    assert p.on_track(Record("tracks", 0, track_id, None, encode(event))) == []


def test_arrivals_are_capped_oldest_first() -> None:
    p = processor(kept=3)
    for track_id in range(1, 8):
        arrive(p, track_id)
    assert list(p.arrived) == [5, 6, 7]
    arrive(p, 5)  # seen again: newest now
    assert list(p.arrived) == [6, 7, 5]
    assert p.arrived[6].features.dtype == np.float64 and p.arrived[6].title == "t6"


def test_a_reload_forgets_the_arrivals_the_new_catalogue_holds() -> None:
    p = processor(kept=100)
    for track_id in (1, 2, 3):
        arrive(p, track_id)
    stored = Catalogue(model=None, dims=2)
    stored.add(2, 0, np.zeros(2))
    p.replace_catalogue(stored)
    assert list(p.arrived) == [1, 3]
    assert p.catalogue is stored


def test_a_catalogue_load_that_fails_is_tried_again_with_backoff() -> None:
    """Regression: a MongoDB hiccup at worker start crashed the worker."""
    import asyncio

    from recommender_stream.app import load_until_done
    from recommender_stream.errors import CatalogueError

    attempts: list[float] = []
    loaded = Catalogue(model=None, dims=2)

    async def load() -> Catalogue:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise CatalogueError("reading tracks failed; is MongoDB up?")
        return loaded

    assert asyncio.run(load_until_done(load, first_s=0.05, max_s=0.1)) is loaded
    assert len(attempts) == 3
    assert attempts[2] - attempts[1] >= attempts[1] - attempts[0] >= 0.05


def test_a_track_announced_without_audio_is_placed_but_not_playable() -> None:
    from tests.recommender_stream.test_snapshot_start import _model

    p = processor(kept=10)
    p.replace_catalogue(Catalogue(model=_model(), dims=4))
    for track_id, audio in ((1, "1.mp3"), (2, None)):
        event = TrackEvent(track_id=track_id, audio_path=audio, features=[0.5 * track_id] * N_FEATURES)
        assert p.on_track(Record("tracks", 0, track_id, None, encode(event))) == []
    cat = p.catalogue
    assert [cat.playable[cat.position(t) or 0] for t in (1, 2)] == [True, False]
    assert cat.playable_count == 1 and cat.recommendable(cat.position(1) or 0)
    assert not cat.recommendable(cat.position(2) or 0)
    # Kept for the next reload with the flag.
    assert (p.arrived[1].playable, p.arrived[2].playable) == (True, False)
