"""Benchmark: do recommendations react? Simulated listeners in a closed loop through the real ranking.

Source: a catalogue: the current model's snapshot (``<models_path>/<current>/catalogue.npz``,
as the recommender worker finds it at start-up), ``--snapshot PATH`` to any catalogue
snapshot (:mod:`schemas.catalogue_snapshot`; with the model's ``export.json`` next to it,
loaded by :func:`recommender_stream.catalogue_loader.catalogue_from_snapshot`, else from the
snapshot's arrays alone), or ``--synthetic N`` (:func:`bench.quality_sim.separated_catalogue`:
well-separated clusters of two genres each, no model needed). A track's genre is its
``genre_top`` (``meta``), its length the snapshot's ``duration_s`` (``--track-s`` overrides).
As in production, only tracks with audio are recommended (and played by the simulated
listeners) while any track has audio; ``--all-playable`` takes every track as playable, to
measure the ranking over the whole catalogue (e.g. the demo's imported feature rows).
Destination: a table on stdout, ``bench/results/quality.json`` (``--out``) and
``bench/results/quality.png`` (``--plot``: the in-genre share of the lists over the plays
since a drift, median and interquartile band per strategy).

Listeners (:mod:`simulator.choice`) choose from the list they were pushed or browse their
home genre, drift to other genres now and then, skip, like and complete in event time; their
events are folded into the recommender's own :class:`~recommender_stream.listener.ListenerState`
and the next list comes from :func:`recommender_stream.ranking.recommend` with the
``--seed-weight``, ``--trending-weight``, ``--mix-weight``, ``--lambda`` and ``--half-life-s``
given ("cadenza"), or from a baseline: "popularity" (the most played so far) and
"same-cluster" (random tracks of the last played track's cluster). Every figure is defined
in :mod:`bench.quality_sim`, where the loop lives as a pure function
(:func:`~bench.quality_sim.simulate_quality`) for tuning scripts.

    .venv/bin/python -m bench.quality                                     # current model
    .venv/bin/python -m bench.quality --snapshot PATH/catalogue.npz --listeners 100
    .venv/bin/python -m bench.quality --synthetic 3000 --seeds 1 --half-life-s 600
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import RESULTS_DIR, bounded, run, saved_figure, write_json
from bench.quality_sim import STRATEGIES, QualityReport, Setup, Tally, separated_catalogue, simulate_quality
from infra.settings import get_settings
from recommender_stream.catalogue import Catalogue
from recommender_stream.catalogue_loader import catalogue_from_snapshot
from recommender_stream.ranking import PREVIOUS, PREVIOUS_HALF_LIFE_S, RankingParams, ranking_params
from schemas.catalogue_snapshot import SnapshotError, load_snapshot, snapshot_path
from schemas.cluster_model import EXPORT_FILE, ClusterModel, ClusterModelError, current_version
from simulator.choice import ChoiceModel

console = Console(width=160)
COLOURS = {"cadenza": "tab:blue", "popularity": "tab:orange", "same-cluster": "tab:green"}


@dataclass(frozen=True)
class Source:
    """A catalogue to simulate over, its tracks' genres and lengths, and where it came from."""

    catalogue: Catalogue
    genres: dict[int, str]
    lengths: dict[int, float]
    label: str


def from_snapshot(path: Path, *, all_playable: bool = False) -> Source:
    """The placed tracks of the snapshot at ``path`` with their ``genre_top`` and length;
    ``all_playable``: every track taken as having audio (imported feature rows too)."""
    snapshot = load_snapshot(path)
    export = path.parent / EXPORT_FILE
    genres: dict[int, str] = {}
    lengths: dict[int, float] = {}
    rows = [r for r in snapshot.rows() if r.cluster is not None]
    for row in rows:
        if row.genre_top:
            genres[row.track_id] = row.genre_top
        if row.duration_s > 0:
            lengths[row.track_id] = row.duration_s
    if export.exists():
        try:
            model = ClusterModel.load(export)
        except ClusterModelError as err:
            raise SnapshotError(f"{export}: {err}") from None
        catalogue = catalogue_from_snapshot(snapshot, model).catalogue
        label = f"snapshot {path} (model {model.version})"
    else:  # the arrays alone: the ranking needs no model, only coordinates and clusters
        catalogue = Catalogue(model=None, dims=snapshot.dims)
        placed = snapshot.placed
        coords = snapshot.coords[placed]
        for i, row in enumerate(rows):
            assert row.cluster is not None
            catalogue.add(row.track_id, row.cluster, coords[i], row.title, row.artist, playable=row.playable)
        label = f"snapshot {path} (no {EXPORT_FILE} beside it)"
    if all_playable:
        catalogue.playable = [True] * len(catalogue)
        catalogue.playable_count = len(catalogue)
        label += ", every track taken as playable"
    return Source(catalogue, genres, lengths, label)


