"""Bench only: the closed loop of ``python -m bench.quality``, pure and importable (e.g. by a tuning script).

Source: a :class:`recommender_stream.catalogue.Catalogue` (tracks, clusters, model space),
each track's genre (and length) and the ranking's :class:`~recommender_stream.ranking.RankingParams`.
Destination: a :class:`QualityReport` (figures per strategy; :meth:`QualityReport.to_dict`
is the bench's JSON). No IO: :func:`simulate_quality` is a function of its arguments.

The loop, per seed and per strategy, for ``listeners`` listeners taking ``plays`` turns
each (round-robin, so popularity grows as it would with listeners playing side by side):

1. the listener (:mod:`simulator.choice`: home genre, drift, choice, skip/like) chooses its
   next track from the list it was last pushed, or browses;
2. its events (``play``, then ``skip`` or [``like``] ``complete``, in event time) are folded
   into its :class:`~recommender_stream.listener.ListenerState` with
   :class:`~recommender_stream.listener.Limits` (``half_life_s``, ``last_n``);
3. a new list of ``k`` tracks is made by the strategy, as the worker makes one after the
   listener's last event:

   * ``cadenza``: :func:`recommender_stream.ranking.recommend` with the given params, over
     popularity = plays counted so far (the top :data:`~recommender_stream.processor.POPULAR_KEPT`,
     rebuilt every :data:`~recommender_stream.processor.POPULAR_EVERY` plays, as the worker's
     processor does) and, unless ``trending=False``, trending = per cluster its
     :data:`TRENDING_KEPT` most played tracks so far (a stand-in for the streaming job's
     windowed counts, rebuilt with popularity);
   * ``popularity``: the most played tracks so far (the same top list), minus the
     listener's recent and skipped tracks, then seeded random tracks to fill up;
   * ``same-cluster``: seeded random tracks of the cluster of the track just played (also
     when skipped), minus recent and skipped, filled up to ``k`` with seeded random tracks
     of the whole catalogue when the cluster has fewer left; with no history, of the whole
     catalogue.

The listener's browsing catalogue holds the tracks the ranking may recommend (those with
audio, while any track has). Drifts are drawn from a random stream of their own per listener
(``f"{seed}:{listener}:taste"``), so every strategy faces the same drifts at the same plays.

Figures (per strategy, all seeds together; ``per_seed`` apart):

* **in-genre share** of a list: the share of its tracks in the listener's *current* home
  genre (after a drift, the new one). After each drift, the shares of the lists shown at
  0, 1, ... ``window`` plays since the drift (0: the list on screen as the taste changed)
  form an *episode*; **plays to adapt** is the first such count whose list has a share
  above 0.5. Episodes cut by the next drift or the end of the run before adapting are
  ``censored`` (left out of median and p90); ``never`` = followed for ``window`` plays
  without adapting (counted as infinitely slow in median and p90, shown as "> window").
* **a cluster's standing** in a list of ``k`` positions: its Borda points, ``k - i`` for
  each of its tracks at position ``i`` (0 first), so both how many of its tracks are listed
  and how high count. A play is compared with the list shown before it *minus the played
  track* (which is never listed again, whatever the listener did; positions closed up) and
  the list after it, cut to as many positions (a list that only lost the played track and
  took one more at the bottom is unchanged). As the worker does, a list is made after every
  event (``play``, then ``skip`` or [``like``] ``complete``), and each reaction is judged
  by the list it brings against the one on screen when it happened (the list after the
  ``play``, or after the ``like``). After a **skip**: does the skipped track's cluster go
  ``down`` (``down_share`` = downs / skips with the cluster in either list; those absent
  from both are counted apart, ``absent``)? After a **like** (and, for reference, a
  **complete**): does it go ``up`` (``up_share``)? Acceptance, hit rate, turnover and the
  in-genre share are per track: the list on screen when the listener chose it.
* **acceptance**: plays with source ``up_next`` / all plays; **hit rate@10**: plays whose
  track was in the first 10 of the list shown before them; **turnover**: per play, the
  share of the new list not in the previous one.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from recommender_stream.catalogue import Catalogue
from recommender_stream.listener import Limits, ListenerState
from recommender_stream.processor import POPULAR_EVERY, POPULAR_KEPT
from recommender_stream.ranking import PREVIOUS, RankingParams, recommend
from schemas.events import PlayKind
from simulator.choice import UP_NEXT, ChoiceModel, Chooser, new_chooser, step
from simulator.plays import DEFAULT_DURATION_S, NO_GENRE, Track, build_catalogue
from simulator.plays import Catalogue as Browse

STRATEGIES: Final = ("cadenza", "popularity", "same-cluster")
#: Tracks per cluster in the stand-in for trending.
TRENDING_KEPT: Final = 20
#: Hit rate at this many list positions.
HIT_AT: Final = 10
ADAPTED: Final = 0.5


@dataclass(frozen=True)
class Setup:
    """The run's size and the recommender's settings other than the ranking's weights."""

    listeners: int = 200
    plays: int = 100
    k: int = 10
    half_life_s: float = 1800.0
    last_n: int = 20
    #: Plays followed after a drift.
    window: int = 20
    trending: bool = True
    #: Every track this long, in seconds (None: the lengths given, else 200 s).
    track_s: float | None = None

    def __post_init__(self) -> None:
        if self.listeners < 1 or self.plays < 1 or self.k < 1 or self.last_n < 1 or self.window < 1:
            raise ValueError("listeners, plays, k, last_n and window must be at least 1")
        if not 0.0 < self.half_life_s < math.inf:
            raise ValueError(f"half_life_s must be a positive number of seconds, got {self.half_life_s}")
        if self.track_s is not None and not 0.0 < self.track_s < math.inf:
            raise ValueError(f"track_s must be a positive number of seconds, got {self.track_s}")


