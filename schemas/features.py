"""FMA's standard audio feature set: names, sizes and column order.

Pure data, no IO. The order is FMA's published ``features.csv`` order (columns sorted
lexicographically by ``(feature, statistic, number)``), so vectors that Cadenza
extracts itself line up one-to-one with rows imported from FMA's file.
The ETL (``etl``) produces vectors in this order; the model (``streaming_jobs``) and
every service that assigns clusters consume them in this order.
"""

from __future__ import annotations

from typing import Final

#: Bumped whenever the way a feature is computed changes; stored with every vector.
FEATURE_SET_VERSION: Final = "fma-librosa-1"

#: Feature name -> number of coefficients, in FMA's naming (``rmse`` is librosa's ``rms``).
FEATURE_SIZES: Final[dict[str, int]] = {
    "chroma_cens": 12,
    "chroma_cqt": 12,
    "chroma_stft": 12,
    "mfcc": 20,
    "rmse": 1,
    "spectral_bandwidth": 1,
    "spectral_centroid": 1,
    "spectral_contrast": 7,
    "spectral_rolloff": 1,
    "tonnetz": 6,
    "zcr": 1,
}

#: Summary statistics over time frames, in FMA's (sorted) order.
STATISTICS: Final[tuple[str, ...]] = ("kurtosis", "max", "mean", "median", "min", "skew", "std")


def _columns() -> tuple[tuple[str, str, str], ...]:
    cols = [
        (feature, stat, f"{i + 1:02d}")
        for feature, size in FEATURE_SIZES.items()
        for stat in STATISTICS
        for i in range(size)
    ]
    return tuple(sorted(cols))


#: ``(feature, statistic, number)`` triples exactly as in FMA's three-row header.
FEATURE_TRIPLES: Final = _columns()

#: Flat, stable column names: ``mfcc_mean_01``.
FEATURE_COLUMNS: Final[tuple[str, ...]] = tuple(f"{f}_{s}_{n}" for f, s, n in FEATURE_TRIPLES)

N_FEATURES: Final = len(FEATURE_COLUMNS)
assert N_FEATURES == 518, N_FEATURES
