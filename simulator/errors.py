"""The simulator's exception tree: every error it raises on purpose derives from :class:`SimulatorError`."""

from __future__ import annotations

from schemas.errors import CadenzaError


class SimulatorError(CadenzaError):
    """Base of the simulator's own errors."""


class SimulationError(SimulatorError):
    """The simulation cannot start (empty catalogue, no gateway, no broker)."""


class HTTPClientError(SimulatorError, ConnectionError):
    """The simulator's HTTP client could not read the server's answer as one HTTP/1.1 response."""


class ClosedUnansweredError(HTTPClientError):
    """A connection closed before any byte of an answer arrived."""


class SocketClosedError(SimulatorError, ConnectionError):
    """A listener's websocket is not open (it never opened, or the gateway closed it)."""
