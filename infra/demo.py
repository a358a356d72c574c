"""``cadenza demo [stop|status]``: the whole system on sample data with one command.

``cadenza demo`` starts the local stack, runs the batch stages (sample catalogue, ETL,
model training) as ``cadenza`` sub-commands (so ``infra`` never imports the packages
that build on it), then hands the long-running processes (both Structured Streaming
jobs, a Faust recommender worker, the gateway) to supervisord
(:mod:`infra.supervise`), waits for the gateway to be ready and prints the player's
address. Re-running resumes: every stage is idempotent. ``cadenza demo status`` shows
each process and the consumer lag; ``cadenza demo stop`` stops them and the stack.

``cadenza demo --catalogue full`` runs the demo at the FMA's full size: the same sample
catalogue with audio, plus the rest of :data:`FULL_TRACKS` tracks imported without audio
by ``cadenza etl import-features`` (synthetic FMA-shaped rows, or FMA's published
``features.csv`` with ``--fma-dir``), then K-Means with k=16, promoted. Tracks without
audio are listed, searchable and recommended like the others, and the player shows them
as not playable.

Secure defaults: the player's sign-in page (anyone as anyone) is on only while the
gateways listen on loopback (``CADENZA_GATEWAY_HOST``, default 127.0.0.1); tokens are
signed with ``CADENZA_TOKEN_SECRET`` or, unset, a random secret generated once per data
dir into ``<data dir>/token-secret`` (mode 0600; see :mod:`infra.supervise`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import typer
from rich.console import Console
from rich.table import Table

from infra import supervise
from infra.errors import InfraError
from infra.settings import Settings, get_settings
from infra.stack.manager import LocalStack

console = Console()
demo_app = typer.Typer(
    help="The whole system on sample data: `cadenza demo` starts it, `status` and `stop` manage it.",
    invoke_without_command=True,
)
READY_TIMEOUT_S = 240.0
#: The sample catalogue's playable tracks (``cadenza sample-data --tracks``; 3 broken ones more).
SAMPLE_TRACKS: Final = 240
#: Tracks of the full catalogue: the FMA's ``fma_full`` (106,574), sample tracks included.
FULL_TRACKS: Final = 106_574
#: Added to the synthetic rows' ids so none is a sample track's (those are at most
#: 1 + 11 x 243 = 2,674): ``import-features`` leaves a stored id alone, so a clash would
#: leave the full catalogue short.
SYNTHETIC_ID_OFFSET: Final = 10_000
FULL_K: Final = 16


class Catalogue(StrEnum):
    """What the demo serves: the small sample with audio, or the FMA's full size."""

    demo = "demo"
    full = "full"


@dataclass(frozen=True)
class Stage:
    name: str
    argv: tuple[str, ...]
    spark: bool = False  # a Spark job: submitted to the cluster in the cluster profile

    def command(self, settings: Settings, python: str = sys.executable) -> list[str]:
        module = supervise.spark_job_module(settings) if self.spark else "infra"
        return [python, "-m", module, *self.argv]


def stages(
    settings: Settings, catalogue: Catalogue = Catalogue.demo, fma_dir: Path | None = None
) -> tuple[Stage, ...]:
    """The batch stages after the stack is up; each is a ``cadenza`` command.

    ``catalogue=full``: between the ETL and the training, the rest of :data:`FULL_TRACKS`
    imported without audio (FMA's ``features.csv`` under ``fma_dir``, else synthetic rows),
    and the model is K-Means with k=16, promoted even if another model is current."""
    sample = str((settings.data_dir / "sample-fma").resolve())
    audio = (
        Stage(
            "sample catalogue (FMA layout, real MP3s)",
            ("sample-data", sample, "--tracks", str(SAMPLE_TRACKS)),
        ),
        Stage("ETL: audio features -> MongoDB", ("etl", "run", "--fma-dir", sample), spark=True),
    )
    if catalogue is Catalogue.demo:
        return (
            *audio,
            Stage(
                "train and promote the K-Means model", ("model", "train", "--k-range", "6:12:2"), spark=True
            ),
        )
    if fma_dir is not None:
        rest = Stage(
            "FMA's features.csv -> MongoDB (no audio: listed, not playable)",
            ("etl", "import-features", "--fma-dir", str(fma_dir.resolve())),
        )
    else:
        rest = Stage(
            f"{FULL_TRACKS - SAMPLE_TRACKS:,} synthetic FMA-shaped tracks -> MongoDB "
            "(no audio: listed, not playable)",
            (
                "etl",
                "import-features",
                "--synthetic",
                str(FULL_TRACKS - SAMPLE_TRACKS),
                "--id-offset",
                str(SYNTHETIC_ID_OFFSET),
            ),
        )
    train = Stage(
        f"train and promote the K-Means model (k={FULL_K}, every track)",
        ("model", "train", "--k", str(FULL_K), "--promote"),
        spark=True,
    )
    return (*audio, rest, train)


def _available(app: typer.Typer, command: str) -> bool:
    names = {g.name for g in app.registered_groups} | {c.name for c in app.registered_commands}
    return command in names


def gateway_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.gateway_host in ("0.0.0.0", "::") else settings.gateway_host
    return f"http://{host}:{settings.gateway_port}"


