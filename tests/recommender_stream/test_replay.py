"""The offline replay (``cadenza evaluate replay``): scripted listeners whose scores are known,
exact MRR and novelty of a hand-made list, what is skipped and why; the MongoDB reader on
the real stack; the command on a JSON-lines file."""

from __future__ import annotations

import gzip
import json
import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pymongo.database import Database
from typer.testing import CliRunner

from infra.settings import Settings
from recommender_stream.catalogue import Catalogue
from recommender_stream.cli import register
from recommender_stream.errors import CatalogueError, ReplayError
from recommender_stream.ranking import PREVIOUS, RankingParams
from recommender_stream.replay import (
    BadRow,
    Moment,
    MostPlayed,
    PlayCounts,
    Ranking,
    ReplayEvent,
    SameClusterRandom,
    TrendingWindow,
    event_from_row,
    events_from_rows,
    replay,
    standard_strategies,
)
from recommender_stream.replay_source import (
    file_history,
    load_replay_catalogue,
    mongo_history,
    parse_since,
)
from schemas.catalogue_snapshot import assemble, snapshot_path
from schemas.cluster_model import CURRENT_FILE, export_path
from tests._vectors import model_518
from tests.streaming_jobs._catalogue import make_catalogue

Db = Database[dict[str, Any]]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()


def clustered(per_cluster: int, clusters: int = 3, dims: int = 3, seed: int = 1) -> Catalogue:
    """Tracks 1000.. in well separated clusters (cluster c around x = 100 c)."""
    rng = np.random.default_rng(seed)
    cat = Catalogue(model=None, dims=dims)
    for c in range(clusters):
        centre = np.zeros(dims)
        centre[0] = 100.0 * c
        for i in range(per_cluster):
            track = 1000 + c * per_cluster + i
            cat.add(track, c, centre + rng.normal(0, 5, dims), f"t{track}", "a")
    return cat


def event(user: str, track: int, ts: float, kind: str = "play") -> ReplayEvent:
    return ReplayEvent(uuid.uuid4().hex, user, track, kind, ts)


# --- scripted listeners --------------------------------------------------------------------------


def test_a_listener_who_plays_the_nearest_neighbour_is_predicted_by_the_ranking() -> None:
    cat = clustered(per_cluster=150)
    rng = random.Random(3)
    walks: list[list[int]] = []
    for _ in range(6):
        pos = rng.randrange(len(cat))
        walk = [pos]
        for _ in range(15):  # the nearest track of the same cluster not played yet
            played = set(walk)
            pos = next(p for p, _ in cat.nearest(walk[-1], 40) if p not in played)
            walk.append(pos)
        walks.append(walk)
    events = [
        event(f"u{u}", cat.ids[pos], T0 + 120.0 * step + u)  # listeners interleaved in time
        for step in range(16)
        for u, walk in enumerate(walks)
        for pos in [walk[step]]
    ]
    report = replay(events, cat, standard_strategies(seed=5), k=10)
    assert report.lists == 6 * 15 and report.events == 96 and report.listeners == 6
    ranked, previous, random_ = (
        report.score("candidate"),
        report.score("previous ranking"),
        report.score("same-cluster random"),
    )
    assert ranked.hit_rate >= 0.9, ranked
    assert ranked.mrr >= 0.3 and ranked.mrr > 3 * random_.mrr, (ranked, random_)
    assert random_.hit_rate < 0.3 and ranked.hit_rate > 3 * random_.hit_rate
    assert previous == replace(ranked, name="previous ranking")  # the same weights by default


def test_a_listener_who_plays_the_most_popular_track_is_predicted_by_popularity() -> None:
    cat = clustered(per_cluster=30, clusters=2)
    popular = cat.ids[5:15]  # the crowd plays popular[j] 30 - 2 j times, one event per listener
    crowd = [
        event(f"crowd-{j}-{n}", track, T0 + j * 100 + n)
        for j, track in enumerate(popular)
        for n in range(30 - 2 * j)
    ]
    fan = [event("fan", track, T0 + 5000 + 60 * i) for i, track in enumerate(popular)]
    report = replay([*crowd, *fan], cat, standard_strategies(), k=10)
    assert report.lists == 9  # the fan's plays from their second on; the crowd played once each
    most = report.score("popularity")
    assert (most.hits, most.hit_rate, most.mrr) == (9, 1.0, 1.0)
    assert report.score("same-cluster random").hit_rate < 1.0


