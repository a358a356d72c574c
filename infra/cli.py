"""The ``cadenza`` command: one entry point for operators and developers.

Sub-commands come from each package through the ``cadenza.cli`` entry-point group
(each entry is a ``register(app)`` function), so ``infra`` never imports the
packages that build on it. Any Cadenza error is printed as one line on stderr with
exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer
from rich.console import Console

from schemas.errors import CadenzaError

app = typer.Typer(
    name="cadenza",
    help="Cadenza: self-hosted music streaming with real-time recommendations.\n\n"
    "Start with `cadenza stack up` (local Kafka + MongoDB-compatible server), "
    "then see the README for the demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
err_console = Console(stderr=True)
_DEBUG = False


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
) -> None:
    global _DEBUG
    _DEBUG = debug


def _load_plugins() -> None:
    for ep in sorted(entry_points(group="cadenza.cli"), key=lambda e: e.name):
        ep.load()(app)


def main() -> None:
    """Console-script entry point."""
    _load_plugins()
    try:
        app()
    except CadenzaError as err:
        if _DEBUG:
            raise
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
