"""ETL commands of the ``cadenza`` CLI (entry point ``cadenza.cli: etl``).

``cadenza etl run`` runs the Spark batch job (:mod:`etl.job`): FMA audio -> MongoDB
``tracks`` + ``tracks.new`` events. ``cadenza etl import-features`` loads FMA's
published ``features.csv`` (or synthetic rows) into the same documents
(:mod:`etl.import_features`). ``cadenza sample-data DIR`` writes a small FMA
look-alike with real audio (:mod:`etl.sample_data`). Settings come from ``CADENZA_*``
variables; each command shows a progress bar and ends with a summary table. Errors
are ``CadenzaError`` s, which the root CLI prints as one line.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from etl.progress import progress_bar, summary_table
from infra.logs import setup_logging
from infra.settings import Settings, get_settings

console = Console()
etl_app = typer.Typer(
    help="Feature extraction: FMA audio or published features -> MongoDB tracks (+ tracks.new events).",
    no_args_is_help=True,
)
MAX_FAILURES_SHOWN = 10


def _settings() -> Settings:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    return settings


@etl_app.command("run")
def run(
    fma_dir: Path | None = typer.Option(
        None,
        "--fma-dir",
        help="FMA root with fma_metadata/ and audio folders [default: CADENZA_FMA_DIR].",
    ),
    subset: str | None = typer.Option(
        None,
        "--subset",
        help="small, medium, large or full [default: the largest with an audio folder].",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N tracks by id."),
    partitions: int | None = typer.Option(
        None, "--partitions", min=1, help="Spark partitions [default: one per core, at most 24 tracks each]."
    ),
    excerpt: float | None = typer.Option(
        None,
        "--excerpt",
        min=0,
        help="Seconds analysed from the middle of each track, as FMA cut its clips; 0: whole "
        "tracks (slower; memory stays bounded) [default: CADENZA_ETL_EXCERPT_S, 30].",
    ),
) -> None:
    """Analyse every track's audio on Spark (CADENZA_SPARK_MASTER) and store features in MongoDB.

    Tracks already stored with the current feature set are skipped, so running it again
    resumes an interrupted run. Files that fail are listed in the etl_errors collection."""
    from pyspark.sql import SparkSession

    from etl.job import resolve_root, run_etl
    from etl.spark_run import spark_conf
    from infra.spark import spark_session

    settings = _settings()
    root = resolve_root(settings, fma_dir)  # fail fast, before Spark starts
    existing = SparkSession.getActiveSession()
    with console.status(f"starting Spark ({settings.spark_master}) …"):
        spark = spark_session(settings, "cadenza-etl", conf=spark_conf())
    try:
        with progress_bar("analysing audio", console) as bar:
            summary = run_etl(
                spark,
                settings,
                root,
                subset=subset,
                limit=limit,
                progress=bar,
                partitions=partitions,
                excerpt_s=excerpt,
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: stored tracks are kept; run the same command again to resume")
        raise
    finally:
        if existing is None:
            spark.stop()
    console.print(summary_table("cadenza etl run", summary.table_rows()))
    for failure in summary.failures[:MAX_FAILURES_SHOWN]:
        console.print(
            f"  [red]{failure.error_class}[/] track {failure.track_id}: {failure.message}", highlight=False
        )
    if len(summary.failures) > MAX_FAILURES_SHOWN:
        console.print(f"  … {len(summary.failures) - MAX_FAILURES_SHOWN} more in etl_errors")


@etl_app.command("import-features")
def import_features(
    *,
    fma_dir: Path | None = typer.Option(
        None, "--fma-dir", help="FMA root holding fma_metadata/ [default: CADENZA_FMA_DIR]."
    ),
    subset: str = typer.Option(
        "full", "--subset", help="Only tracks of this subset: small, medium, large, full."
    ),
    synthetic: int | None = typer.Option(
        None, "--synthetic", min=1, help="Generate N synthetic FMA-shaped rows instead (scale tests)."
    ),
    genres: int = typer.Option(16, "--genres", min=1, max=16, help="Genres of the synthetic rows."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic rows."),
    id_offset: int = typer.Option(
        0, "--id-offset", min=0, help="Added to every synthetic track id (to keep clear of tracks stored)."
    ),
) -> None:
    """Store FMA's published features.csv (with tracks.csv metadata) without any audio.

    Rows already stored are left unchanged; no tracks.new events are sent."""
    from etl.import_features import import_fma, import_synthetic
    from etl.job import resolve_root

    settings = _settings()
    with progress_bar("importing features", console) as bar:
        if synthetic is not None:
            summary = import_synthetic(
                settings, synthetic, genres=genres, seed=seed, progress=bar, id_offset=id_offset
            )
        else:
            summary = import_fma(settings, resolve_root(settings, fma_dir), subset, progress=bar)
    console.print(summary_table("cadenza etl import-features", summary.table_rows()))


def sample_data(
    directory: Path = typer.Argument(..., help="Where to write fma_metadata/ and fma_small/."),
    *,
    tracks: int = typer.Option(400, "--tracks", min=1, help="Playable tracks."),
    genres: int = typer.Option(8, "--genres", min=1, max=16, help="Top-level genres (first 8: fma_small's)."),
    seed: int = typer.Option(0, "--seed", help="Everything is deterministic given the seed."),
    duration: float = typer.Option(30.0, "--duration", min=0.5, help="Seconds per clip (FMA's clips: 30)."),
    broken: int = typer.Option(3, "--broken", min=0, help="Extra tracks with broken audio, as in FMA."),
    sample_rate: int = typer.Option(22050, "--sample-rate", min=8000, help="FMA's audio: 44100."),
    channels: int = typer.Option(1, "--channels", min=1, max=2, help="FMA's audio: 2."),
) -> None:
    """Write a small FMA look-alike (metadata + real MP3 audio) for the demo and tests."""
    from etl.sample_data import write_sample_catalogue

    with progress_bar("writing sample audio", console) as bar:
        summary = write_sample_catalogue(
            directory,
            tracks,
            genres,
            seed,
            duration_s=duration,
            sample_rate=sample_rate,
            channels=channels,
            broken=broken,
            workers=os.cpu_count() or 1,
            progress=bar,
        )
    rows = [
        ("directory", str(summary.directory)),
        ("playable tracks", str(len(summary.track_ids))),
        ("broken tracks", str(len(summary.broken_ids))),
        ("genres", ", ".join(summary.genres)),
        ("audio", f"{summary.audio_format}, {summary.sample_rate} Hz, {summary.channels} ch"),
        ("size", f"{summary.bytes_written / 2**20:.1f} MiB"),
        ("elapsed", f"{summary.elapsed_s:.1f} s"),
    ]
    console.print(summary_table("cadenza sample-data", rows))
    console.print(f"next: cadenza etl run --fma-dir {summary.directory}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ETL commands to the root ``cadenza`` app."""
    app.add_typer(etl_app, name="etl")
    app.command("sample-data")(sample_data)
