"""The Structured Streaming jobs behind ``cadenza stream …``: one module per query.

Queries (README, "Streaming jobs"): ``tracks-assign`` (:mod:`~streaming_jobs.streams.assign`),
``plays-history`` (:mod:`~streaming_jobs.streams.plays`, which also starts the other plays
queries), ``plays-sessions`` (:mod:`~streaming_jobs.streams.sessions`), ``plays-profiles``
(:mod:`~streaming_jobs.streams.profiles`) and ``plays-trending``
(:mod:`~streaming_jobs.streams.trending`, its window state in
:mod:`~streaming_jobs.streams.trending_state`). :mod:`~streaming_jobs.streams.runner` runs a
job (``assign`` or ``plays``) in the foreground. What the queries share (Kafka sources and
sinks, record decoding, track lookup, MongoDB writes, names, status) is in
:mod:`streaming_jobs.streams.shared`.
"""
