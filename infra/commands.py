"""Infrastructure commands of the ``cadenza`` CLI: stack, db, schemas, config, topics.

Registered through the ``cadenza.cli`` entry point ``infra``. Everything here reads
``infra.settings`` and talks to the stack only through ``infra``'s own modules.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.demo import demo_app
from infra.groups import GroupAssignment
from infra.kafka_clients import ensure_topics
from infra.logs import setup_logging
from infra.migrations import migrate_vectors
from infra.mongo import client, database, init_db, ping
from infra.offsets import LagRow, lag_rows
from infra.settings import Settings, get_settings
from infra.settings_doc import settings_markdown, settings_rows, update_readme
from infra.stack.manager import LocalStack, StackStatus
from schemas.json_schema import export

console = Console()
#: Unconvertible documents ``db migrate`` lists by id (all are counted).
SHOWN_FAILURES = 20

stack_app = typer.Typer(
    help="The local stack under the data dir: Apache Kafka (KRaft) + FerretDB; with --profile cluster "
    "three brokers, FerretDB and a Spark standalone cluster."
)
db_app = typer.Typer(help="MongoDB collections, indexes and data migrations.")
schemas_app = typer.Typer(help="Message contracts for upstream services.")


def _settings(profile: str | None = None) -> Settings:
    settings = get_settings(**({"stack_profile": profile} if profile else {}))
    setup_logging(settings.log_level, settings.log_format)
    return settings


PROFILE = typer.Option(
    None,
    "--profile",
    help="local (one broker) or cluster (three brokers, Spark standalone); default "
    "CADENZA_STACK_PROFILE. Every later command needs the same profile: export "
    "CADENZA_STACK_PROFILE=cluster.",
)


@stack_app.command("up")
def stack_up(profile: str | None = PROFILE) -> None:
    """Start Kafka and FerretDB (and in the cluster profile the Spark master and workers),
    building/resolving them into the cache on first run, then create the topics and the
    database indexes. Safe to run again."""
    settings = _settings(profile)
    started = time.monotonic()
    stack = LocalStack(settings)
    with console.status("starting the local stack …"):
        stack.up(report=lambda msg: console.print(f"  {msg}", highlight=False))
    console.print(f"[green]stack up[/] in {time.monotonic() - started:.1f} s")
    _print_status(stack.status(), settings)
    if profile == "cluster" and get_settings().stack_profile != "cluster":
        console.print(
            "Cadenza's commands use the cluster when CADENZA_STACK_PROFILE=cluster is set: "
            "[bold]export CADENZA_STACK_PROFILE=cluster[/]"
        )


@stack_app.command("prepare")
def stack_prepare(profile: str | None = PROFILE) -> None:
    """Resolve Kafka's jars (Maven) and build FerretDB (Go) into the cache, so that
    later starts work offline. `stack up` does this itself when needed."""
    stack = LocalStack(_settings(profile))
    with console.status("preparing the local stack (first time: about a minute) …"):
        stack.prepare(report=lambda msg: console.print(f"  {msg}", highlight=False))


@stack_app.command("down")
def stack_down(profile: str | None = PROFILE) -> None:
    """Stop the local stack's processes (data stays under the data dir)."""
    LocalStack(_settings(profile)).down(report=lambda msg: console.print(f"  {msg}", highlight=False))


@stack_app.command("status")
def stack_status(profile: str | None = PROFILE) -> None:
    """Show each component, its address, the topics (partitions, under-replicated ones),
    the recommender group's partition assignment and whether each part answers.
    Exit code 1 if anything is down."""
    settings = _settings(profile)
    status = LocalStack(settings).status()
    _print_status(status, settings)
    if not status.healthy:
        raise typer.Exit(1)


def _print_status(status: StackStatus, settings: Settings) -> None:
    table = Table(title="Cadenza local stack", title_justify="left")
    for col in ("component", "address", "pid", "answers", "log"):
        table.add_column(col)
    for c in status.components:
        table.add_row(
            c.name, c.address, str(c.pid or "-"), "[green]yes[/]" if c.answers else "[red]no[/]", c.log
        )
    console.print(table)
    if status.topics:
        topics = Table(title=f"Topics on {settings.bootstrap_servers}", title_justify="left")
        for col in ("topic", "partitions", "replicas", "under-replicated", "offline"):
            topics.add_column(col, justify="left" if col == "topic" else "right")
        for t in status.topics:
            ok = t.partitions == t.expected
            topics.add_row(
                t.name,
                f"{t.partitions}" if ok else f"[red]{t.partitions} (want {t.expected})[/]",
                str(t.replication),
                f"[yellow]{t.under_replicated}[/]" if t.under_replicated else "0",
                f"[red]{t.offline}[/]" if t.offline else "0",
            )
        console.print(topics)
    if status.recommenders is not None:
        console.print(group_table(status.recommenders, settings.topic("plays")))
    if status.database:
        console.print(
            f"MongoDB {settings.mongo_uri} database [bold]{settings.mongodb_db}[/] (server {status.database})"
        )
    for problem in status.problems:
        console.print(f"[red]problem:[/] {problem}", highlight=False)


@db_app.command("init")
def db_init() -> None:
    """Create the collections and indexes of the design (idempotent)."""
    settings = _settings()
    mongo = client(settings)
    try:
        created = init_db(database(settings, mongo))
    finally:
        mongo.close()
    for item in created:
        console.print(f"  created {item}")
    console.print(f"database {settings.mongodb_db}: {len(created)} change(s)")


