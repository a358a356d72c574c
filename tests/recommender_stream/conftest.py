"""Shared pieces of the recommender tests: a worker process, topic readers, a trained model."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymongo.database import Database
from pyspark.sql import SparkSession

from infra.kafka_clients import consumer
from infra.settings import Settings, child_env
from infra.stack.process import free_port
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind
from streaming_jobs.model import registry
from streaming_jobs.model.dataset import to_spark
from streaming_jobs.model.kmeans import predict
from streaming_jobs.model.train import TrainingOptions, run_training
from tests.streaming_jobs._catalogue import make_catalogue

Db = Database[dict[str, Any]]
PER_GENRE = 30


def env_for(settings: Settings, port: int) -> dict[str, str]:
    return child_env(settings, faust_port=port, log_level="INFO")


class Worker:
    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log, self.port = settings, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recommender_stream.worker", "--web-port", str(self.port)],
            env=env_for(self.settings, self.port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=60)


_open_readers: list[Reader] = []


class Reader:
    """Collects every record of a topic from the beginning (closed after each test)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.c = consumer(
            settings, topic, group_id=f"test-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest"
        )
        self.values: list[bytes] = []
        _open_readers.append(self)

    def until(self, check: Any, timeout: float = 90.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in self.c.poll(timeout_ms=300).values():
                self.values.extend(r.value for r in records)
            if check(self.values):
                return self.values
        raise AssertionError(f"timed out; got {len(self.values)} records")


@pytest.fixture
def trained(spark: SparkSession, topics: Settings, db: Db) -> dict[str, Any]:
    catalogue = make_catalogue(n_genres=4, per_genre=PER_GENRE, separation=3.0, unlabelled=0)
    valid = catalogue.docs[: 4 * PER_GENRE]
    stored = [d for i, d in enumerate(valid) if i % PER_GENRE < PER_GENRE - 2]
    fresh = [d for i, d in enumerate(valid) if i % PER_GENRE >= PER_GENRE - 2]
    db.tracks.insert_many(stored)
    doc = run_training(spark, db, topics, TrainingOptions(ks=(4,), projection_sample=50)).doc
    pipeline = registry.load_pipeline(doc)
    ids = np.asarray([d["_id"] for d in valid], dtype=np.int64)
    matrix = np.asarray([d["features"] for d in valid])
    got, clusters, _ = predict(pipeline, to_spark(spark, ids, matrix, np.zeros(ids.size, dtype=bool)))
    return {
        "stored": stored,
        "fresh": fresh,
        "spark_cluster": dict(zip(got.tolist(), clusters.tolist(), strict=True)),
    }


@pytest.fixture
def worker(topics: Settings, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(topics, tmp_path / "worker.log")
    yield w
    w.stop()


def play(user: str, track: int, kind: str = "play") -> tuple[bytes, bytes]:
    return encode_key(user), encode(PlayEvent(user_id=user, track_id=track, kind=PlayKind(kind)))


@pytest.fixture(autouse=True)
def _close_readers() -> Iterator[None]:
    yield
    while _open_readers:
        _open_readers.pop().c.close()
