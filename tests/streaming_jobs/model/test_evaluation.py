"""Evaluation maths on hand-checked cases, and the pure helpers of training (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from streaming_jobs.errors import TrainingConfigError
from streaming_jobs.model.evaluation import (
    choose_popular,
    cluster_precision,
    cluster_sizes,
    contingency,
    evaluate,
    genre_agreement,
    genre_codes,
    random_precision,
)
from streaming_jobs.model.kmeans import SweepPoint, TrainConfig, components_for, parse_k_range, pick_best

Int = np.int64


def test_genre_codes_and_contingency() -> None:
    names, codes = genre_codes(["Rock", None, "Pop", "Rock"])
    assert names == ["Pop", "Rock"] and codes.tolist() == [1, -1, 0, 1]
    table = contingency(np.array([0, 0, 1, 1], dtype=Int), codes, k=3, n_genres=2)
    assert table.tolist() == [[0, 1], [1, 1], [0, 0]]
    assert cluster_sizes(np.array([0, 2, 2], dtype=Int), 4) == [1, 0, 2, 0]


def test_genre_agreement_perfect_and_purity_by_hand() -> None:
    perfect = genre_agreement(np.array([1, 1, 0, 0], dtype=Int), np.array([0, 0, 1, 1], dtype=Int))
    assert perfect.nmi == pytest.approx(1.0) and perfect.ari == pytest.approx(1.0) and perfect.purity == 1.0
    # cluster 0 = {a, a, b}, cluster 1 = {b, b, a}; unlabelled ignored -> purity 4/6
    mixed = genre_agreement(
        np.array([0, 0, 0, 1, 1, 1, 1], dtype=Int), np.array([0, 0, 1, 1, 1, 0, -1], dtype=Int)
    )
    assert mixed.purity == pytest.approx(4 / 6) and mixed.n_labelled == 6
    assert 0 <= mixed.nmi < 0.5 and mixed.ari < 0.5


def test_cluster_precision_uses_nearest_tracks_inside_the_cluster() -> None:
    # candidates: cluster 0 holds genre 0 near the origin and genre 1 far away
    cand = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [0.2, 0.0]])
    cand_clusters = np.array([0, 0, 0, 1], dtype=Int)
    cand_codes = np.array([0, 0, 1, 0], dtype=Int)
    query = np.array([[0.05, 0.0], [4.9, 5.0]])
    p = cluster_precision(
        query_coords=query,
        query_clusters=np.array([0, 0], dtype=Int),
        query_codes=np.array([0, 1], dtype=Int),
        cand_coords=cand,
        cand_clusters=cand_clusters,
        cand_codes=cand_codes,
        k=2,
    )
    assert p.tolist() == [1.0, 0.5]  # 2 nearest: (0, 1) -> both genre 0; (2, one of 0/1) -> one hit
    few = cluster_precision(
        query_coords=query[:1],
        query_clusters=np.array([1], dtype=Int),
        query_codes=np.array([0], dtype=Int),
        cand_coords=cand,
        cand_clusters=cand_clusters,
        cand_codes=cand_codes,
        k=2,
    )
    assert few.tolist() == [0.5]  # a cluster with one training track: one hit out of k = 2


def test_random_precision_draws_distinct_tracks() -> None:
    same = random_precision(np.zeros(50, dtype=Int), np.zeros(12, dtype=Int), k=10, seed=1)
    assert same.tolist() == [1.0] * 50
    # 10 of 10 candidates: every draw is the whole pool, exactly 3 hits
    pool = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], dtype=Int)
    assert random_precision(np.zeros(40, dtype=Int), pool, k=10, seed=2).tolist() == [0.3] * 40
    half = random_precision(np.zeros(4000, dtype=Int), np.array([0, 1] * 500, dtype=Int), k=10, seed=3)
    assert 0.45 < half.mean() < 0.55


def test_popular_baseline_prefers_plays_then_most_frequent_genre() -> None:
    ids = np.array([10, 11, 12, 13, 14], dtype=Int)
    codes = np.array([1, 0, 1, -1, 0], dtype=Int)
    chosen, source = choose_popular(ids, codes, [(13, 9), (99, 8), (11, 5), (10, 5)], k=3)
    assert source == "plays" and ids[chosen].tolist() == [13, 10, 11]  # 99 is not a candidate
    chosen, source = choose_popular(ids, codes, [(13, 9)], k=3)
    assert source == "most_frequent_genre" and ids[chosen].tolist() == [11, 14]  # tie 0/1 -> code 0


def test_evaluate_end_to_end_on_a_tiny_catalogue() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = np.repeat([0, 1, 2], 30)
    coords = centres[labels] + rng.normal(0, 0.5, (90, 2))
    genres = [("A", "B", "C")[g] for g in labels]
    holdout = np.zeros(90, dtype=bool)
    holdout[::5] = True
    ev = evaluate(
        ids=np.arange(90, dtype=Int),
        clusters=labels.astype(Int),
        coords=coords,
        genres=genres,
        holdout=holdout,
        k_clusters=3,
        plays=[],
        top_k=10,
        seed=1,
    )
    assert ev.sizes == [30, 30, 30] and ev.genres == ["A", "B", "C"]
    assert ev.agreement.nmi == pytest.approx(1.0)
    assert ev.precision.cluster == 1.0 and ev.precision.n_queries == 18
    assert (
        ev.precision.popular == pytest.approx(6 / 18)
        and ev.precision.popularity_source == "most_frequent_genre"
    )
    assert 0.2 < ev.precision.random < 0.5
    metrics = ev.to_metrics()
    assert metrics["contingency"]["counts"] == [30, 0, 0, 0, 30, 0, 0, 0, 30]


def test_parse_k_range() -> None:
    assert parse_k_range("8:32:4") == (8, 12, 16, 20, 24, 28, 32)
    assert parse_k_range("3:5") == (3, 4, 5)
    for bad in ("8", "a:b", "9:8", "4:8:0", "1:2:3:4"):
        with pytest.raises(TrainingConfigError, match="START:END"):
            parse_k_range(bad)
    with pytest.raises(TrainingConfigError, match="at least 2"):
        TrainConfig(ks=(1, 4))


def test_components_for_variance_target() -> None:
    ratios = [0.5, 0.3, 0.15, 0.05]
    assert components_for(ratios, 0.8) == 2
    assert components_for(ratios, 0.81) == 3
    assert components_for(ratios, 1.0) == 4
    assert components_for([0.99, 0.01], 0.5) == 2  # never fewer than 2 (the report draws 2-D)


def test_pick_best_is_highest_silhouette_then_smaller_k() -> None:
    points = [SweepPoint(k, s, 1.0, 1, 0.0, 0.0) for k, s in [(4, 0.5), (6, 0.7), (8, 0.7), (10, 0.6)]]
    assert pick_best(points).k == 6
