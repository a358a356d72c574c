"""Rank "up next" for one listener (pure): candidates, scores, reasons, diversity.

Sources: the listener's state (:mod:`recommender_stream.listener`), the catalogue
(:mod:`recommender_stream.catalogue`), what is trending per cluster (from
``cadenza.trending``) and play counts seen by this worker. Destination: the items of a
``Recommendation``.

Candidates, each with a score and the reason shown to the listener:

* nearest neighbours, in the model's space and cluster, of the last tracks played
  ("sounds like <title>"), weighted by the listener's affinity for that cluster;
* what is trending in the listener's strongest clusters ("trending in your mix");
* the tracks of those clusters nearest to the listener's recent taste ("more from your mix");
* with no history (cold start): trending everywhere ("trending now"), then the most
  played ("popular on Cadenza").

Never the last N played or recently skipped tracks, nor, while any track has audio, a
track without (imported feature rows: the listener could not play it). Then maximal
marginal relevance
picks K of the best 4K of them (``lambda_`` trades score against similarity to what is already
picked); if fewer than K candidates exist, the rest of the catalogue fills in by
cluster affinity, popularity and id, so the list has K tracks whenever the catalogue
allows. Ties break on track id: the same state always gives the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from recommender_stream.catalogue import Catalogue
from recommender_stream.listener import ListenerState

if TYPE_CHECKING:
    from infra.settings import Settings

SEEDS = 3
PER_SEED = 10
STRONGEST = 2
MIX_SEEDS = 5
#: MMR looks at this many candidates per track it picks (the best by score).
SHORTLIST_PER_K = 4


@dataclass(frozen=True)
class RankingParams:
    """The ranking's tunable weights (the half-life lives in the listener's
    :class:`~recommender_stream.listener.Limits`, which its state decays with).

    A candidate's score is its cluster's share of the listener's affinity plus one term
    per source: ``seed_weight`` x the similarity to a seed track ("sounds like"),
    ``trending_weight`` x its plays over the cluster's most played ("trending in your mix"),
    ``mix_weight`` x its closeness to the recent tracks in the cluster ("more from your
    mix"). ``lambda_`` is MMR's trade of score against diversity (1: score only).
    """

    seed_weight: float = 1.0
    trending_weight: float = 0.5
    mix_weight: float = 0.5
    lambda_: float = 0.7

    def __post_init__(self) -> None:
        for name in ("seed_weight", "trending_weight", "mix_weight"):
            if not 0.0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"lambda_ must be in [0, 1], got {self.lambda_}")


#: The weights the ranking shipped with before tuning (issue 26's "previous ranking"), and
#: the half-life it ran with (``CADENZA_RECO_HALF_LIFE_S``'s default then).
PREVIOUS: Final = RankingParams()
PREVIOUS_HALF_LIFE_S: Final = 1800.0


def ranking_params(settings: Settings) -> RankingParams:
    """The ranking's weights from settings (``CADENZA_RECO_*``)."""
    return RankingParams(
        seed_weight=settings.reco_seed_weight,
        trending_weight=settings.reco_trending_weight,
        mix_weight=settings.reco_mix_weight,
        lambda_=settings.reco_mmr_lambda,
    )


@dataclass(frozen=True)
class Pick:
    track_id: int
    score: float
    reason: str
    cluster: int


def _weights(state: ListenerState, now: float, half_life_s: float) -> dict[int, float]:
    weights = state.decayed(now, half_life_s)
    total = sum(weights.values())
    return {c: w / total for c, w in weights.items()} if total > 0 else {}


def candidates(
    state: ListenerState,
    catalogue: Catalogue,
    trending: Mapping[int, Sequence[tuple[int, int]]],
    popularity: Mapping[int, int],
    *,
    now: float,
    half_life_s: float,
    params: RankingParams = PREVIOUS,
) -> dict[int, Pick]:
    """Scored candidates by catalogue position (the best reason wins per track)."""
    excluded = set(state.recent) | set(state.skipped)
    weights = _weights(state, now, half_life_s)
    found: dict[int, Pick] = {}

    recommendable = catalogue.recommendable

    def offer(pos: int, score: float, reason: str) -> None:
        track = catalogue.ids[pos]
        if track in excluded or not recommendable(pos):
            return
        current = found.get(pos)
        if current is None or score > current.score or (score == current.score and reason < current.reason):
            found[pos] = Pick(track, score, reason, catalogue.clusters[pos])

    seeds = [t for t in reversed(state.recent) if t not in state.skipped and t in catalogue][:SEEDS]
    for rank, seed in enumerate(seeds):
        seed_pos = catalogue.position(seed)
        assert seed_pos is not None
        title = catalogue.titles[seed_pos] or f"track {seed}"
        cluster_weight = weights.get(catalogue.clusters[seed_pos], 0.0)
        for pos, distance in catalogue.nearest(seed_pos, PER_SEED):
            similarity = 1.0 / (1.0 + distance)
            offer(pos, cluster_weight + params.seed_weight * similarity - 0.1 * rank, f"sounds like {title}")

    strongest = sorted(weights.items(), key=lambda cw: (-cw[1], cw[0]))[:STRONGEST]
    recent_pos = [p for p in (catalogue.position(t) for t in state.recent) if p is not None]
    for cluster, weight in strongest:
        if weight <= 0:
            continue
        hot = trending.get(cluster, ())
        top = max((n for _, n in hot), default=1) or 1
        for track, plays in hot:
            hot_pos = catalogue.position(track)
            if hot_pos is not None and catalogue.clusters[hot_pos] == cluster:
                offer(hot_pos, weight + params.trending_weight * plays / top, "trending in your mix")
        for pos, distance in _near_mix(catalogue, recent_pos, cluster):
            offer(pos, weight + params.mix_weight / (1.0 + distance), "more from your mix")

    if not weights:  # cold start
        totals: dict[int, int] = {}
        for hot in trending.values():
            for track, plays in hot:
                totals[track] = totals.get(track, 0) + plays
        top = max(totals.values(), default=1) or 1
        for track, plays in totals.items():
            where = catalogue.position(track)
            if where is not None:
                offer(where, 1.0 + plays / top, "trending now")
        most = max(popularity.values(), default=1) or 1
        for track, plays in sorted(popularity.items(), key=lambda tp: (-tp[1], tp[0]))[:100]:
            where = catalogue.position(track)
            if where is not None:
                offer(where, 0.5 + 0.5 * plays / most, "popular on Cadenza")
    return found


def _near_mix(catalogue: Catalogue, recent_pos: list[int], cluster: int) -> list[tuple[int, float]]:
    """The tracks of ``cluster`` nearest to the centre of the listener's recent tracks in it,
    drawn from those tracks' (cached) neighbours; with no recent track in the cluster, the
    whole cluster is searched from the centre of all recent tracks."""
    if not recent_pos:
        return []
    inside = [p for p in recent_pos if catalogue.clusters[p] == cluster][-MIX_SEEDS:]
    if not inside:
        return catalogue.closest_in(
            cluster, catalogue.coords(recent_pos).sum(axis=0) / len(recent_pos), PER_SEED
        )
    centre = catalogue.coords(inside).sum(axis=0) / len(inside)
    pool = sorted({p for seed in inside for p, _ in catalogue.nearest(seed, 2 * PER_SEED)} | set(inside))
    d = np.sqrt(((catalogue.coords(pool) - centre) ** 2).sum(axis=1))
    ranked = sorted(zip(d.tolist(), pool, strict=True))[:PER_SEED]
    return [(pos, distance) for distance, pos in ranked]


def mmr(catalogue: Catalogue, found: Mapping[int, Pick], k: int, lambda_: float = 0.7) -> list[Pick]:
    """Pick ``k`` by maximal marginal relevance (score vs. similarity to those picked), among
    the best ``SHORTLIST_PER_K * k`` candidates by score (ties by track id)."""
    if not found:
        return []
    shortlist = sorted(found.items(), key=lambda kv: (-kv[1].score, kv[1].track_id))
    shortlist = shortlist[: max(k, SHORTLIST_PER_K * k)]
    ranked = [pick for _, pick in shortlist]
    scores = np.fromiter((p.score for p in ranked), dtype=np.float64, count=len(ranked))
    low = float(scores[-1])  # sorted: the last is the lowest
    span = float(scores[0]) - low or 1.0
    coords = catalogue.coords([pos for pos, _ in shortlist]).astype(np.float64)
    norms = (coords * coords).sum(axis=1)
    d2 = np.maximum(norms[:, None] + norms[None, :] - 2.0 * (coords @ coords.T), 0.0)
    # value - (1 - lambda) * max similarity to those picked, kept up to date in place
    penalty = (1.0 - lambda_) / (1.0 + np.sqrt(d2))
    value = (lambda_ / span) * (scores - low)
    max_pen = np.zeros(len(ranked))
    chosen: list[Pick] = []
    for _ in range(min(k, len(ranked))):
        best = int((value - max_pen).argmax())  # first maximum: by score, then id
        chosen.append(ranked[best])
        value[best] = -np.inf
        np.maximum(max_pen, penalty[best], out=max_pen)
    return chosen


def fill(
    state: ListenerState,
    catalogue: Catalogue,
    picked: list[Pick],
    popularity: Mapping[int, int],
    k: int,
    *,
    now: float,
    half_life_s: float,
) -> list[Pick]:
    """Top up to ``k`` from the rest of the catalogue without scanning all of it: the
    listener's clusters by affinity (their tracks in catalogue order), then the most
    played tracks, then the catalogue in order."""
    if len(picked) >= k:
        return picked
    excluded = set(state.recent) | set(state.skipped) | {p.track_id for p in picked}
    weights = _weights(state, now, half_life_s)

    def take(positions: Iterable[int], score: float, reason: str) -> bool:
        for pos in positions:
            track = catalogue.ids[pos]
            if track not in excluded and catalogue.recommendable(pos):
                excluded.add(track)
                picked.append(Pick(track, score, reason, catalogue.clusters[pos]))
                if len(picked) >= k:
                    return True
        return False

    for cluster, weight in sorted(weights.items(), key=lambda cw: (-cw[1], cw[0])):
        if weight > 0 and take(map(int, catalogue.members(cluster)), weight, "more from your mix"):
            return picked
    need = k - len(picked) + len(excluded)
    popular = sorted(popularity.items(), key=lambda tp: (-tp[1], tp[0]))[:need]
    found = (catalogue.position(t) for t, _ in popular)
    if take((p for p in found if p is not None), 0.0, "popular on Cadenza"):
        return picked
    take(range(len(catalogue)), 0.0, "something new")
    return picked


def recommend(
    state: ListenerState,
    catalogue: Catalogue,
    trending: Mapping[int, Sequence[tuple[int, int]]],
    popularity: Mapping[int, int],
    *,
    k: int,
    now: float,
    half_life_s: float,
    params: RankingParams = PREVIOUS,
) -> list[Pick]:
    """The "up next" list: exactly ``k`` tracks when the catalogue has that many to offer."""
    found = candidates(
        state, catalogue, trending, popularity, now=now, half_life_s=half_life_s, params=params
    )
    picked = mmr(catalogue, found, k, params.lambda_)
    return fill(state, catalogue, picked, popularity, k, now=now, half_life_s=half_life_s)
