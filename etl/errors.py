"""The one exception tree of ``etl``. Messages say what went wrong and what to do.

Raised by the FMA reader (:mod:`etl.fma`), the feature extractor (:mod:`etl.features`)
and the sample-data generator (:mod:`etl.sample_data`); the ETL job stores each
per-file failure as an ``etl_errors`` document (``error_class`` = the class name) and
carries on with the next file.
"""

from __future__ import annotations

from schemas.errors import CadenzaError


class EtlError(CadenzaError):
    """Base of every ETL error; ``str()`` is a one-line, actionable message."""


class AudioDecodeError(EtlError):
    """A file is missing, empty, corrupt or not audio, so it has no samples to analyse."""


class MetadataError(EtlError):
    """FMA metadata (``tracks.csv``, ``genres.csv``, ``features.csv``) is missing or malformed."""


class FeatureError(EtlError):
    """Decoded audio did not yield a finite 518-value feature vector."""
