"""How long-running model work reports progress, without depending on a terminal.

The jobs call a :class:`Progress`; the CLI passes a rich-backed one
(``streaming_jobs.cli``), tests and library callers get :class:`NullProgress`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Stage-by-stage progress: ``stage`` starts a step (with a total if countable)."""

    def stage(self, description: str, total: int | None = None) -> None: ...

    def advance(self, amount: int = 1) -> None: ...

    def note(self, message: str) -> None: ...


class NullProgress:
    """Reports nothing."""

    def stage(self, description: str, total: int | None = None) -> None:
        return None

    def advance(self, amount: int = 1) -> None:
        return None

    def note(self, message: str) -> None:
        return None
