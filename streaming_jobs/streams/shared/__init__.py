"""What the streaming queries share: their IO, names and status.

Kafka: Spark's connector as sources and sinks (:mod:`~streaming_jobs.streams.shared.kafka_io`),
raw records and their dead letters (:mod:`~streaming_jobs.streams.shared.kafka_records`),
decoding ``cadenza.plays`` (:mod:`~streaming_jobs.streams.shared.play_events`) and
``cadenza.tracks.new`` (:mod:`~streaming_jobs.streams.shared.track_events`). MongoDB:
idempotent writes (:mod:`~streaming_jobs.streams.shared.mongo_writes`) and track id ->
cluster lookups (:mod:`~streaming_jobs.streams.shared.track_lookup`). Jobs, queries and
their topics (:mod:`~streaming_jobs.streams.shared.names`); progress, counters and lag
(:mod:`~streaming_jobs.streams.shared.status`).
"""
