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
#: Right after a skip (with ``skip_penalty`` on), at least this many tracks of other clusters.
SKIP_ROOM = 2


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
    #: ``None``: closeness is ``1 / (1 + distance)`` and each older seed loses 0.1 (the shipped
    #: ranking). A number: closeness is relative (the seed's or the mix centre's nearest
    #: track 1, a track twice as far 0.5), so it weighs the same in any model's space, and
    #: the seed ``r`` plays back counts ``seed_decay ** r``: the last track leads the list.
    seed_decay: float | None = None
    #: Right after a skip (the last track played was skipped, until the next play), every
    #: candidate of the skipped track's cluster loses this much: the next list shows more
    #: of the listener's other clusters. 0: a skip only lowers the cluster's affinity.
    skip_penalty: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.skip_penalty < float("inf"):
            raise ValueError(f"skip_penalty must be a finite number >= 0, got {self.skip_penalty}")
        if self.seed_decay is not None and not 0.0 <= self.seed_decay <= 1.0:
            raise ValueError(f"seed_decay must be in [0, 1], got {self.seed_decay}")
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
        seed_decay=settings.reco_seed_decay,
        skip_penalty=settings.reco_skip_penalty,
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


def skipped_cluster(state: ListenerState, catalogue: Catalogue) -> int | None:
    """The cluster of the last track played when it was skipped (until the next play), else None."""
    if not state.recent or state.recent[-1] not in state.skipped:
        return None
    where = catalogue.position(state.recent[-1])
    return catalogue.clusters[where] if where is not None else None