@dataclass(frozen=True)
class Fixed:
    listed: tuple[int, ...]
    name: str = "fixed"

    def rank(self, moment: Moment, k: int) -> list[int]:
        return list(self.listed)


def test_hit_rate_mrr_novelty_and_coverage_are_exact_for_a_hand_made_list() -> None:
    cat = Catalogue(model=None, dims=1)
    for track in (1, 2, 3, 4, 5):  # a b c d e
        cat.add(track, 0, np.asarray([float(track)]))
    history = [event("u", 5, T0), event("u", 2, T0 + 1), event("u", 4, T0 + 2), event("u", 1, T0 + 3)]
    report = replay(history, cat, [Fixed((1, 2, 3))], k=10)
    fixed = report.score("fixed")
    assert fixed.lists == 3 and fixed.hits == 2
    assert fixed.hit_rate == pytest.approx(2 / 3)
    assert fixed.mrr == pytest.approx((1 / 2 + 0 + 1) / 3)
    # plays so far before each list: {5}, {5, 2}, {5, 2, 4}; share = (plays + 1) / (all + 5)
    lists = [
        [-math.log2(1 / 6)] * 3,
        [-math.log2(1 / 7), -math.log2(2 / 7), -math.log2(1 / 7)],
        [-math.log2(1 / 8), -math.log2(2 / 8), -math.log2(1 / 8)],
    ]
    assert fixed.novelty == pytest.approx(sum(sum(x) / 3 for x in lists) / 3)
    assert (fixed.coverage, fixed.distinct_tracks) == (3 / 5, 3)


def test_malformed_rows_unknown_tracks_and_duplicates_are_counted_and_skipped() -> None:
    cat = clustered(per_cluster=20, clusters=1)
    good = {"user_id": "u", "track_id": cat.ids[0], "kind": "play", "ts": "2024-05-01T12:00:00Z"}
    rows: list[object] = [
        {**good, "_id": "e1"},
        {**good, "_id": "e2", "track_id": cat.ids[1], "ts": T0 + 60},
        {**good, "_id": "e2", "track_id": cat.ids[1], "ts": T0 + 60},  # the same event again
        {**good, "_id": "e3", "track_id": 999_999},  # not in the catalogue
        {**good, "_id": "e4", "track_id": 999_999, "ts": T0 + 70},
        {**good, "_id": "e5", "kind": "pause"},
        {**good, "_id": "e6", "ts": "yesterday"},
        {**good, "_id": "e7", "ts": float("nan")},
        {**good, "_id": "e8", "track_id": True},
        {k: v for k, v in {**good, "_id": "e9"}.items() if k != "user_id"},
        dict(good),  # no id
        {**good, "_id": "e10", "kind": ["play"]},
        "not a play",
        {**good, "_id": "e11", "track_id": str(cat.ids[2]), "ts": datetime(2024, 5, 1, 12, 5)},  # naive: UTC
    ]
    report = replay(events_from_rows(rows), cat, standard_strategies(), k=5)
    assert report.rows == len(rows)
    assert report.events == 3 and report.duplicates == 1
    assert (report.unknown_track_events, report.unknown_tracks) == (2, 1)
    assert report.malformed == {
        "bad kind": 2,
        "bad ts": 2,
        "bad track_id": 1,
        "missing user_id": 1,
        "missing event_id": 1,
        "not an object": 1,
    }
    assert "pause" in report.malformed_examples["bad kind"]
    assert report.lists == 2  # e2 and e11, each after a first event
    assert report.first_ts == T0 and report.last_ts == T0 + 300
    document = json.loads(json.dumps(report.to_dict()))
    assert document["skipped"]["malformed"]["bad ts"] == 2
    assert [s["name"] for s in document["strategies"]] == [
        "candidate",
        "previous ranking",
        "popularity",
        "same-cluster random",
    ]


