"""A Faust recommender worker on the real broker, MongoDB-compatible server and a Spark-trained model.

Scripted listeners play tracks of one genre each; their recommendations must come
mostly from the clusters they played. A track published on ``tracks.new`` is placed by
the worker in the cluster Spark's PipelineModel gives it and can be played and
recommended at once. Bad records are dead-lettered and the worker carries on.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from infra.offsets import lag_rows
from infra.prometheus import parse_metrics
from infra.settings import Settings
from schemas.cluster_model import current_version
from schemas.codec import decode, encode, encode_key
from schemas.events import DeadLetter, Recommendation, TrackEvent
from schemas.topics import DLQ, PLAYS, RECOMMENDATIONS, TRACKS_NEW
from tests.recommender_stream.conftest import Reader, Worker, play
from tests.streaming_jobs._plays import publish

UNKNOWN_TRACK_LETTERS = 'cadenza_recommender_dead_letters_total{reason="UnknownTrackError",'

pytestmark = [pytest.mark.stack, pytest.mark.spark]


def test_listeners_get_recommendations_from_their_clusters(
    trained: dict[str, Any], topics: Settings, worker: Worker, tmp_path: Path
) -> None:
    settings = topics
    spark_cluster: dict[int, int] = trained["spark_cluster"]
    by_cluster: dict[int, list[int]] = defaultdict(list)
    for d in trained["stored"]:
        by_cluster[spark_cluster[d["_id"]]].append(d["_id"])
    (ca, alice_tracks), (cb, bob_tracks) = sorted(by_cluster.items())[:2]
    worker.start()
    recs = Reader(settings, settings.topic(RECOMMENDATIONS))
    plays = [play("alice", t) for t in alice_tracks[:6]] + [play("bob", t) for t in bob_tracks[:6]]
    publish(settings, settings.topic(PLAYS), plays)

    def latest(values: list[bytes]) -> dict[str, Recommendation]:
        out: dict[str, Recommendation] = {}
        for v in values:
            r = decode(Recommendation, v)
            out[r.user_id] = r
        return out

    recs.until(lambda v: len(v) >= len(plays), timeout=120)
    final = latest(recs.values)
    for user, cluster, played in (("alice", ca, alice_tracks[:6]), ("bob", cb, bob_tracks[:6])):
        items = final[user].items
        assert len(items) == settings.reco_k
        assert not {i.track_id for i in items} & set(played)
        in_cluster = sum(1 for i in items if i.cluster == cluster)
        assert in_cluster >= 0.7 * len(items), (user, [(i.track_id, i.cluster, i.reason) for i in items])
        assert all(i.reason for i in items) and any(i.reason.startswith("sounds like") for i in items)
        assert final[user].model_version == current_version(settings.models_path)

    # A new track: placed by the worker in the cluster Spark gives it, playable and recommendable at once.
    new = trained["fresh"][0]
    publish(
        settings,
        settings.topic(TRACKS_NEW),
        [
            (
                encode_key(new["_id"]),
                encode(TrackEvent(track_id=new["_id"], title="Fresh One", features=new["features"])),
            )
        ],
    )
    time.sleep(1.0)
    publish(settings, settings.topic(PLAYS), [play("carol", new["_id"])])
    recs.until(lambda v: "carol" in latest(v), timeout=30)
    carol = latest(recs.values)["carol"]
    similar = [i for i in carol.items if i.reason == "sounds like Fresh One"]
    assert similar and {i.cluster for i in similar} == {spark_cluster[new["_id"]]}

    # Bad input: dead-lettered with the reason; the worker goes on.
    bad = [
        (b"mallory", b"\xff\xfe not json"),
        (b"mallory", json.dumps({"user_id": "m", "track_id": "x"}).encode()),
        play("mallory", 999_999),
    ]
    dlq = Reader(settings, settings.topic(DLQ))
    publish(settings, settings.topic(PLAYS), [*bad, play("dave", alice_tracks[0])])
    letters = [decode(DeadLetter, v) for v in dlq.until(lambda v: len(v) >= 3)]
    assert Counter(d.error_class for d in letters) == Counter({"SchemaError": 2, "UnknownTrackError": 1})
    recs.until(lambda v: "dave" in latest(v), timeout=30)
    metrics = parse_metrics(worker.metrics())
    unknown = [v for k, v in metrics.items() if k.startswith(UNKNOWN_TRACK_LETTERS)]
    assert any(k.startswith("cadenza_recommender_events_total{") for k in metrics) and unknown == [1]

    # Everything answered is committed within a few commit intervals (12 plays: far fewer
    # than the count that commits at once, so this is the 1 s timer's work).
    group = settings.recommender_group
    deadline = time.monotonic() + 15
    while True:
        rows = [r for r in lag_rows(settings, [group]) if r.topic == settings.topic(PLAYS)]
        if rows and sum(r.lag for r in rows) == 0:
            break
        assert time.monotonic() < deadline, f"plays answered but not committed: {rows}"
        time.sleep(0.5)