def make_room(picked: list[Pick], found: Mapping[int, Pick], cluster: int, k: int) -> list[Pick]:
    """``picked`` with at least :data:`SKIP_ROOM` tracks outside ``cluster`` (the best such
    candidates of ``found`` replace its lowest-scored tracks), by score; what a skip does to
    the next list when ``skip_penalty`` alone did not make room."""
    others = sum(p.cluster != cluster for p in picked)
    if others >= SKIP_ROOM:
        return picked
    chosen = {p.track_id for p in picked}
    extra = sorted(
        (p for p in found.values() if p.cluster != cluster and p.track_id not in chosen),
        key=lambda p: (-p.score, p.track_id),
    )[: SKIP_ROOM - others]
    if not extra:
        return picked
    inside = sorted((p for p in picked if p.cluster == cluster), key=lambda p: (-p.score, p.track_id))
    keep = [p for p in picked if p.cluster != cluster] + inside[: max(0, k - others - len(extra))]
    return sorted(keep + extra, key=lambda p: (-p.score, p.track_id))


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
    excluded_skips = set(state.skipped)
    excluded = set(state.recent) | excluded_skips
    weights = _weights(state, now, half_life_s)
    found: dict[int, Pick] = {}

    recommendable = catalogue.recommendable

    # Right after a skip, the skipped track's cluster steps back (params.skip_penalty).
    penalised = skipped_cluster(state, catalogue) if params.skip_penalty > 0 else None

    def offer(pos: int, score: float, reason: str) -> None:
        track = catalogue.ids[pos]
        if track in excluded or not recommendable(pos):
            return
        if penalised is not None and catalogue.clusters[pos] == penalised:
            score -= params.skip_penalty
        current = found.get(pos)
        if current is None or score > current.score or (score == current.score and reason < current.reason):
            found[pos] = Pick(track, score, reason, catalogue.clusters[pos])

    # The relative ranking looks deep enough for PER_SEED tracks it may recommend.
    depth = PER_SEED if params.seed_decay is None else PER_SEED + len(excluded)
    seeds = [t for t in reversed(state.recent) if t not in state.skipped and t in catalogue][:SEEDS]

    def eligible(near: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """The tracks that may be offered (so relative closeness is measured from the nearest
        of them, never from a recent track at distance 0)."""
        return [(p, d) for p, d in near if catalogue.ids[p] not in excluded and recommendable(p)]

    for rank, seed in enumerate(seeds):
        seed_pos = catalogue.position(seed)
        assert seed_pos is not None
        title = catalogue.titles[seed_pos] or f"track {seed}"
        cluster_weight = weights.get(catalogue.clusters[seed_pos], 0.0)
        near = eligible(catalogue.nearest(seed_pos, depth))
        for pos, closeness in _closeness(near, params.seed_decay):
            if params.seed_decay is None:
                score = cluster_weight + params.seed_weight * closeness - 0.1 * rank
            else:
                score = cluster_weight + params.seed_weight * params.seed_decay**rank * closeness
            offer(pos, score, f"sounds like {title}")

    by_weight = sorted(weights.items(), key=lambda cw: (-cw[1], cw[0]))
    stepping_back = penalised is not None
    if stepping_back:  # right after a skip the listener's other clusters come forward
        by_weight = [cw for cw in by_weight if cw[0] != penalised]
    strongest = by_weight[:STRONGEST]
    # The relative ranking leaves skipped tracks out of the mix's centre too.
    liked_recent = (
        state.recent if params.seed_decay is None else [t for t in state.recent if t not in excluded_skips]
    )
    recent_pos = [p for p in (catalogue.position(t) for t in liked_recent) if p is not None]
    for cluster, weight in strongest:
        if weight <= 0:
            continue
        hot = trending.get(cluster, ())
        top = max((n for _, n in hot), default=1) or 1
        for track, plays in hot:
            hot_pos = catalogue.position(track)
            if hot_pos is not None and catalogue.clusters[hot_pos] == cluster:
                offer(hot_pos, weight + params.trending_weight * plays / top, "trending in your mix")
        mix = eligible(_near_mix(catalogue, recent_pos, cluster, depth))
        for pos, closeness in _closeness(mix, params.seed_decay):
            offer(pos, weight + params.mix_weight * closeness, "more from your mix")

    # Cold start; or right after a skip with nothing else in the mix: what is trending.
    if not weights or (stepping_back and not any(w > 0 for _, w in strongest)):
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


def _closeness(near: list[tuple[int, float]], relative: float | None) -> list[tuple[int, float]]:
    """``(pos, closeness)`` of tracks given nearest first: ``1 / (1 + distance)``, or with
    ``relative`` set, the nearest's distance over each one's (1 for the nearest)."""
    if relative is None or not near:
        return [(pos, 1.0 / (1.0 + d)) for pos, d in near]
    nearest = max(near[0][1], 1e-9)
    return [(pos, min(1.0, nearest / max(d, 1e-9))) for pos, d in near]


def _near_mix(
    catalogue: Catalogue, recent_pos: list[int], cluster: int, depth: int = PER_SEED
) -> list[tuple[int, float]]:
    """The ``depth`` tracks of ``cluster`` nearest to the centre of the listener's recent tracks
    in it, drawn from those tracks' (cached) neighbours; with no recent track in the cluster,
    the whole cluster is searched from the centre of all recent tracks."""
    if not recent_pos:
        return []
    inside = [p for p in recent_pos if catalogue.clusters[p] == cluster][-MIX_SEEDS:]
    if not inside:
        return catalogue.closest_in(
            cluster, catalogue.coords(recent_pos).sum(axis=0) / len(recent_pos), depth
        )
    centre = catalogue.coords(inside).sum(axis=0) / len(inside)
    pool = sorted({p for seed in inside for p, _ in catalogue.nearest(seed, 2 * depth)} | set(inside))
    d = np.sqrt(((catalogue.coords(pool) - centre) ** 2).sum(axis=1))
    ranked = sorted(zip(d.tolist(), pool, strict=True))[:depth]
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
    back = skipped_cluster(state, catalogue) if params.skip_penalty > 0 else None
    if back is not None:
        picked = make_room(picked, found, back, k)
    return fill(state, catalogue, picked, popularity, k, now=now, half_life_s=half_life_s)