def test_rows_become_events() -> None:
    row = {"_id": "x", "user_id": "u", "track_id": 7, "kind": "like", "ts": 1.5e9, "cluster": 3}
    got = event_from_row(row)
    assert isinstance(got, ReplayEvent) and got == ReplayEvent(got.event_id, "u", 7, "like", 1.5e9)
    other = event_from_row({**row, "_id": None, "event_id": "x"})  # either name; the same UUID
    assert isinstance(other, ReplayEvent) and other.event_id == got.event_id
    real = str(uuid.uuid4())  # a UUID (what plays carry) is kept as it is
    kept = event_from_row({**row, "_id": real})
    assert isinstance(kept, ReplayEvent) and kept.event_id == real
    bad = event_from_row({**row, "user_id": ""})
    assert isinstance(bad, BadRow) and bad.reason == "bad user_id" and "user_id" in bad.example
    assert isinstance(event_from_row({**row, "track_id": -1}), BadRow)


def test_a_candidate_with_its_own_half_life_keeps_its_own_states() -> None:
    cat = clustered(per_cluster=40)
    rng = random.Random(0)
    events = [event(f"u{i % 4}", rng.choice(cat.ids), T0 + 30 * i) for i in range(120)]
    slow = Ranking("slow", RankingParams(seed_weight=0.2, mix_weight=2.0), half_life_s=60.0)
    report = replay(events, cat, [Ranking("shipped", PREVIOUS), slow, MostPlayed(), SameClusterRandom(1)])
    assert report.lists == 116
    again = replay(events, cat, [Ranking("shipped", PREVIOUS), slow, MostPlayed(), SameClusterRandom(1)])
    assert again.scores == report.scores  # deterministic, seed included
    with pytest.raises(ValueError, match="differ"):
        replay(events, cat, [MostPlayed(), MostPlayed()])


def test_ids_that_share_a_prefix_are_different_events() -> None:
    cat = clustered(per_cluster=20, clusters=1)
    rows = [
        {
            "_id": f"listener-0001-event-{i:04d}",
            "user_id": "u",
            "track_id": cat.ids[i],
            "kind": "play",
            "ts": T0 + i,
        }
        for i in range(5)
    ]
    report = replay(events_from_rows(rows), cat, [MostPlayed()])
    assert (report.events, report.duplicates, report.lists) == (5, 0, 4)


@hsettings(max_examples=60, deadline=None)
@given(plays=st.lists(st.integers(0, 12), max_size=120), kept=st.integers(1, 6))
def test_play_counts_keep_the_exact_most_played(plays: list[int], kept: int) -> None:
    counts = PlayCounts(kept)
    for track in plays:
        counts.add(track)
    brute = Counter(plays)
    expected = sorted(brute, key=lambda t: (-brute[t], t))[:kept]
    assert list(counts.ranked) == expected
    assert counts.view() == {t: brute[t] for t in expected}
    assert counts.total == len(plays)


def test_trending_counts_the_last_window_per_cluster() -> None:
    window = TrendingWindow(window_s=600.0, top_n=2)
    for ts, track, cluster in [(0, 1, 0), (100, 2, 0), (200, 2, 0), (300, 3, 0), (300, 9, 1), (400, 9, -1)]:
        window.add(float(ts), track, cluster)
    assert window[0] == [(2, 2), (1, 1)] and dict(window) == {0: [(2, 2), (1, 1)], 1: [(9, 1)]}
    window.advance(650.0)  # the play at 0 is out
    assert window[0] == [(2, 2), (3, 1)]
    window.advance(1000.0)  # everything up to 400 is out
    assert window.get(0, ()) == () and len(window) == 0
    off = TrendingWindow(window_s=0.0, top_n=2)
    off.add(0.0, 1, 0)
    assert len(off) == 0