# --- counting ---------------------------------------------------------------------------------


def standing(listed: Sequence[int], cluster: int, cluster_of: Mapping[int, int], k: int) -> int:
    """A cluster's Borda points in a list: ``k - i`` per track of it at position ``i``."""
    return sum(k - i for i, t in enumerate(listed) if cluster_of.get(t) == cluster)


def rank_change(
    before: Sequence[int], after: Sequence[int], track_id: int, cluster_of: Mapping[int, int], k: int
) -> str:
    """``"absent"``, ``"down"``, ``"same"`` or ``"up"``: the standing of ``track_id``'s cluster in
    ``after`` against ``before`` without ``track_id`` (positions closed up), over as many
    positions as that leaves (so a list that only lost the played track and took one more
    at the bottom is unchanged)."""
    cluster = cluster_of[track_id]
    kept = [t for t in before if t != track_id]
    old = standing(kept, cluster, cluster_of, k)
    new = standing(after[: len(kept)], cluster, cluster_of, k)
    if old == 0 and new == 0:
        return "absent"
    return "down" if new < old else "up" if new > old else "same"


def in_genre(listed: Sequence[int], home: str, genre_of: Mapping[int, str]) -> float:
    return sum(genre_of.get(t) == home for t in listed) / len(listed) if listed else 0.0


@dataclass
class Tally:
    """Raw counts of one strategy (one seed, or several merged)."""

    plays: int = 0
    up_next: int = 0
    hits: int = 0
    turnover: float = 0.0
    turnover_n: int = 0
    share: float = 0.0
    share_n: int = 0
    #: In-genre shares at 0, 1, ... plays since each drift (at most window + 1 of them).
    episodes: list[list[float]] = field(default_factory=list)
    skips: Counter[str] = field(default_factory=Counter)
    likes: Counter[str] = field(default_factory=Counter)
    completes: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0

    def merge(self, other: Tally) -> None:
        self.plays += other.plays
        self.up_next += other.up_next
        self.hits += other.hits
        self.turnover += other.turnover
        self.turnover_n += other.turnover_n
        self.share += other.share
        self.share_n += other.share_n
        self.episodes.extend(other.episodes)
        self.skips.update(other.skips)
        self.likes.update(other.likes)
        self.completes.update(other.completes)
        self.cpu_s += other.cpu_s


