"""Model and streaming commands of the ``cadenza`` CLI (entry point ``cadenza.cli: streaming_jobs``).

``cadenza model train | list | show | promote | report``: settings come from the
environment (``CADENZA_*``); MongoDB through :mod:`infra.mongo`, Spark (``train``
only) through :func:`infra.spark.spark_session`. Long steps show rich progress and
every command ends with a one-screen summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from pymongo import MongoClient
from pymongo.database import Database
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgressBar
from rich.table import Table

from infra.logs import setup_logging
from infra.mongo import Doc, client
from infra.settings import Settings, get_settings
from schemas.documents import ModelDoc
from streaming_jobs.errors import TrainingConfigError
from streaming_jobs.model import registry
from streaming_jobs.model.dataset import count_tracks
from streaming_jobs.model.report import summary_rows, write_report
from streaming_jobs.model.snapshot import write_snapshot

console = Console()
model_app = typer.Typer(
    help="The K-Means model: train, evaluate, list, show, promote, report.", no_args_is_help=True
)


class RichProgress:
    """:class:`streaming_jobs.model.progress.Progress` on a rich progress display."""

    def __init__(self, bar: RichProgressBar) -> None:
        self._bar = bar
        self._task: TaskID | None = None

    def _finish(self) -> None:
        if self._task is None:
            return
        task = next(t for t in self._bar.tasks if t.id == self._task)
        done = max(task.completed, task.total or 0, 1)
        self._bar.update(self._task, total=done, completed=done)

    def stage(self, description: str, total: int | None = None) -> None:
        self._finish()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, amount)

    def note(self, message: str) -> None:
        self._bar.console.print(f"  {message}", highlight=False)

    def close(self) -> None:
        self._finish()


@contextmanager
def _progress() -> Iterator[RichProgress]:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with RichProgressBar(*columns, console=console, transient=False) as bar:
        progress = RichProgress(bar)
        yield progress
        progress.close()


def _settings() -> Settings:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    return settings


@contextmanager
def _database(settings: Settings) -> Iterator[Database[Doc]]:
    mongo: MongoClient[Doc] = client(settings)
    try:
        yield mongo[settings.mongodb_db]
    finally:
        mongo.close()


def _print_model(doc: ModelDoc) -> None:
    table = Table(title=f"Model {doc.id}", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for label, value in summary_rows(doc):
        table.add_row(label, value)
    console.print(table)
    sweep = doc.metrics.get("sweep", [])
    if len(sweep) > 1:
        st = Table(title="k sweep (training tracks)", title_justify="left")
        for col in ("k", "silhouette", "cost", "iterations"):
            st.add_column(col, justify="right")
        for p in sweep:
            mark = " *" if p["k"] == doc.k else ""
            st.add_row(f"{p['k']}{mark}", f"{p['silhouette']:.4f}", f"{p['cost']:.4g}", str(p["iterations"]))
        console.print(st)
    sizes = doc.metrics.get("cluster_sizes", [])
    if sizes:
        console.print("cluster sizes: " + " ".join(f"{c}:{n}" for c, n in enumerate(sizes)), highlight=False)


def _ks(k: int | None, k_range: str | None, default: int) -> tuple[int, ...]:
    from streaming_jobs.model.kmeans import parse_k_range

    if k is not None and k_range is not None:
        raise TrainingConfigError("give either --k or --k-range, not both")
    if k_range is not None:
        return parse_k_range(k_range)
    return (k if k is not None else default,)


@model_app.command("train")
def train(
    k: int | None = typer.Option(None, "--k", help="Number of clusters [default: CADENZA_MODEL_K]."),
    k_range: str | None = typer.Option(
        None, "--k-range", help="Fit each k of START:END[:STEP] (end inclusive) and keep the best silhouette."
    ),
    promote: bool | None = typer.Option(
        None,
        "--promote/--no-promote",
        help="Make the new model current and write its clusters to every track "
        "[default: only if there is no current model yet].",
    ),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of tracks held out to measure precision@10."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Tracks per MongoDB bulk write."),
) -> None:
    """Train K-Means on every track's feature vector (Spark ML: scaler, PCA, K-Means),
    evaluate it against genres and baselines, and register it."""
    from infra.spark import spark_session
    from streaming_jobs.model.train import TrainingOptions, run_training

    settings = _settings()
    options = TrainingOptions(
        ks=_ks(k, k_range, settings.model_k), holdout=holdout, promote=promote, batch_size=batch_size
    )
    with console.status("starting Spark …"):
        spark = spark_session(settings, "cadenza-model-train")
    with _database(settings) as db, _progress() as progress:
        run = run_training(spark, db, settings, options, progress)
    _print_model(run.doc)
    if run.promotion is not None:
        p = run.promotion
        console.print(
            f"[green]promoted[/] {p.version}: clusters written to {p.tracks_written} tracks "
            f"(+{p.tracks_caught_up} added since training)"
        )
    else:
        console.print(f"not promoted; make it current with `cadenza model promote {run.doc.id}`")
    console.print(f"report: `cadenza model report {run.doc.id}`")


@model_app.command("list")
def list_models() -> None:
    """Every registered model, newest first (* = current)."""
    settings = _settings()
    with _database(settings) as db:
        docs = registry.list_models(db)
    if not docs:
        console.print(f"no models in database {settings.mongodb_db}: run `cadenza model train`")
        return
    table = Table(title=f"Models in {settings.mongodb_db}", title_justify="left")
    for col in ("", "version", "created (UTC)", "k", "tracks", "silhouette", "NMI", "P@10 (random)"):
        table.add_column(col, no_wrap=col in ("", "version"))
    for doc in docs:
        m = doc.metrics
        precision = m.get("recommendation", {}).get("precision", {})
        table.add_row(
            "*" if doc.current else "",
            doc.id,
            f"{doc.created:%Y-%m-%d %H:%M}",
            str(doc.k),
            str(m.get("n_tracks", "")),
            f"{m.get('silhouette') or 0:.3f}",
            f"{m.get('genre', {}).get('nmi') or 0:.3f}",
            f"{precision.get('cluster') or 0:.3f} ({precision.get('random') or 0:.3f})",
        )
    console.print(table)


@model_app.command("show")
def show(version: str = typer.Argument(..., help="Model version, or 'current'.")) -> None:
    """Metrics, sweep and paths of one model."""
    settings = _settings()
    with _database(settings) as db:
        doc = registry.get_model(db, version)
    _print_model(doc)


@model_app.command("promote")
def promote(
    version: str = typer.Argument(..., help="Model version (see `cadenza model list`)."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Tracks per MongoDB bulk write."),
) -> None:
    """Make a model current: write its clusters to every track, then flip the registry."""
    settings = _settings()
    with _database(settings) as db, _progress() as progress:
        result = registry.promote(db, settings, version, batch_size=batch_size, progress=progress)
    console.print(
        f"[green]{result.version} is current[/] (was {result.previous or 'none'}): clusters written to "
        f"{result.tracks_written} tracks (+{result.tracks_caught_up} added since training)"
    )
    if result.snapshot is None:
        console.print("[yellow]no catalogue snapshot: cold starts will scan tracks (see the log)[/]")


@model_app.command("snapshot")
def snapshot(
    version: str = typer.Argument("current", help="Model version, or 'current'."),
) -> None:
    """Write the model's catalogue snapshot again (every track's cluster and coordinates, and
    the track topics' offsets it covers), so workers and gateways that start next replay only
    what is announced after it. Promotion writes one; refresh it after a large import."""
    settings = _settings()
    with _database(settings) as db, _progress() as progress:
        doc = registry.get_model(db, version)
        progress.stage(f"reading tracks for the snapshot of {doc.id}", total=count_tracks(db))
        written = write_snapshot(db, settings, registry.load_export(doc), on_batch=progress.advance)
    covered = "" if written.offsets else " [yellow](no topic offsets: the broker did not answer)[/]"
    console.print(
        f"[green]wrote {written.path}[/]: {written.tracks} tracks, {written.placed} placed, "
        f"in {written.seconds:.1f} s{covered}"
    )


@model_app.command("report")
def report(
    version: str = typer.Argument(..., help="Model version, or 'current'."),
    out: Path | None = typer.Option(None, "--out", help="Directory [default: <model dir>/report]."),
) -> None:
    """Write an HTML page with PNG plots: sweep, 2-D projection, cluster x genre heatmap, sizes."""
    settings = _settings()
    with _database(settings) as db:
        doc = registry.get_model(db, version)
    target = out or Path(doc.export_path).parent / "report"
    page = write_report(doc, registry.load_projection(doc), target)
    console.print(f"wrote {page}")


# --- cadenza stream ----------------------------------------------------------------------

stream_app = typer.Typer(
    help="Spark Structured Streaming jobs: assign new tracks live; sessions, trending and "
    "history from plays; their status and lag.",
    no_args_is_help=True,
)
ONCE_HELP = "Process what is on the topic now, then stop (catch-up or batch use)."


@stream_app.command(
    "assign",
    help="tracks.new -> current model -> tracks (cluster, model version) + tracks.assigned; "
    "bad records -> dlq. A newly promoted model is used from the next micro-batch. Ctrl-C stops.",
)
def stream_assign(once: bool = typer.Option(False, "--once", help=ONCE_HELP)) -> None:
    from streaming_jobs.streams.runner import run

    raise typer.Exit(run(_settings(), "assign", once=once))


@stream_app.command(
    "plays",
    help="plays -> history (plays), closed sessions, listener profiles (users), trending "
    "(collection + topic); bad records -> dlq. Event time with a watermark, checkpoints under "
    "the data dir. Ctrl-C stops.",
)
def stream_plays(once: bool = typer.Option(False, "--once", help=ONCE_HELP)) -> None:
    from streaming_jobs.streams.runner import run

    raise typer.Exit(run(_settings(), "plays", once=once))


@stream_app.command(
    "status",
    help="Each query: running or not, its last batch (rows/s in and processed, duration, "
    "watermark), what it wrote, and its lag (topic end offsets minus its checkpoint's offsets).",
)
def stream_status(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    import json

    from infra.errors import UnreachableError
    from infra.kafka_clients import end_offsets
    from streaming_jobs.streams.shared.names import SOURCES
    from streaming_jobs.streams.shared.status import query_rows

    settings = _settings()
    note = None
    try:
        ends: dict[str, dict[int, int]] | None = end_offsets(
            settings, {settings.topic(t) for t in SOURCES.values()}, timeout_ms=3000
        )
    except UnreachableError as err:
        ends, note = None, f"lag unknown: {err}"
    rows = query_rows(settings, ends)
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table(title="Streaming queries", title_justify="left")
    for col in ("query", "state", "batch", "in/s", "done/s", "batch ms", "lag"):
        table.add_column(col, justify="left" if col in ("query", "state") else "right", no_wrap=True)
    colours = {"running": "green", "failed": "red", "stopped": "yellow", "never run": "dim"}
    for r in rows:
        p = r["progress"]
        table.add_row(
            r["query"],
            f"[{colours[r['state']]}]{r['state']}[/]",
            str(p.get("batch_id", "")),
            str(p.get("input_rows_per_s", "")),
            str(p.get("processed_rows_per_s", "")),
            str(p.get("batch_duration_ms", "")),
            "?" if r["lag"] is None else str(r["lag"]),
        )
    console.print(table)
    for r in rows:
        details = [f"pid {r['pid']}"] if r["state"] == "running" else []
        if r["progress"].get("watermark"):
            details.append(f"watermark {r['progress']['watermark']}")
        if r["dropped_by_watermark_total"]:
            details.append(f"late plays dropped {r['dropped_by_watermark_total']}")
        details += [f"{k} {v}" for k, v in sorted(r["counters"].items())]
        if details:
            console.print(f"  {r['query']}: " + ", ".join(details), highlight=False)
        if r["error"]:
            console.print(f"  [red]{r['query']} failed:[/] {r['error']}", highlight=False)
    if note:
        console.print(f"[yellow]{note}[/]", highlight=False)
    if all(r["state"] == "never run" for r in rows):
        console.print(
            "no streaming job has run yet: start `cadenza stream assign` and `cadenza stream plays`"
        )


def register(app: typer.Typer) -> None:
    """Add the model and stream commands to the root ``cadenza`` app."""
    app.add_typer(model_app, name="model")
    app.add_typer(stream_app, name="stream")
