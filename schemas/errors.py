"""The one exception tree of the ``schemas`` package.

Every decoding failure anywhere in Cadenza surfaces as :class:`SchemaError`, so a
consumer needs exactly one ``except`` clause to route bad input to the dead-letter
topic instead of crashing.
"""

from __future__ import annotations


class CadenzaError(Exception):
    """Root of every Cadenza package's exception tree.

    Each package (``infra``, ``etl``, ``streaming_jobs``, …) has one base class that
    derives from this; the ``cadenza`` CLI prints any of them as a one-line error.
    """


class SchemaError(CadenzaError, ValueError):
    """Bytes or a mapping that do not form a valid Cadenza message.

    ``reason`` is a short, human-readable explanation that is safe to store in a
    dead-letter record (it never contains the full payload).
    """

    def __init__(self, reason: str, *, model: str | None = None) -> None:
        self.reason = reason
        self.model = model
        prefix = f"invalid {model}: " if model else ""
        super().__init__(prefix + reason)
