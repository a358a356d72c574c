"""Spark jobs: the K-Means model (:mod:`.model`) and the Structured Streaming queries (:mod:`.streams`)."""
