"""Spark jobs: K-Means training and registry, and the Structured Streaming queries."""
