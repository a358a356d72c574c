"""The one exception tree of ``infra``. Messages say what went wrong and what to do."""

from __future__ import annotations

from schemas.errors import CadenzaError


class InfraError(CadenzaError):
    """Base of infrastructure errors; ``str()`` is a one-line, actionable message."""


class ConfigError(InfraError):
    """A setting or the machine is not fit to run (port taken, Java missing, …)."""


class StackError(InfraError):
    """A local stack component failed to build, start or become ready."""


class UnreachableError(InfraError):
    """Kafka or MongoDB did not answer at the configured address."""
