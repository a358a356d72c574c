"""The whole system, once for all e2e tests, on the session's local stack.

Like ``cadenza demo``: a sample catalogue with real MP3s, the ETL, a trained and
promoted model, then both Structured Streaming jobs, a recommender worker and the
gateway under supervisord (:mod:`infra.supervise`), each with its own log. Its own
topic prefix, database, data dir and ports, so it never meets other tests' data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.database import Database

from infra import supervise
from infra.demo import gateway_url, wait_ready
from infra.kafka_clients import ensure_topics
from infra.mongo import client as mongo_client
from infra.mongo import init_db
from infra.settings import Settings, child_env
from infra.stack.process import free_port

SAMPLE_TRACKS = 64
SAMPLE_GENRES = 4


@dataclass
class System:
    settings: Settings
    db: Database[dict[str, Any]]

    @property
    def url(self) -> str:
        return gateway_url(self.settings)

    def cadenza(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "infra", *args],
            env={**child_env(self.settings, **supervise.configured(self.settings)), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"cadenza {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return done.stdout

    def log_tail(self, program: str, lines: int = 40) -> str:
        path = self.settings.logs_path / f"{program}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"
        )

    def logs(self) -> str:
        programs = supervise.programs(self.settings)
        return "\n".join(f"--- {p.name} ---\n{self.log_tail(p.name)}" for p in programs)

    def worker_metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.settings.faust_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return -1.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))

    def wait(self, what: str, check: Any, timeout: float = 120.0, every: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def lag(self) -> list[dict[str, Any]]:
        return json.loads(self.cadenza("lag", "--json", timeout=120))

    def signal(self, program: str, sig: str = "KILL") -> None:
        supervise.signal_program(self.settings, program, sig)


@pytest.fixture(scope="package")
def system(stack_overrides: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tag = uuid.uuid4().hex[:8]
    base = {k: v for k, v in stack_overrides.items() if k != "data_dir"}
    settings = Settings(
        **base,
        data_dir=tmp_path_factory.mktemp("e2e"),
        topic_prefix=f"e{tag}.",
        mongodb_db=f"e_{tag}",
        gateway_port=free_port(),
        faust_port=free_port(),
        token_secret="e2e-secret",
        demo_signin=True,
        spark_master="local[2]",
        spark_driver_memory="1g",
        profile_trigger_s=5.0,
    )
    ensure_topics(settings)
    mongo = mongo_client(settings)
    init_db(mongo[settings.mongodb_db])
    system = System(settings, mongo[settings.mongodb_db])
    sample = settings.data_dir / "sample-fma"
    try:
        system.cadenza(
            "sample-data", str(sample), "--tracks", str(SAMPLE_TRACKS), "--genres", str(SAMPLE_GENRES)
        )
        system.cadenza("etl", "run", "--fma-dir", str(sample))
        system.cadenza("model", "train", "--k-range", "4:6:2", "--promote")
        supervise.start(settings)
        try:
            wait_ready(settings, timeout=300)
        except Exception as err:
            raise AssertionError(f"{err}\n{system.logs()}") from None
        system.wait(
            "the recommender worker",
            lambda: system.worker_metric("cadenza_recommender_events_total") >= 0,
            240,
        )
        yield system
    finally:
        supervise.stop(settings)
        mongo.drop_database(settings.mongodb_db)
        mongo.close()