def current_snapshot() -> Path:
    """The current model's snapshot, where the recommender looks for it (``_catalogue``)."""
    from infra.settings import Settings

    models = Settings().models_path
    version = current_version(models)
    if version is None:
        raise SystemExit(
            f"no current model under {models}: promote one (`cadenza model train --promote`), "
            "or pass --snapshot PATH or --synthetic N"
        )
    return snapshot_path(models, version)


def source(args: argparse.Namespace) -> Source:
    if args.synthetic:
        catalogue, genres = separated_catalogue(args.synthetic, seed=0)
        return Source(catalogue, genres, {}, f"synthetic: {len(catalogue):,} tracks, 3 clusters x 2 genres")
    path = args.snapshot or current_snapshot()
    try:
        return from_snapshot(path, all_playable=args.all_playable)
    except SnapshotError as err:
        raise SystemExit(f"{err}; pass --snapshot PATH to a usable catalogue.npz, or --synthetic N") from None


# --- the run ------------------------------------------------------------------------------------


def seeds(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not out or len(out) > 20:
        raise argparse.ArgumentTypeError("give 1 to 20 seeds, e.g. 1,2,3")
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality", description=(__doc__ or "").splitlines()[0]
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--snapshot", type=Path, help="a catalogue.npz (default: the current model's)")
    where.add_argument(
        "--synthetic", type=bounded(int, 6, 200_000), help="a hand-built catalogue of this many tracks"
    )
    parser.add_argument(
        "--all-playable",
        action="store_true",
        help="take every track of the snapshot as playable (by default only those with audio are "
        "recommended and played, as in production)",
    )
    parser.add_argument("--seeds", type=seeds, default=(1, 2, 3), help="comma-separated (default 1,2,3)")
    parser.add_argument("--listeners", type=bounded(int, 1, 2000), default=200)
    parser.add_argument("--plays", type=bounded(int, 1, 1000), default=100, help="per listener")
    parser.add_argument("--k", type=bounded(int, 1, 100), default=10, help="tracks per list")
    parser.add_argument("--window", type=bounded(int, 1, 200), default=20, help="plays followed per drift")
    # Defaults: what ships (CADENZA_RECO_*); --previous: the ranking before tuning.
    shipped, half_life = ranking_params(get_settings()), get_settings().reco_half_life_s
    parser.add_argument(
        "--previous",
        action="store_true",
        help=f"the ranking before tuning ({PREVIOUS}, half-life {PREVIOUS_HALF_LIFE_S:g} s); "
        "overrides the weights given",
    )
    parser.add_argument("--half-life-s", type=bounded(float, 1, 30 * 86400), default=half_life)
    parser.add_argument("--seed-weight", type=bounded(float, 0, 100), default=shipped.seed_weight)
    parser.add_argument("--trending-weight", type=bounded(float, 0, 100), default=shipped.trending_weight)
    parser.add_argument("--mix-weight", type=bounded(float, 0, 100), default=shipped.mix_weight)
    parser.add_argument("--lambda", dest="lambda_", type=bounded(float, 0, 1), default=shipped.lambda_)
    parser.add_argument(
        "--skip-penalty", type=bounded(float, 0, 100), default=shipped.skip_penalty, help="see RankingParams"
    )
    parser.add_argument(
        "--seed-decay",
        type=bounded(float, 0, 1),
        default=shipped.seed_decay,
        help="relative closeness, seed r weighted seed_decay**r (see RankingParams)",
    )
    parser.add_argument(
        "--trending",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="trending per cluster = its most played tracks so far (--no-trending: none)",
    )
    parser.add_argument(
        "--drift", type=bounded(float, 0, 1), default=ChoiceModel().drift, help="chance per play"
    )
    parser.add_argument(
        "--track-s", type=bounded(float, 1, 3600), help="every track this long (default: the catalogue's)"
    )
    parser.add_argument(
        "--strategies",
        type=lambda t: tuple(s.strip() for s in t.split(",") if s.strip()),
        default=STRATEGIES,
        help=f"comma-separated, of {','.join(STRATEGIES)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "quality.json")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "quality.png")
    args = parser.parse_args(argv)
    unknown = set(args.strategies) - set(STRATEGIES)
    if unknown or not args.strategies:
        parser.error(f"--strategies: unknown {', '.join(sorted(unknown)) or '(none given)'}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    src = source(args)
    params = RankingParams(
        args.seed_weight,
        args.trending_weight,
        args.mix_weight,
        args.lambda_,
        args.seed_decay,
        args.skip_penalty,
    )
    if args.previous:
        params, args.half_life_s = PREVIOUS, PREVIOUS_HALF_LIFE_S
    setup = Setup(
        listeners=args.listeners,
        plays=args.plays,
        k=args.k,
        half_life_s=args.half_life_s,
        window=args.window,
        trending=args.trending,
        track_s=args.track_s,
    )
    console.print(f"catalogue: {src.label}: {len(src.catalogue):,} tracks", highlight=False)

    def progress(seed: int, strategy: str, tally: Tally) -> None:
        console.print(
            f"  seed {seed} {strategy}: {tally.plays:,} plays, {tally.cpu_s:.1f} s CPU", highlight=False
        )

    started = time.monotonic()
    report = simulate_quality(
        src.catalogue,
        src.genres,
        params,
        args.seeds,
        setup=setup,
        model=ChoiceModel(drift=args.drift),
        lengths=src.lengths,
        strategies=args.strategies,
        progress=progress,
    )
    results: dict[str, Any] = {
        "source": src.label,
        "cpus": os.cpu_count(),
        "wall_s": round(time.monotonic() - started, 1),
        **report.to_dict(),
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(args.out, results)
    plot(report, args.plot)
    console.print(table(report, src.label))
    console.print(f"written: {args.out}, {args.plot}")


# --- the report ---------------------------------------------------------------------------------


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _adapt(adapt: Mapping[str, Any], key: str) -> str:
    value = adapt[key]
    if value is not None:
        return str(value)
    return f"> {adapt['window']}" if adapt["adapted"] + adapt["never"] else "-"


def table(report: QualityReport, label: str) -> Table:
    setup = report.setup
    out = Table(
        title=(
            f"Recommendation quality: {setup.listeners} listeners x {setup.plays} plays x "
            f"{len(report.seeds)} seeds, half-life {setup.half_life_s:g} s, k={setup.k}\n{label}"
        )
    )
    columns = (
        "strategy",
        "accept",
        "hit@10",
        "turnover",
        "in-genre",
        "post-drift",
        "adapt p50/p90",
        "never",
        "skip drops",
        "like gains",
        "done gains",
        "skips (absent)",
        "CPU s",
    )
    for column in columns:
        out.add_column(column, justify="left" if column == "strategy" else "right", no_wrap=True)
    for name, f in report.strategies.items():
        adapt, skips, likes, completes = f["adapt"], f["skips"], f["likes"], f["completes"]
        seen_skips = skips["down"] + skips["same"] + skips["up"]
        out.add_row(
            name,
            _share(f["acceptance"]),
            _share(f["hit_rate_at_10"]),
            _share(f["turnover"]),
            _share(f["in_genre_share"]),
            _share(f["after_drift_share"]),
            f"{_adapt(adapt, 'median')} / {_adapt(adapt, 'p90')}",
            _share(adapt["never_share"]),
            _share(skips["down_share"]),
            _share(likes["up_share"]),
            _share(completes["up_share"]),
            f"{seen_skips:,} ({skips['absent']:,})",
            f"{f['cpu_s']:.1f}",
        )
    return out


def plot(report: QualityReport, path: Path) -> None:
    """In-genre share of the lists over the plays since a drift: median line, interquartile band."""
    with saved_figure(path, 1, figsize=(8, 4.5)) as (_fig, ax):
        for name, f in report.strategies.items():
            curve = f["curve"]
            colour = COLOURS.get(name)
            ax.plot(curve["x"], curve["median"], label=f"{name} (median)", color=colour)
            ax.fill_between(curve["x"], curve["p25"], curve["p75"], alpha=0.2, color=colour)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("plays since the listener's taste drifted")
        ax.set_ylabel("share of the list in the new genre")
        ax.set_ylim(-0.02, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
        setup = report.setup
        ax.set_title(
            f"After a drift: {setup.listeners} listeners x {setup.plays} plays x {len(report.seeds)} seeds, "
            f"half-life {setup.half_life_s:g} s (band: p25-p75)",
            fontsize=9,
        )
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        run(main)
