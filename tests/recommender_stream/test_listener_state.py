"""How listener states are kept in the table: in memory as states, in the changelog as JSON."""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
from faust.serializers import codecs

from infra.prometheus import samples
from recommender_stream.catalogue import Catalogue
from recommender_stream.listener import Limits, ListenerState
from recommender_stream.processor import Processor, Record
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind


def _state(events: int) -> ListenerState:
    state = ListenerState()
    kinds = ("play", "skip", "complete", "like")
    for i in range(events):
        state.apply(
            str(uuid.uuid4()), track_id=i % 37, kind=kinds[i % 4], cluster=i % 5, ts=1e9 + i, limits=Limits()
        )
    return state


def test_faust_json_codec_writes_the_stored_form_and_it_reads_back() -> None:
    state = _state(250)
    raw = codecs.get_codec("json").dumps(state)  # what the table sends to its changelog
    data = json.loads(raw)
    assert isinstance(data["seen"], str) and len(state.seen) == Limits().seen_events
    assert ListenerState.from_dict(data) == state
    assert ListenerState.load(data) == state


def test_the_list_of_seen_ids_earlier_versions_stored_still_reads() -> None:
    state = _state(30)
    old: dict[str, Any] = {**state.to_dict(), "seen": list(state.seen)}
    assert ListenerState.from_dict(json.loads(json.dumps(old))) == state


def test_load_copies_so_what_the_table_holds_is_never_changed_in_place() -> None:
    stored = _state(10)
    before = stored.copy()
    state = ListenerState.load(stored)
    assert state == stored and state is not stored
    state.apply(str(uuid.uuid4()), track_id=99, kind="like", cluster=1, ts=2e9, limits=Limits())
    assert stored == before
    assert ListenerState.load(None) == ListenerState()


def test_processor_keeps_states_in_the_table_and_counts_each_event_once() -> None:
    catalogue = Catalogue(model=None, dims=2)
    for i in range(12):
        catalogue.add(i + 1, i % 2, np.array([5.0 * (i % 2), 0.1 * i]), f"t{i + 1}")
    processor = Processor(catalogue=catalogue, limits=Limits(), k=4, half_life_s=1800.0)
    table: dict[str, Any] = {}
    plays = [PlayEvent(user_id="ann", track_id=t, kind=PlayKind.PLAY) for t in (1, 3, 5)]
    records = [Record("plays", 0, i, encode_key("ann"), encode(e)) for i, e in enumerate(plays)]
    assert len(processor.on_plays(records[:2], table)) == 2
    first = table["ann"]
    assert isinstance(first, ListenerState) and first.events == 2
    # A redelivery of the first two with the third: only the third counts, every one is answered.
    assert len(processor.on_plays(records, table)) == 3
    assert table["ann"].events == 3 and first.events == 2
    # Recovered from the changelog (JSON), the state goes on from where it was.
    table["ann"] = json.loads(codecs.get_codec("json").dumps(table["ann"]))
    again = processor.on_plays(records, table)
    assert [o.topic for o in again] == ["recommendations"] * 3
    assert ListenerState.load(table["ann"]).events == 3  # answered, not counted again
    metrics = processor.metrics
    assert samples(metrics)[f'cadenza_recommender_duplicates_total{{worker="{metrics.worker}"}}'] == 5
