"""ETL commands of the ``cadenza`` CLI (entry point ``cadenza.cli: etl``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ETL commands to the root ``cadenza`` app."""