def test_since_takes_a_time_or_a_duration() -> None:
    now = datetime(2024, 5, 8, tzinfo=UTC)
    assert parse_since("7 days", now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_since("2024-05-01", now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_since("2024-05-01T12:00Z", now) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since("last week", now)


def test_a_json_lines_file_is_read_in_event_time_order(tmp_path: Path) -> None:
    rows = [
        {"_id": f"e{i}", "user_id": "u", "track_id": i, "kind": "play", "ts": T0 + (7 * i) % 10}
        for i in range(10)
    ]
    path = tmp_path / "plays.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write("\n".join([*map(json.dumps, rows), "", "[1, 2"]) + "\n")
    history = file_history(path)
    events = [r for r in history.rows if isinstance(r, ReplayEvent)]
    assert history.total == 11 and [e.ts - T0 for e in events] == list(range(10))
    assert [r for r in history.rows if isinstance(r, BadRow)] == [BadRow("not JSON", "[1, 2")]
    since = datetime.fromtimestamp(T0 + 3, UTC)
    bounded = [r for r in file_history(path, since=since, limit=4).rows if isinstance(r, ReplayEvent)]
    assert [e.track_id for e in bounded] == [9, 2, 5, 8]  # at T0 + 3, 4, 5, 6
    with pytest.raises(ReplayError, match="cannot read"):
        file_history(tmp_path / "missing.jsonl")


# --- MongoDB (the real stack) -------------------------------------------------------------------


@pytest.mark.stack
def test_the_plays_history_in_mongodb_replays_in_event_time_order(db: Db, settings: Settings) -> None:
    with pytest.raises(ReplayError, match="cadenza simulate"):
        mongo_history(db)
    tracks = make_catalogue(n_genres=3, per_genre=10, unlabelled=0)
    db.tracks.insert_many(tracks.docs)
    model = model_518(n_components=4, k=3)
    model.save(export_path(settings.models_path, model.version))
    with pytest.raises(CatalogueError, match="cadenza model train --promote"):
        load_replay_catalogue(settings.models_path, lambda: db)
    (settings.models_path / CURRENT_FILE).write_text(model.version)
    loaded = load_replay_catalogue(settings.models_path, lambda: db)  # no snapshot: a scan
    assert loaded.source == "scan" and len(loaded.catalogue) == tracks.n_valid

    ids = loaded.catalogue.ids
    start = datetime(2024, 5, 1, 12, tzinfo=UTC)
    docs: list[dict[str, Any]] = [
        {
            "_id": f"ev{u}-{i:02d}",
            "user_id": f"listener{u}",
            "track_id": ids[(7 * u + 3 * i) % len(ids)],
            "kind": "play" if i % 3 else "complete",
            "position_s": 0.0,
            "ts": start + timedelta(seconds=40 * i + u),
            "cluster": 0,
        }
        for u in range(3)
        for i in range(12)
    ]
    docs.append({**docs[0], "_id": "unknown", "track_id": 5, "ts": start + timedelta(seconds=5)})
    docs.append({**docs[0], "_id": "broken", "kind": "rewind", "ts": start + timedelta(seconds=6)})
    random.Random(1).shuffle(docs)
    db.plays.insert_many(docs)

    history = mongo_history(db, batch_size=4)
    rows = list(history.rows)
    assert history.total == len(docs) == len(rows) and "plays" in history.where
    good = [r for r in rows if isinstance(r, ReplayEvent)]
    assert [e.ts for e in good] == sorted(e.ts for e in good)
    first = rows[0]
    assert isinstance(first, ReplayEvent)
    assert first == ReplayEvent(first.event_id, "listener0", ids[0], "complete", start.timestamp())

    bounded = mongo_history(db, since=start + timedelta(seconds=200), limit=5)
    first_five = list(bounded.rows)
    assert bounded.total == 5 and len(first_five) == 5
    assert all(isinstance(r, ReplayEvent) and r.ts >= start.timestamp() + 200 for r in first_five)

    report = replay(mongo_history(db).rows, loaded.catalogue, standard_strategies(), k=10)
    assert report.events == 36 and report.listeners == 3
    assert report.unknown_track_events == 1 and report.malformed == {"bad kind": 1}
    assert report.lists == sum(1 for d in docs if d["kind"] == "play" and d["_id"].startswith("ev"))
    assert all(s.lists == report.lists for s in report.scores)


# --- the command ------------------------------------------------------------------------------


def promoted_model(data_dir: Path) -> Catalogue:
    """A current model and its catalogue snapshot under ``data_dir/models`` (no MongoDB needed)."""
    model = model_518(n_components=3, k=3)
    cat = clustered(per_cluster=40, clusters=3, dims=3)
    ids = np.asarray(cat.ids)
    snapshot = assemble(
        model,
        ids,
        np.asarray(cat.clusters, dtype=np.int32),
        cat.coords(list(range(len(cat)))),
        [[f"t{t}", "a", "", None, [], 30.0] for t in cat.ids],
        offsets=None,
        created="2024-05-01T00:00:00+00:00",
    )
    models = data_dir / "models"
    model.save(export_path(models, model.version))
    snapshot.save(snapshot_path(models, model.version))
    (models / CURRENT_FILE).write_text(model.version)
    return cat


def test_the_command_replays_a_json_lines_file(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    env = {
        "CADENZA_DATA_DIR": str(tmp_path),
        "CADENZA_MONGODB_URI": "mongodb://127.0.0.1:9/",  # never asked: snapshot and file
        "COLUMNS": "160",
    }
    runner = CliRunner()
    shown = runner.invoke(app, ["evaluate", "replay", "--help"], env=env)
    assert shown.exit_code == 0
    for words in (
        "--seed-weight",
        "--lambda",
        "--half-life-s",
        "--file",
        "--since",
        "--limit",
        "--out",
        "MRR",
    ):
        assert words in shown.output

    history = tmp_path / "plays.jsonl"
    missing = runner.invoke(app, ["evaluate", "replay", "--file", str(history)], env=env)
    assert isinstance(missing.exception, CatalogueError)
    assert "cadenza model train --promote" in str(missing.exception)

    cat = promoted_model(tmp_path)
    history.write_text("\n")
    empty = runner.invoke(app, ["evaluate", "replay", "--file", str(history)], env=env)
    assert isinstance(empty.exception, ReplayError) and "cadenza simulate" in str(empty.exception)

    rng = random.Random(2)
    lines = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "user_id": f"u{i % 5}",
                "track_id": rng.choice(cat.ids[:40]) if i % 5 < 3 else rng.choice(cat.ids),
                "kind": "play",
                "position_s": 0,
                "ts": (datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=97 * i)).isoformat(),
                "cluster": 0,
            }
        )
        for i in range(60)
    ]
    lines[10:10] = ["{not json", json.dumps({"event_id": "x", "user_id": "u", "track_id": 4, "kind": "play"})]
    lines.append(
        json.dumps({"event_id": "far", "user_id": "u1", "track_id": 77, "kind": "play", "ts": 1.7e9})
    )
    history.write_text("\n".join(reversed(lines)) + "\n")  # newest first: the replay sorts
    out = tmp_path / "reports" / "replay.json"
    ran = runner.invoke(
        app,
        [
            "evaluate",
            "replay",
            "--file",
            str(history),
            "--seed-weight",
            "1.5",
            "--lambda",
            "0.9",
            "--out",
            str(out),
        ],
        env=env,
    )
    assert ran.exit_code == 0, ran.output
    for words in ("candidate", "previous ranking", "popularity", "same-cluster random", "hit@10", "MRR"):
        assert words in ran.output
    assert "skipped 1 malformed rows: not JSON" in ran.output
    assert "skipped 1 malformed rows: missing ts" in ran.output
    assert "skipped 1 events of 1 tracks the catalogue does not hold" in ran.output
    saved = json.loads(out.read_text())
    assert saved["report"]["lists"] == 55 and saved["report"]["events"] == 60
    assert saved["options"]["candidate"] == {
        "seed_weight": 1.5,
        "trending_weight": 0.5,
        "mix_weight": 0.5,
        "lambda_": 0.9,
        "seed_decay": 0.3,  # not given: the configured ones (CADENZA_RECO_*)
        "skip_penalty": 0.3,
    }
    assert saved["catalogue"]["source"] == "snapshot"
    assert {s["name"]: s["lists"] for s in saved["report"]["strategies"]} == {
        "candidate": 55,
        "previous ranking": 55,
        "popularity": 55,
        "same-cluster random": 55,
    }
