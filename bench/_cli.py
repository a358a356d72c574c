"""Bench only: what the bench scripts' command lines share.

``bounded`` validates a number argument where argparse reads it (a clear usage error
instead of a crash deep in a run, e.g. ``--backlog 0`` dividing by zero); ``interrupted``
turns SIGINT/SIGTERM into ``KeyboardInterrupt`` so a script's ``finally`` stops what it
started. Used by ``bench/e2e.py``, ``bench/gateway.py``, ``bench/recommender.py`` and
``bench/faults.py`` (``bounded`` only).
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from typing import Any


def bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside [{low:g}, {high:g}]")
        return value

    return parse


def interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)
