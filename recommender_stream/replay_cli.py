"""``cadenza evaluate replay``: the offline replay of the plays history (registered by
:mod:`recommender_stream.cli`).

Reads the history and the catalogue (:mod:`recommender_stream.replay_source`), replays it
(:mod:`recommender_stream.replay`) under a rich progress bar, prints one table (a row per
strategy) and what was skipped, and with ``--out`` writes the report, the options and
the sources as JSON. Settings come from the environment (``CADENZA_*``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import typer
from pymongo import MongoClient
from pymongo.database import Database
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from infra.logs import setup_logging
from infra.mongo import Doc
from infra.mongo import client as mongo_client
from infra.settings import Settings, duration_s, get_settings
from recommender_stream.listener import Limits
from recommender_stream.ranking import RankingParams, ranking_params
from recommender_stream.replay import BadRow, Replayer, ReplayEvent, ReplayReport, standard_strategies
from recommender_stream.replay_source import (
    BATCH,
    History,
    ReplayCatalogue,
    file_history,
    load_replay_catalogue,
    mongo_history,
    parse_since,
)

console = Console()
evaluate_app = typer.Typer(
    help="Offline evaluation of the recommendations: `cadenza evaluate replay`.", no_args_is_help=True
)
#: Rows between two progress updates.
PROGRESS_EVERY: Final = 200


def _stepped(rows: Iterable[ReplayEvent | BadRow], progress: Progress, task: Any) -> Iterator[Any]:
    done = 0
    for row in rows:
        yield row
        done += 1
        if done % PROGRESS_EVERY == 0:
            progress.update(task, completed=done)
    progress.update(task, completed=done, total=max(done, 1))


def _table(report: ReplayReport) -> Table:
    table = Table(
        title=f"{report.lists} lists of {report.k} scored against the next play "
        f"({report.listeners} listeners, {report.events} events)",
        title_justify="left",
    )
    for col in ("strategy", "lists", f"hit@{report.k}", "MRR", "novelty", "coverage", "listed"):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=col == "strategy")
    for s in report.scores:
        table.add_row(
            s.name,
            str(s.lists),
            f"{s.hit_rate:.3f}",
            f"{s.mrr:.3f}",
            f"{s.novelty:.2f}",
            f"{s.coverage:.2%}",
            str(s.distinct_tracks),
        )
    return table


def _notes(report: ReplayReport, history: History, catalogue: ReplayCatalogue, seconds: float) -> list[str]:
    def iso(ts: float | None) -> str:
        return "-" if ts is None else f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M:%S}"

    notes = [
        f"history: {history.where}, {report.rows} rows, {iso(report.first_ts)} .. {iso(report.last_ts)} UTC",
        f"catalogue: {report.catalogue_tracks} tracks from the {catalogue.source} ({catalogue.detail})"
        + _playable(catalogue),
        f"replayed in {seconds:.1f} s; trending window "
        + (f"{report.trending_window_s:g} s" if report.trending_window_s > 0 else "off"),
    ]
    if report.unknown_track_events:
        notes.append(
            f"skipped {report.unknown_track_events} events of {report.unknown_tracks} tracks the "
            "catalogue does not hold (newer than the model? run `cadenza model snapshot`)"
        )
    if report.duplicates:
        notes.append(f"skipped {report.duplicates} duplicate events")
    for reason, count in report.malformed.items():
        notes.append(f"skipped {count} malformed rows: {reason} (e.g. {report.malformed_examples[reason]})")
    if report.out_of_order:
        notes.append(f"{report.out_of_order} events were older than the one before (replayed as they came)")
    if report.lists == 0:
        notes.append(
            "[yellow]no list scored: a list is scored before a listener's play from their second "
            "event on; the history needs listeners with several plays (`cadenza simulate`)[/]"
        )
    notes.append(
        f"hit@{report.k}: share of lists holding the track played next; MRR: mean 1/rank of it (0 if "
        "absent); novelty: mean -log2 share of plays of the listed tracks, in bits; coverage: "
        "distinct tracks listed / catalogue"
    )
    return notes


def _playable(catalogue: ReplayCatalogue) -> str:
    playable, size = catalogue.catalogue.playable_count, len(catalogue.catalogue)
    if 0 < playable < size:
        return f"; {playable} with audio, the only ones recommended"
    return ""


def _params(configured: RankingParams, **given: float | None) -> RankingParams:
    """``configured`` with the options given on the command line (None: not given)."""
    try:
        return dataclasses.replace(configured, **{k: v for k, v in given.items() if v is not None})
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _window(text: str | None, settings: Settings) -> float:
    value = text if text is not None else settings.trending_window
    if value.strip().lower() in ("0", "off", "none"):
        return 0.0
    try:
        return float(duration_s(value))
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--trending-window") from None


@evaluate_app.command("replay")
def replay_command(
    *,
    file: Path | None = typer.Option(
        None,
        "--file",
        help="Replay this JSON-lines history (one play per line: _id or event_id, user_id, track_id, "
        "kind, ts as ISO 8601 or epoch seconds; .gz read compressed). Default: MongoDB plays.",
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="Only plays from this time: ISO 8601 (2024-05-01, 2024-05-01T12:00Z) or a duration "
        "before now ('7 days', '3 hours').",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many rows, oldest first."),
    seed_weight: float | None = typer.Option(
        None,
        "--seed-weight",
        min=0.0,
        help="Candidate: weight of 'sounds like'. Default: CADENZA_RECO_SEED_WEIGHT.",
    ),
    trending_weight: float | None = typer.Option(
        None,
        "--trending-weight",
        min=0.0,
        help="Candidate: weight of 'trending in your mix'. Default: CADENZA_RECO_TRENDING_WEIGHT.",
    ),
    mix_weight: float | None = typer.Option(
        None,
        "--mix-weight",
        min=0.0,
        help="Candidate: weight of 'more from your mix'. Default: CADENZA_RECO_MIX_WEIGHT.",
    ),
    lambda_: float | None = typer.Option(
        None,
        "--lambda",
        min=0.0,
        max=1.0,
        help="Candidate: MMR's score vs. diversity (1: score only). Default: CADENZA_RECO_MMR_LAMBDA.",
    ),
    seed_decay: float | None = typer.Option(
        None,
        "--seed-decay",
        min=0.0,
        max=1.0,
        help="Candidate: weight of the seed r tracks back is this to the power r. Default: "
        "CADENZA_RECO_SEED_DECAY.",
    ),
    skip_penalty: float | None = typer.Option(
        None,
        "--skip-penalty",
        min=0.0,
        help="Candidate: what the skipped cluster loses right after a skip. "
        "Default: CADENZA_RECO_SKIP_PENALTY.",
    ),
    half_life_s: float | None = typer.Option(
        None,
        "--half-life-s",
        min=0.001,
        help="Candidate: half-life of a listener's cluster affinity. Default: CADENZA_RECO_HALF_LIFE_S.",
    ),
    k: int = typer.Option(10, "--k", min=1, max=100, help="Tracks per list (hit@k)."),
    trending_window: str | None = typer.Option(
        None,
        "--trending-window",
        help="What the rankings see as trending: events per cluster over this last stretch of the "
        "replay ('10 minutes'), or 'off'. Default: CADENZA_TRENDING_WINDOW.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the same-cluster random baseline."),
    batch_size: int = typer.Option(BATCH, "--batch-size", min=1, help="Documents per MongoDB read."),
    out: Path | None = typer.Option(None, "--out", help="Also write the report as JSON to this file."),
) -> None:
    """Replay the plays history through the real ranking and score what it would have shown.

    Every listener's events are folded, in event-time order, into the state a recommender
    worker keeps; before each of their plays (from their second event on) each strategy
    lists --k tracks from what was known then, scored against the track actually played:
    hit rate, MRR (1/rank, 0 when absent), novelty (mean -log2 of the listed tracks' share
    of the plays so far, add-one smoothed) and coverage (distinct tracks listed / catalogue).

    Strategies: "candidate" (the ranking with the weights given here; by default the
    configured ones, CADENZA_RECO_*), "previous ranking" (the weights and half-life shipped
    before tuning), "popularity" (the most
    played so far) and "same-cluster random" (random tracks of the last played track's
    cluster). The catalogue is the current model's (its snapshot, else a scan of tracks);
    events of tracks it does not hold, duplicates and malformed rows are counted and skipped.
    """
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    candidate = _params(
        ranking_params(settings),
        seed_weight=seed_weight,
        trending_weight=trending_weight,
        mix_weight=mix_weight,
        lambda_=lambda_,
        seed_decay=seed_decay,
        skip_penalty=skip_penalty,
    )
    window_s = _window(trending_window, settings)
    try:
        since_at = None if since is None else parse_since(since)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--since") from None
    mongo: MongoClient[Doc] = mongo_client(settings)  # connects on first use only
    try:
        db: Database[Doc] = mongo[settings.mongodb_db]
        with console.status("loading the catalogue …"):
            catalogue = load_replay_catalogue(settings.models_path, lambda: db)
        if file is not None:
            history = file_history(file, since=since_at, limit=limit)
        else:
            history = mongo_history(db, since=since_at, limit=limit, batch_size=batch_size)
        replayer = Replayer(
            catalogue.catalogue,
            standard_strategies(candidate, half_life_s, seed),
            k=k,
            limits=Limits(settings.reco_last_n, settings.reco_half_life_s, settings.reco_seen_events),
            trending_window_s=window_s,
            trending_top_n=settings.trending_top_n,
        )
        started = time.monotonic()
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("replaying", total=history.total)
            for row in _stepped(history.rows, progress, task):
                replayer.feed(row)
        seconds = time.monotonic() - started
    finally:
        mongo.close()
    report = replayer.report()
    console.print(_table(report))
    for note in _notes(report, history, catalogue, seconds):
        console.print(note, highlight=False)
    if out is not None:
        document = {
            "report": report.to_dict(),
            "history": history.where,
            "catalogue": {
                "source": catalogue.source,
                "detail": catalogue.detail,
                "model_version": catalogue.catalogue.version,
            },
            "options": {
                "candidate": vars(candidate).copy(),
                "candidate_half_life_s": half_life_s or settings.reco_half_life_s,
                "half_life_s": settings.reco_half_life_s,
                "last_n": settings.reco_last_n,
                "since": None if since_at is None else since_at.isoformat(),
                "limit": limit,
                "seed": seed,
            },
            "seconds": round(seconds, 3),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(evaluate_app, name="evaluate")
