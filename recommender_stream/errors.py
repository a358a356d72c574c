"""The one exception tree of ``recommender_stream``; messages say what to do."""

from __future__ import annotations

from schemas.errors import CadenzaError


class RecommenderError(CadenzaError):
    """Base of every recommender error."""


class CatalogueError(RecommenderError):
    """The catalogue could not be built (no model files, MongoDB unreachable, …)."""


class RejectedEvent(RecommenderError):  # noqa: N818 - a reason, stored in dead letters
    """Base of the reasons the recommender dead-letters an event."""


class UnknownTrackError(RejectedEvent):
    """A play for a track the catalogue does not hold."""


class ReplayError(RecommenderError):
    """An offline replay (``cadenza evaluate replay``) could not read its history."""