def wait_ready(settings: Settings, timeout: float = READY_TIMEOUT_S) -> None:
    """Until the gateway's /readyz answers 200 (it needs MongoDB, Kafka and its feed)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(gateway_url(settings) + "/readyz", timeout=3) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as err:
            last = err.read().decode("utf-8", "replace")[:300]
        except OSError as err:
            last = str(err)
        time.sleep(1.0)
    raise InfraError(
        f"the gateway was not ready after {timeout:.0f} s ({last}); "
        f"see {settings.logs_path / 'gateway.log'} and `cadenza demo status`"
    )


@demo_app.callback()
def demo(
    ctx: typer.Context,
    catalogue: Catalogue = typer.Option(
        Catalogue.demo,
        "--catalogue",
        help="demo: 240 sample tracks with audio. full: those plus the rest of the FMA's 106,574 "
        "tracks without audio (synthetic, or FMA's features.csv with --fma-dir), k=16; "
        "several minutes more (python -m bench.scale measures each step).",
    ),
    fma_dir: Path | None = typer.Option(
        None,
        "--fma-dir",
        help="With --catalogue full: import FMA's fma_metadata/features.csv from this FMA root "
        "instead of synthetic rows.",
    ),
) -> None:
    """Start the stack, load the sample catalogue, train a model, and run the streaming
    jobs, a recommender worker and the gateway; prints the player's address."""
    if ctx.invoked_subcommand is not None:
        return
    if fma_dir is not None and catalogue is not Catalogue.full:
        raise typer.BadParameter("--fma-dir goes with --catalogue full", param_hint="--fma-dir")
    if fma_dir is not None and not (fma_dir / "fma_metadata").is_dir():
        raise typer.BadParameter(f"{fma_dir} has no fma_metadata/ folder", param_hint="--fma-dir")
    run_demo(get_settings(), catalogue, fma_dir)


def run_demo(settings: Settings, catalogue: Catalogue, fma_dir: Path | None) -> None:
    """The demo's stages, then its supervised processes (see the module docstring)."""
    from infra.cli import app  # the root app, with every plugin registered

    supervise.check(settings)  # before minutes of work: would the gateways start?
    started = time.monotonic()
    with console.status("starting the local stack …"):
        LocalStack(settings).up(report=lambda msg: console.print(f"  {msg}", highlight=False))
    for stage in stages(settings, catalogue, fma_dir):
        if not _available(app, stage.argv[0]):
            raise InfraError(f"`cadenza {stage.argv[0]}` is not installed: run `make install`")
        console.rule(stage.name)
        subprocess.run(stage.command(settings), check=True)
    console.rule("streaming jobs, recommender and gateway (supervisord)")
    supervise.start(settings)
    with console.status("waiting for the gateway …"):
        wait_ready(settings)
    console.print(f"[green]demo up[/] in {time.monotonic() - started:.0f} s")
    if supervise.demo_signin(settings):
        console.print(f"  player    {gateway_url(settings)}/  (sign in with any name)")
    else:
        console.print(
            f"  player    {gateway_url(settings)}/  (listening on {settings.gateway_host}, so no demo "
            "sign-in: paste a token from `cadenza token create NAME`)"
        )
    if settings.gateways > 1:
        console.print(
            f"            {settings.gateways} gateways on ports {settings.gateway_port}"
            f"-{settings.gateway_port + settings.gateways - 1}"
        )
    if catalogue is Catalogue.full:
        console.print(
            f"  catalogue the FMA's size: {SAMPLE_TRACKS} sample tracks with audio, the others "
            "features only (listed, searchable, recommended; shown as not playable)"
        )
    console.print(f"  ops       {gateway_url(settings)}/ops   metrics {gateway_url(settings)}/metrics")
    console.print(f"  logs      {settings.logs_path}/<process>.log")
    console.print(
        "  `cadenza demo status` shows the processes and consumer lag; `cadenza demo stop` stops it all"
    )


@demo_app.command("status")
def demo_status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each demo process (supervisord's view) and the consumer lag."""
    from infra.offsets import lag_rows

    settings = get_settings()
    rows = supervise.status(settings)
    try:
        lag = [r.to_dict() for r in lag_rows(settings)]
    except InfraError as err:
        lag = []
        console.print(f"[yellow]lag unavailable:[/] {err}")
    if as_json:
        print(json.dumps({"processes": rows, "lag": lag}, indent=2))
        return
    table = Table(title="Demo processes", title_justify="left")
    for col in ("process", "state", "info"):
        table.add_column(col)
    for row in rows:
        colour = "green" if row["state"] == "RUNNING" else "red"
        table.add_row(row["name"], f"[{colour}]{row['state']}[/]", row["info"])
    console.print(table)
    totals: dict[str, int] = {}
    for r in lag:
        totals[r["name"]] = totals.get(r["name"], 0) + int(r["lag"])
    lag_table = Table(title="Consumer lag (cadenza lag for detail)", title_justify="left")
    lag_table.add_column("consumer")
    lag_table.add_column("lag", justify="right")
    for name, total in sorted(totals.items()):
        lag_table.add_row(name, str(total))
    console.print(lag_table)


@demo_app.command("stop")
def demo_stop(
    keep_stack: bool = typer.Option(False, "--keep-stack", help="Leave Kafka and FerretDB up."),
) -> None:
    """Stop the demo's processes, then the local stack."""
    settings = get_settings()
    with console.status("stopping the demo processes …"):
        stopped = supervise.stop(settings)
    console.print("demo processes stopped" if stopped else "no demo processes were running")
    if not keep_stack:
        LocalStack(settings).down()
        console.print("local stack stopped")
