"""The recommender's online reaction metrics: turnover, coverage, reasons, plays by source."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from infra.prometheus import samples
from recommender_stream.catalogue import Catalogue
from recommender_stream.listener import Limits
from recommender_stream.processor import Processor, Record
from recommender_stream.reaction import OTHER_REASON, ListTracker, reason_kind
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind, PlaySource


def test_turnover_is_the_share_of_a_new_list_not_in_the_listeners_previous_one() -> None:
    lists = ListTracker()
    assert lists.observe("ann", [1, 2, 3, 4], now=0.0) is None  # nothing to compare with
    assert lists.observe("ann", [1, 2, 5, 6], now=1.0) == 0.5
    assert lists.observe("ann", [1, 2, 5, 6], now=2.0) == 0.0
    assert lists.observe("bob", [7, 8], now=2.0) is None  # each listener apart
    assert lists.observe("ann", [9, 10, 11, 12], now=3.0) == 1.0
    assert lists.observe("ann", [], now=4.0) is None


def test_listeners_beyond_the_kept_number_are_forgotten_oldest_first() -> None:
    lists = ListTracker(lists_kept=2)
    lists.observe("a", [1], now=0.0)
    lists.observe("b", [2], now=0.0)
    lists.observe("a", [1], now=0.0)  # a is now the most recent
    lists.observe("c", [3], now=0.0)  # b goes
    assert lists.observe("b", [2], now=0.0) is None
    assert lists.observe("c", [4], now=0.0) == 1.0


def test_coverage_counts_distinct_tracks_recommended_within_the_window() -> None:
    lists = ListTracker(window_s=100.0)
    lists.observe("a", [1, 2, 3], now=0.0)
    lists.observe("b", [3, 4], now=50.0)
    assert lists.recommended(now=60.0) == 4
    assert lists.coverage(8, now=60.0) == 0.5
    assert lists.recommended(now=120.0) == 2  # 1 and 2 last at 0 s; 3 again at 50 s
    lists.observe("c", [1], now=130.0)
    assert lists.recommended(now=130.0) == 3
    assert lists.recommended(now=500.0) == 0
    assert lists.coverage(0, now=500.0) == 0.0


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("sounds like Track 7", "sounds_like"),
        ("trending in your mix", "trending_in_mix"),
        ("more from your mix", "more_from_mix"),
        ("trending now", "trending_now"),
        ("popular on Cadenza", "popular"),
        ("something new", "something_new"),
        ("because the moon is full", OTHER_REASON),
    ],
)
def test_reasons_are_counted_by_kind(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


def test_the_processor_counts_plays_by_source_and_each_lists_reasons_turnover_and_coverage() -> None:
    catalogue = Catalogue(model=None, dims=2)
    for i in range(40):
        catalogue.add(i + 1, i % 2, np.array([5.0 * (i % 2), 0.1 * i]), f"t{i + 1}")
    clock = iter(float(t) for t in range(100))
    processor = Processor(
        catalogue=catalogue, limits=Limits(), k=4, half_life_s=1800.0, clock=lambda: next(clock)
    )
    table: dict[str, Any] = {}
    events = [
        PlayEvent(user_id="ann", track_id=1, kind=PlayKind.PLAY, source=PlaySource.BROWSE),
        PlayEvent(user_id="ann", track_id=3, kind=PlayKind.PLAY, source=PlaySource.UP_NEXT),
        PlayEvent(user_id="ann", track_id=3, kind=PlayKind.SKIP, source=PlaySource.UP_NEXT),
        PlayEvent(user_id="ann", track_id=5, kind=PlayKind.PLAY),
    ]
    records = [Record("plays", 0, i, encode_key("ann"), encode(e)) for i, e in enumerate(events)]
    outputs = processor.on_plays(records, table)
    processor.on_plays(records[:1], table)  # a redelivery: answered, not counted
    lists = [json.loads(o.value)["items"] for o in outputs]
    worker = processor.metrics.worker
    got = samples(processor.metrics)

    def plays(kind: str, source: str) -> float:
        return got[f'cadenza_recommender_plays_total{{kind="{kind}",source="{source}",worker="{worker}"}}']

    assert (plays("play", "browse"), plays("play", "up_next"), plays("skip", "up_next")) == (1, 1, 1)
    assert (plays("play", "unknown"), plays("like", "radio")) == (1, 0)
    items = sum(got[f'cadenza_recommender_items_total{{reason="{r}",worker="{worker}"}}'] for r in (
        "sounds_like", "trending_in_mix", "more_from_mix", "trending_now", "popular", "something_new", "other"
    ))  # fmt: skip
    assert items == sum(len(items) for items in lists) == 16
    expected = [
        len({i["track_id"] for i in new} - {i["track_id"] for i in old}) / len(new)
        for old, new in itertools.pairwise(lists)
    ]
    assert got[f'cadenza_recommender_list_turnover_count{{worker="{worker}"}}'] == 3
    assert got[f'cadenza_recommender_list_turnover_sum{{worker="{worker}"}}'] == pytest.approx(sum(expected))
    distinct = {i["track_id"] for items in lists for i in items}
    assert got[f'cadenza_recommender_coverage_ratio{{worker="{worker}"}}'] == len(distinct) / 40