@db_app.command("migrate")
def db_migrate(
    batch_size: int = typer.Option(500, "--batch-size", min=1, max=10_000, help="Documents per bulk write."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Convert at most this many documents, then stop (run again to go on)."
    ),
) -> None:
    """Rewrite legacy feature vectors (BSON arrays of 518 doubles) in `tracks` as packed float32.

    Idempotent and resumable: only vectors still stored as arrays are touched, in _id
    order, one bulk write per batch; a stopped run is finished by the next one. A vector
    that cannot be converted is left as it is and reported (exit code 1).
    """
    settings = _settings()
    mongo = client(settings)
    try:
        ping(settings, mongo)
        columns = (
            TextColumn("[bold]packing vectors"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("migrate", total=None)
            result = migrate_vectors(
                database(settings, mongo),
                batch_size=batch_size,
                limit=limit,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        mongo.close()
    for track_id, reason in sorted(result.failed.items())[:SHOWN_FAILURES]:
        console.print(f"  [yellow]left as is[/] track {track_id}: {reason}", highlight=False)
    if len(result.failed) > SHOWN_FAILURES:
        console.print(f"  … and {len(result.failed) - SHOWN_FAILURES:,} more", highlight=False)
    console.print(f"database {settings.mongodb_db}: {result.line()}", highlight=False, soft_wrap=True)
    if result.failed:
        raise typer.Exit(1)


@stack_app.command("topics")
def stack_topics() -> None:
    """Create missing registry topics (and grow partition counts)."""
    changes = ensure_topics(_settings())
    for change in changes:
        console.print(f"  {change}")
    console.print(f"{len(changes)} change(s)")


@schemas_app.command("export")
def schemas_export(
    directory: Path = typer.Argument(..., help="Directory to write <topic>.schema.json files into."),
) -> None:
    """Write a JSON Schema (draft 2020-12) per topic so other languages can validate messages."""
    settings = get_settings()
    for path in export(directory, settings.topic_prefix):
        console.print(f"  wrote {path}")


def config(
    markdown: bool = typer.Option(False, "--markdown", help="Print the README's configuration table."),
    update_readme_path: Path | None = typer.Option(
        None, "--update-readme", help="Rewrite the settings table in this README file."
    ),
) -> None:
    """Show every CADENZA_* setting with its current value and meaning."""
    settings = get_settings()
    if update_readme_path is not None:
        changed = update_readme(update_readme_path)
        console.print(f"{update_readme_path}: {'updated' if changed else 'already current'}")
        return
    if markdown:
        print(settings_markdown())
        return
    table = Table(title="Settings (environment variable = current value)", title_justify="left")
    for col in ("component", "variable", "value", "meaning"):
        table.add_column(col)
    for component, name, value, _default, description in settings_rows(settings):
        table.add_row(component, name, value, description)
    console.print(table)


def group_table(group: GroupAssignment, topic: str) -> Table:
    """The recommender workers and the partitions of ``topic`` each one holds."""
    table = Table(
        title=f"Recommender group {group.group} ({group.state}, {len(group.members)} worker(s))",
        title_justify="left",
    )
    for col in ("worker", "member", "host", f"{topic} partitions"):
        table.add_column(col)
    for m in group.members:
        held = m.holds(topic)
        shown = ", ".join(map(str, held)) or "[yellow]none[/]"
        table.add_row(m.worker or "-", m.member_id[-12:], m.host, shown)
    return table


def lag_table(rows: list[LagRow]) -> Table:
    """``cadenza lag``'s table: one line per consumer and partition, then the total."""
    table = Table(title="Consumer lag (committed or processed offset vs. log end)", title_justify="left")
    for col in ("consumer", "state", "topic", "partition", "committed", "end", "lag"):
        table.add_column(col, justify="right" if col in ("partition", "committed", "end", "lag") else "left")
    for r in rows:
        who = r.name if r.kind == "group" else f"{r.name} (spark query)"
        done = "-" if r.committed is None else str(r.committed)
        table.add_row(who, r.state, r.topic, str(r.partition), done, str(r.end), str(r.lag))
    table.add_section()
    table.add_row("total", "", "", "", "", "", str(sum(r.lag for r in rows)))
    return table


def lag(
    group: list[str] = typer.Option(None, "--group", "-g", help="Only these consumer groups (repeatable)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh every --interval seconds until Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="Seconds between refreshes."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table."),
) -> None:
    """Lag of every consumer group and Spark streaming query on Cadenza's topics.

    Groups: committed offset vs. log-end offset, per partition. Spark queries keep
    their offsets in checkpoints (under the data dir), so their lag is what the last
    batch processed vs. the log end, right even while the query is stopped.
    """
    settings = _settings()
    if not watch:
        rows = lag_rows(settings, group or None)
        if as_json:
            print(json.dumps([r.to_dict() for r in rows], indent=2))
        else:
            console.print(lag_table(rows))
        return
    with Live(lag_table(lag_rows(settings, group or None)), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(lag_table(lag_rows(settings, group or None)), refresh=True)


def register(app: typer.Typer) -> None:
    """Entry point ``cadenza.cli: infra``."""
    app.add_typer(stack_app, name="stack")
    app.add_typer(db_app, name="db")
    app.add_typer(schemas_app, name="schemas")
    app.command("config")(config)
    app.add_typer(demo_app, name="demo")
    app.command("lag")(lag)