def adapt_after(episode: Sequence[float], window: int) -> int | None:
    """Plays since the drift until the list's in-genre share passes 0.5; ``window + 1`` (never)
    when followed for ``window`` plays without; None (censored) when cut before either."""
    for x, share in enumerate(episode):
        if share > ADAPTED:
            return x
    return window + 1 if len(episode) > window else None


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (of sorted, non-empty ``values``)."""
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def summarize(tally: Tally, window: int) -> dict[str, Any]:
    """A strategy's figures from its raw counts (the JSON of one strategy)."""
    adapts = [adapt_after(e, window) for e in tally.episodes]
    followed = sorted(a for a in adapts if a is not None)
    never = sum(a > window for a in followed)

    def quantile(q: float) -> int | None:
        if not followed:
            return None
        value = nearest_rank(followed, q)
        return None if value > window else int(value)

    curve: dict[str, list[Any]] = {"x": [], "n": [], "median": [], "p25": [], "p75": []}
    for x in range(window + 1):
        at = [e[x] for e in tally.episodes if len(e) > x]
        if not at:
            break
        p25, median, p75 = np.percentile(at, [25, 50, 75]).tolist()
        for name, value in (("x", x), ("n", len(at)), ("median", median), ("p25", p25), ("p75", p75)):
            curve[name].append(round(value, 4) if isinstance(value, float) else value)
    after = [s for e in tally.episodes for s in e[1:]]

    def changes(counts: Counter[str], direction: str) -> dict[str, Any]:
        seen = counts["down"] + counts["same"] + counts["up"]
        share = _ratio(counts[direction], seen)
        return {**{k: counts[k] for k in ("down", "same", "up", "absent")}, f"{direction}_share": share}

    return {
        "plays": tally.plays,
        "acceptance": _ratio(tally.up_next, tally.plays),
        "hit_rate_at_10": _ratio(tally.hits, tally.plays),
        "turnover": _ratio(tally.turnover, tally.turnover_n),
        "in_genre_share": _ratio(tally.share, tally.share_n),
        "after_drift_share": _ratio(sum(after), len(after)),
        "drifts": len(tally.episodes),
        "adapt": {
            "median": quantile(50),
            "p90": quantile(90),
            "never_share": _ratio(never, len(followed)),
            "adapted": len(followed) - never,
            "never": never,
            "censored": len(adapts) - len(followed),
            "window": window,
        },
        "skips": changes(tally.skips, "down"),
        "likes": changes(tally.likes, "up"),
        "completes": changes(tally.completes, "up"),
        "curve": curve,
        "cpu_s": round(tally.cpu_s, 2),
    }


# --- the strategies ----------------------------------------------------------------------------


