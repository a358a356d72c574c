"""Model and streaming commands of the ``cadenza`` CLI (entry point ``cadenza.cli: streaming_jobs``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the model and stream commands to the root ``cadenza`` app."""
