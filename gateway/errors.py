"""The gateway's exception tree: every error it raises on purpose derives from :class:`GatewayError`."""

from __future__ import annotations

from schemas.errors import CadenzaError


class GatewayError(CadenzaError):
    """Base of the gateway's own errors."""


class AuthError(GatewayError):
    """A missing, forged, malformed or expired token (HTTP 401, websocket close 4401)."""


class ForbiddenError(GatewayError):
    """A request the gateway will not serve whoever sends it: the session cookie used from
    another site (HTTP 403, websocket close 4403), a disabled account signing in."""


class NotFoundError(GatewayError):
    """An unknown track, or a track without a servable audio file (HTTP 404)."""


class BadRequestError(GatewayError):
    """A request body or parameter that cannot be used (HTTP 422 naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class UnreadableBodyError(GatewayError):
    """A request body the gateway will not parse: JSON nested deeper than it allows (HTTP 400)."""


class PayloadTooLargeError(GatewayError):
    """A request body, announced or read, over the gateway's size limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


class RateLimitedError(GatewayError):
    """A listener over their rate (HTTP 429, with Retry-After in whole seconds)."""

    def __init__(self, what: str, retry_after_s: float) -> None:
        super().__init__(f"too many {what}: over your rate limit; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class UnavailableError(GatewayError):
    """Kafka or MongoDB cannot be reached right now (HTTP 503)."""


class LoadStoppedError(GatewayError):
    """A catalogue load given up because the gateway is stopping (never reaches a client)."""
