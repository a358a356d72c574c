"""``cadenza demo``: bring the whole system up on sample data with one command.

Runs each stage as its own ``cadenza`` sub-command (so ``infra`` never imports the
packages that build on it) and reports where to look. Stages whose package is not
installed yet are listed as skipped, never faked.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import typer
from rich.console import Console

from infra.settings import Settings, get_settings
from infra.stack.manager import LocalStack

console = Console()


@dataclass(frozen=True)
class Stage:
    name: str
    argv: tuple[str, ...]


def stages(settings: Settings) -> tuple[Stage, ...]:
    """The demo pipeline after the stack is up; each is a ``cadenza`` command."""
    sample = str((settings.data_dir / "sample-fma").resolve())
    return (
        Stage("sample catalogue (FMA layout, real MP3s)", ("sample-data", sample, "--tracks", "240")),
        Stage("ETL: audio features -> MongoDB", ("etl", "run", "--fma-dir", sample)),
        Stage("train and promote the K-Means model", ("model", "train", "--k-range", "6:12:2")),
        Stage(
            "stream: assign the announced tracks (tracks.new -> tracks.assigned)",
            ("stream", "assign", "--once"),
        ),
    )


def _available(app: typer.Typer, command: str) -> bool:
    names = {g.name for g in app.registered_groups} | {c.name for c in app.registered_commands}
    return command in names


def demo() -> None:
    """Start the local stack and every Cadenza stage on sample data, then print where to
    look. Re-running resumes: every stage is idempotent."""
    from infra.cli import app  # the root app, with every plugin registered

    settings = get_settings()
    started = time.monotonic()
    stack = LocalStack(settings)
    with console.status("starting the local stack …"):
        stack.up(report=lambda msg: console.print(f"  {msg}", highlight=False))
    for stage in stages(settings):
        if not _available(app, stage.argv[0]):
            console.print(f"  [yellow]skipped[/] {stage.name}: `cadenza {stage.argv[0]}` is not installed")
            continue
        console.rule(stage.name)
        subprocess.run([sys.executable, "-m", "infra", *stage.argv], check=True)
    console.print(f"[green]demo up[/] in {time.monotonic() - started:.1f} s")
    console.print(f"  Kafka   {settings.bootstrap_servers}")
    console.print(f"  MongoDB {settings.mongo_uri}{settings.mongodb_db}")
    console.print("  streaming: `cadenza stream assign` and `cadenza stream plays` run the jobs live;")
    console.print("             `cadenza stream status` shows them")
    console.print("  stop it with `cadenza stack down`")
