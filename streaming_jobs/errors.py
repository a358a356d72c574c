"""The one exception tree of ``streaming_jobs``. Messages say what went wrong and what to do."""

from __future__ import annotations

from schemas.errors import CadenzaError


class StreamingJobsError(CadenzaError):
    """Base of every ``streaming_jobs`` error; ``str()`` is a one-line, actionable message."""


class NoTrainingDataError(StreamingJobsError):
    """Too few tracks with usable feature vectors to train a model."""


class TrainingConfigError(StreamingJobsError):
    """A training option that cannot work (k range, holdout share, …)."""


class ModelNotFoundError(StreamingJobsError):
    """No model with the given version in the registry."""


class RegistryError(StreamingJobsError):
    """The registry's files or its MongoDB collection could not be read or written."""


class StreamError(StreamingJobsError):
    """A streaming query could not start or run (missing connector, broken checkpoint, …)."""


class RejectedRecordError(StreamingJobsError):
    """Base of the reasons a streaming query dead-letters one record (never raised out of a query)."""


class UnknownTrackError(RejectedRecordError):
    """A play names a track id that is not in the catalogue."""


class FutureEventError(RejectedRecordError):
    """An event time too far ahead of the clock (it would push the watermark past real events)."""