class World:
    """What one strategy sees during one seed's run: play counts, popularity, trending."""

    def __init__(
        self,
        catalogue: Catalogue,
        strategy: str,
        params: RankingParams,
        setup: Setup,
        seed: int,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
        self.catalogue, self.strategy, self.params, self.setup = catalogue, strategy, params, setup
        self.popularity: Counter[int] = Counter()
        self.by_cluster: dict[int, Counter[int]] = {}
        self.popular: dict[int, int] = {}
        self.popular_order: list[int] = []
        self.trending: dict[int, list[tuple[int, int]]] = {}
        self.counted = 0
        self.rng = random.Random(f"{seed}:{strategy}:lists")

    def count(self, track_id: int, cluster: int) -> None:
        """One ``play`` event (the worker's popularity counts only those)."""
        self.popularity[track_id] += 1
        self.by_cluster.setdefault(cluster, Counter())[track_id] += 1
        self.counted += 1
        if len(self.popular) < POPULAR_KEPT or self.counted % POPULAR_EVERY == 0:
            self.popular = dict(self.popularity.most_common(POPULAR_KEPT))
            self.popular_order = sorted(self.popular, key=lambda t: (-self.popular[t], t))
            if self.setup.trending:
                self.trending = {c: n.most_common(TRENDING_KEPT) for c, n in self.by_cluster.items()}

    def up_next(self, state: ListenerState, *, now: float, last: int | None) -> list[int]:
        """The list this strategy pushes after the listener's last event."""
        k = self.setup.k
        if self.strategy == "cadenza":
            picks = recommend(
                state,
                self.catalogue,
                self.trending,
                self.popular,
                k=k,
                now=now,
                half_life_s=self.setup.half_life_s,
                params=self.params,
            )
            return [p.track_id for p in picks]
        excluded = set(state.recent) | set(state.skipped)
        cat = self.catalogue
        if self.strategy == "popularity":
            out = [t for t in self.popular_order if t not in excluded][:k]
            return self._fill(out, excluded, range(len(cat)))
        where = None if last is None else cat.position(last)
        pool: Sequence[int] = range(len(cat)) if where is None else cat.members(cat.clusters[where]).tolist()
        # A cluster with fewer than k tracks left fills up from the whole catalogue: every
        # strategy shows k tracks whenever the catalogue has them, as the ranking does.
        return self._fill(self._fill([], excluded, pool), excluded, range(len(cat)))

    def _fill(self, out: list[int], excluded: set[int], pool: Sequence[int]) -> list[int]:
        """Seeded random tracks of ``pool`` (positions) up to ``k``; a scan when draws keep missing."""
        k, cat = self.setup.k, self.catalogue
        taken = set(out)

        def offer(pos: int) -> None:
            track = cat.ids[pos]
            if track not in excluded and track not in taken and cat.recommendable(pos):
                taken.add(track)
                out.append(track)

        for _ in range(20 * k):
            if len(out) >= k or not pool:
                return out
            offer(pool[self.rng.randrange(len(pool))])
        for pos in pool:
            if len(out) >= k:
                break
            offer(pos)
        return out


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class _Listener:
    chooser: Chooser
    rng: random.Random
    taste: random.Random
    state: ListenerState
    shown: list[int]
    last: int | None = None
    events: int = 0
    episode: list[float] | None = None


def browsable(
    catalogue: Catalogue, genres: Mapping[int, str], lengths: Mapping[int, float] | None, setup: Setup
) -> dict[int, Track]:
    """The tracks a simulated listener can play (those the ranking may recommend), by id."""
    out: dict[int, Track] = {}
    for pos, track_id in enumerate(catalogue.ids):
        if catalogue.recommendable(pos):
            length = setup.track_s or (lengths or {}).get(track_id) or DEFAULT_DURATION_S
            out[track_id] = Track(track_id, genres.get(track_id) or NO_GENRE, float(length))
    if not out:
        raise ValueError("the catalogue has no track to recommend")
    return out


def run_once(
    catalogue: Catalogue,
    tracks: Mapping[int, Track],
    browse: Browse,
    strategy: str,
    params: RankingParams,
    setup: Setup,
    model: ChoiceModel,
    seed: int,
) -> Tally:
    """One strategy, one seed: the closed loop of the module's docstring."""
    started = time.process_time()
    world = World(catalogue, strategy, params, setup, seed)
    limits = Limits(last_n=setup.last_n, half_life_s=setup.half_life_s)
    genre_of = {t: tr.genre for t, tr in tracks.items()}
    cluster_of = dict(zip(catalogue.ids, catalogue.clusters, strict=True))
    tally = Tally()
    people: list[_Listener] = []
    for i in range(setup.listeners):
        taste = random.Random(f"{seed}:{i}:taste")
        state = ListenerState()
        chooser = new_chooser(browse, taste)
        people.append(
            _Listener(
                chooser,
                random.Random(f"{seed}:{i}:choice"),
                taste,
                state,
                world.up_next(state, now=0.0, last=None),
            )
        )
    for _ in range(setup.plays):
        for who in people:
            offered = [tracks[t] for t in who.shown if t in tracks]
            play = step(who.chooser, offered, browse, model, who.rng, drift_rng=who.taste)
            track_id = play.track.track_id
            if play.drifted:
                if who.episode is not None:
                    tally.episodes.append(who.episode)
                who.episode = []
            share = in_genre(who.shown, play.home, genre_of)
            tally.share += share
            tally.share_n += 1
            if who.episode is not None:
                who.episode.append(share)
                if len(who.episode) > setup.window:
                    tally.episodes.append(who.episode)
                    who.episode = None
            tally.plays += 1
            tally.up_next += play.source == UP_NEXT
            tally.hits += track_id in who.shown[:HIT_AT]
            cluster = cluster_of[track_id]
            # As the worker does, a new list after every event; a skip, like or completion is
            # judged by the list it brings against the one on screen when it happened.
            on_screen = who.shown
            for event in play.events:
                who.events += 1
                who.state.apply(
                    f"{who.events:016x}",
                    track_id=track_id,
                    kind=event.kind.value,
                    cluster=cluster,
                    ts=event.ts,
                    limits=limits,
                )
                if event.kind is PlayKind.PLAY:
                    world.count(track_id, cluster)
                after = world.up_next(who.state, now=event.ts, last=track_id)
                # One outcome per track: its skip, its like, or its plain completion.
                if event.kind is not PlayKind.PLAY and not (event.kind is PlayKind.COMPLETE and play.liked):
                    change = rank_change(on_screen, after, track_id, cluster_of, setup.k)
                    reaction = {PlayKind.SKIP: tally.skips, PlayKind.LIKE: tally.likes}
                    reaction.get(event.kind, tally.completes)[change] += 1
                on_screen = after
            new = on_screen
            if new:
                tally.turnover += len(set(new) - set(who.shown)) / len(new)
                tally.turnover_n += 1
            who.shown, who.last = new, track_id
    tally.episodes.extend(who.episode for who in people if who.episode is not None)
    tally.cpu_s = time.process_time() - started
    return tally


@dataclass(frozen=True)
class QualityReport:
    """Figures per strategy (all seeds merged) and per seed; :meth:`to_dict` is the JSON."""

    setup: Setup
    model: ChoiceModel
    params: RankingParams
    seeds: tuple[int, ...]
    catalogue: dict[str, Any]
    strategies: dict[str, dict[str, Any]]
    per_seed: dict[str, list[dict[str, Any]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "setup": asdict(self.setup),
            "choice_model": asdict(self.model),
            "params": asdict(self.params),
            "seeds": list(self.seeds),
            "catalogue": self.catalogue,
            "strategies": self.strategies,
            "per_seed": self.per_seed,
        }


def simulate_quality(
    catalogue: Catalogue,
    genres: Mapping[int, str],
    params: RankingParams = PREVIOUS,
    seeds: Iterable[int] = (1, 2, 3),
    *,
    setup: Setup | None = None,
    model: ChoiceModel | None = None,
    lengths: Mapping[int, float] | None = None,
    strategies: Sequence[str] = STRATEGIES,
    progress: Callable[[int, str, Tally], None] | None = None,
) -> QualityReport:
    """Run the closed loop for every strategy and seed; ``genres`` (track id -> genre) and
    ``lengths`` (track id -> seconds) may miss tracks ("(no genre)", 200 s). ``progress``
    is called after each run with its seed, strategy and raw counts."""
    setup = setup or Setup()
    model = model or ChoiceModel()
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("at least one seed")
    tracks = browsable(catalogue, genres, lengths, setup)
    merged = {s: Tally() for s in strategies}
    per_seed: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    for seed in seeds:
        browse = build_catalogue(tracks.values(), seed=seed, zipf_exponent=model.zipf_exponent)
        for strategy in strategies:
            tally = run_once(catalogue, tracks, browse, strategy, params, setup, model, seed)
            merged[strategy].merge(tally)
            if progress is not None:
                progress(seed, strategy, tally)
            figures = summarize(tally, setup.window)
            per_seed[strategy].append(
                {"seed": seed, **{k: figures[k] for k in ("acceptance", "after_drift_share", "drifts")}}
                | {
                    "adapt_median": figures["adapt"]["median"],
                    "skip_down_share": figures["skips"]["down_share"],
                }
            )
    info = {
        "tracks": len(catalogue),
        "browsable": len(tracks),
        "clusters": len({catalogue.clusters[catalogue.position(t) or 0] for t in tracks}),
        "genres": len({t.genre for t in tracks.values()}),
        "mean_track_s": round(sum(t.duration_s for t in tracks.values()) / len(tracks), 1),
    }
    return QualityReport(
        setup,
        model,
        params,
        seeds,
        info,
        {s: summarize(merged[s], setup.window) for s in strategies},
        per_seed,
    )


def separated_catalogue(
    tracks: int = 600, *, clusters: int = 3, genres_per_cluster: int = 2, dims: int = 8, seed: int = 0
) -> tuple[Catalogue, dict[int, str]]:
    """A hand-built catalogue and its genres: ``clusters`` well-separated blobs (40 apart) in
    ``dims`` dimensions, each split into ``genres_per_cluster`` genres 12 apart inside it
    (unit noise), as K-Means with fewer clusters than genres leaves them; tracks shared out
    evenly (the rest left out), ids 1, 2, ... by cluster and genre. With one genre per
    cluster, clusters are genres."""
    if clusters < 1 or genres_per_cluster < 1 or tracks < clusters * genres_per_cluster:
        raise ValueError("need at least one track per genre of each cluster")
    if dims < 2 * clusters:
        raise ValueError(f"dims must be at least 2 x clusters ({2 * clusters})")
    rng = np.random.default_rng(seed)
    catalogue = Catalogue(model=None, dims=dims)
    genres: dict[int, str] = {}
    per_genre = tracks // (clusters * genres_per_cluster)
    for c in range(clusters):
        centre = np.zeros(dims)
        centre[c] = 40.0
        for g in range(genres_per_cluster):
            inside = np.zeros(dims)
            inside[clusters + c] = 12.0 * (g - (genres_per_cluster - 1) / 2)
            for _ in range(per_genre):
                track_id = len(catalogue) + 1
                catalogue.add(track_id, c, centre + inside + rng.normal(0.0, 1.0, dims), f"track {track_id}")
                genres[track_id] = f"genre {c}.{g}"
    return catalogue, genres
