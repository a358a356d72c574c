"""``python -m bench.quality``: simulated listeners in a closed loop through the real ranking.

On small hand-built catalogues of well-separated clusters (:func:`bench.quality_sim.separated_catalogue`):
Cadenza adapts to a drift within a few plays and beats popularity; where clusters are the
genres, "same-cluster" is an oracle (one play to adapt), and where K-Means left two genres
in each cluster Cadenza beats it too. The metrics count as documented on scripted cases;
the JSON and PNG are written; a snapshot file loads with and without its model. Pure apart
from files under ``tmp_path``: no stack needed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import quality
from bench.quality_sim import (
    QualityReport,
    Setup,
    Tally,
    adapt_after,
    rank_change,
    separated_catalogue,
    simulate_quality,
    standing,
    summarize,
)
from schemas.catalogue_snapshot import build_snapshot, snapshot_path
from schemas.cluster_model import export_path
from simulator.choice import ChoiceModel
from tests._vectors import model_518

SETUP = Setup(listeners=40, plays=80)
#: Drifts every 20 plays on average: some 150 drifts per run.
MODEL = ChoiceModel(drift=0.05)


@pytest.fixture(scope="module")
def genre_clusters() -> QualityReport:
    """3 clusters, each one genre."""
    catalogue, genres = separated_catalogue(600, clusters=3, genres_per_cluster=1)
    return simulate_quality(catalogue, genres, seeds=(1,), setup=SETUP, model=MODEL)


@pytest.fixture(scope="module")
def coarse_clusters() -> QualityReport:
    """3 clusters, each two genres apart inside it."""
    catalogue, genres = separated_catalogue(600, clusters=3, genres_per_cluster=2)
    return simulate_quality(catalogue, genres, seeds=(1,), setup=SETUP, model=MODEL)


def test_the_hand_built_catalogue_is_what_it_says() -> None:
    catalogue, genres = separated_catalogue(600, clusters=3, genres_per_cluster=2)
    assert len(catalogue) == 600 and len(genres) == 600
    assert sorted(Counter(catalogue.clusters).values()) == [200, 200, 200]
    assert sorted(Counter(genres.values()).values()) == [100] * 6
    for pos, track_id in enumerate(catalogue.ids):
        assert genres[track_id].startswith(f"genre {catalogue.clusters[pos]}.")
    with pytest.raises(ValueError):
        separated_catalogue(4, clusters=3, genres_per_cluster=2)


def test_cadenza_adapts_to_a_drift_within_a_few_plays_and_beats_popularity(
    genre_clusters: QualityReport,
) -> None:
    cadenza, popularity = genre_clusters.strategies["cadenza"], genre_clusters.strategies["popularity"]
    adapt = cadenza["adapt"]
    assert cadenza["drifts"] > 100 and adapt["adapted"] > 100
    assert adapt["median"] is not None and 1 <= adapt["median"] <= 8
    assert adapt["p90"] is not None and adapt["p90"] <= 15
    assert adapt["never_share"] <= 0.05
    assert cadenza["after_drift_share"] > popularity["after_drift_share"] + 0.2
    assert cadenza["in_genre_share"] > popularity["in_genre_share"] + 0.2
    assert cadenza["acceptance"] > popularity["acceptance"]
    assert popularity["adapt"]["never_share"] > 0.3
    # Here a cluster is a genre: the last play's cluster is the new taste at once.
    assert genre_clusters.strategies["same-cluster"]["adapt"]["median"] == 1


def test_cadenza_beats_same_cluster_and_popularity_when_clusters_are_coarser_than_genres(
    coarse_clusters: QualityReport,
) -> None:
    figures = coarse_clusters.strategies
    cadenza = figures["cadenza"]
    for baseline in ("same-cluster", "popularity"):
        assert cadenza["after_drift_share"] > figures[baseline]["after_drift_share"] + 0.05, baseline
        assert cadenza["in_genre_share"] > figures[baseline]["in_genre_share"] + 0.1, baseline
    assert cadenza["adapt"]["median"] is not None and cadenza["adapt"]["median"] <= 8
    median = cadenza["curve"]["median"]
    assert median[0] < 0.5 and max(median[5:]) > 0.5  # the list was on the old taste, then follows


def test_every_play_is_counted_once(genre_clusters: QualityReport) -> None:
    plays = SETUP.listeners * SETUP.plays
    for figures in genre_clusters.strategies.values():
        assert figures["plays"] == plays
        outcomes = sum(
            sum(figures[kind][k] for k in ("down", "same", "up", "absent"))
            for kind in ("skips", "likes", "completes")
        )
        assert outcomes == plays
        assert 0 <= figures["acceptance"] <= figures["hit_rate_at_10"] <= 1
        curve = figures["curve"]
        assert curve["x"] == list(range(SETUP.window + 1))
        assert all(
            lo <= mid <= hi for lo, mid, hi in zip(curve["p25"], curve["median"], curve["p75"], strict=True)
        )


def test_the_same_seeds_give_the_same_report() -> None:
    catalogue, genres = separated_catalogue(120)
    setup = Setup(listeners=5, plays=30)

    def figures() -> dict[str, Any]:
        out = simulate_quality(catalogue, genres, seeds=(4, 5), setup=setup, model=MODEL).to_dict()
        for strategy in out["strategies"].values():
            strategy.pop("cpu_s")
        return out

    assert figures() == figures()


# --- the metrics on scripted cases --------------------------------------------------------------

CLUSTER_OF = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 0, 7: 1}


def test_a_clusters_standing_is_its_borda_points() -> None:
    assert standing([1, 3, 2, 4], 0, CLUSTER_OF, 4) == 4 + 2
    assert standing([1, 3, 2, 4], 1, CLUSTER_OF, 4) == 3 + 1
    assert standing([1, 3, 2, 4], 2, CLUSTER_OF, 4) == 0


@pytest.mark.parametrize(
    ("before", "played", "after", "expected"),
    [
        # track 1 (cluster 0) skipped from the top; cluster 0's other track 2 slips down
        ([1, 3, 2, 4], 1, [3, 4, 2, 7], "down"),
        # the list only lost the played track and took one more at the bottom: unchanged
        ([1, 3, 2, 4], 1, [3, 2, 4, 6], "same"),
        ([1, 3, 2, 4], 1, [2, 6, 3, 4], "up"),
        # track 5's cluster (2) is in neither list: counted apart
        ([1, 3, 2, 4], 5, [3, 2, 4, 1], "absent"),
        # a browsed track (not in the list before): the lists compared whole
        ([1, 3, 2, 4], 6, [3, 4, 1, 2], "down"),
        ([3, 4, 7, 5], 6, [3, 4, 7, 2], "up"),
    ],
)
def test_a_skip_is_scored_against_the_list_without_the_played_track(
    before: list[int], played: int, after: list[int], expected: str
) -> None:
    assert rank_change(before, after, played, CLUSTER_OF, 4) == expected


def test_skip_likes_and_adaptation_summaries_count_as_documented() -> None:
    tally = Tally(
        plays=10,
        up_next=4,
        hits=5,
        episodes=[
            [0.0, 0.6, 1.0, 1.0],  # adapted after 1 play
            [0.0, 0.0, 0.0, 0.4],  # followed for the whole window: never
            [0.0, 0.1],  # cut by the next drift: censored
            [0.7],  # the list already matched the new taste
            [0.0, 0.0, 0.9],  # cut, but adapted first
        ],
        skips=Counter(down=3, same=5, up=2, absent=4),
        likes=Counter(up=3, same=1),
    )
    assert [adapt_after(e, 3) for e in tally.episodes] == [1, 4, None, 0, 2]
    figures = summarize(tally, window=3)
    assert figures["acceptance"] == 0.4 and figures["hit_rate_at_10"] == 0.5
    assert figures["skips"] == {"down": 3, "same": 5, "up": 2, "absent": 4, "down_share": 0.3}
    assert figures["likes"]["up_share"] == 0.75
    assert figures["completes"]["up_share"] is None
    assert figures["adapt"] == {
        "median": 1,
        "p90": None,  # beyond the window
        "never_share": 0.25,
        "adapted": 3,
        "never": 1,
        "censored": 1,
        "window": 3,
    }
    assert figures["curve"]["n"] == [5, 4, 3, 2]
    assert figures["curve"]["median"][0] == 0.0


# --- the command ---------------------------------------------------------------------------------


def test_the_command_writes_its_json_and_png(tmp_path: Path) -> None:
    out, plot = tmp_path / "quality.json", tmp_path / "quality.png"
    argv = ["--synthetic", "120", "--seeds", "1,2", "--listeners", "4", "--plays", "15"]
    argv += ["--half-life-s", "600", "--lambda", "0.5"]
    quality.main([*argv, "--out", str(out), "--plot", str(plot)])
    results = json.loads(out.read_text())
    assert set(results["strategies"]) == {"cadenza", "popularity", "same-cluster"}
    assert results["seeds"] == [1, 2] and results["setup"]["half_life_s"] == 600.0
    assert results["params"]["lambda_"] == 0.5
    assert results["catalogue"]["tracks"] == 120
    assert len(results["per_seed"]["cadenza"]) == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--seeds", "a,b"], ["--listeners", "0"], ["--lambda", "2"], ["--strategies", "magic"]):
        with pytest.raises(SystemExit) as stop:
            quality.parse(argv)
        assert stop.value.code == 2
    assert "magic" in capsys.readouterr().err


def test_without_a_current_model_it_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(SystemExit, match="no current model"):
        quality.current_snapshot()


@pytest.mark.parametrize("with_model", [True, False])
def test_a_snapshot_loads_with_its_genres_and_lengths(tmp_path: Path, with_model: bool) -> None:
    model = model_518(seed=4, n_components=4, k=3)
    rng = np.random.default_rng(0)
    ids = list(range(10, 40))
    features = model.mean + model.std * rng.normal(0, 1, (len(ids), model.n_features))
    placed = [i != 5 for i in range(len(ids))]
    meta: list[list[Any]] = [[f"t{t}", "a", "", None if t == 12 else f"g{t % 3}", [], 30.0 + t] for t in ids]
    playable = [i % 2 == 0 for i in range(len(ids))]
    snapshot = build_snapshot(
        model,
        ids,
        features[np.asarray(placed)],
        placed,
        meta,
        offsets=None,
        created="2026-01-01T00:00:00Z",
        playable=playable,
    )
    path = snapshot.save(snapshot_path(tmp_path, model.version))
    if with_model:
        model.save(export_path(tmp_path, model.version))
    src = quality.from_snapshot(path)
    assert len(src.catalogue) == 29 and 15 not in src.catalogue
    assert (src.catalogue.model is not None) == with_model
    assert src.genres[13] == "g1" and 12 not in src.genres and 15 not in src.genres
    assert src.lengths[20] == 50.0
    report = simulate_quality(src.catalogue, src.genres, seeds=(1,), setup=Setup(listeners=2, plays=5))
    assert report.catalogue["browsable"] == 15  # those with audio, as the ranking recommends
    assert report.catalogue["genres"] == 4  # g0, g1, g2 and "(no genre)"
    everything = quality.from_snapshot(path, all_playable=True)
    assert everything.catalogue.playable_count == 29
    assert all(everything.catalogue.recommendable(pos) for pos in range(29))
