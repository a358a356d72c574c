"""Faust's and aiokafka's privates are used in infra/faust_internals.py and nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "schemas",
    "infra",
    "etl",
    "streaming_jobs",
    "recommender_stream",
    "gateway",
    "simulator",
    "bench",
)
#: Names that only faust's or aiokafka's own code should touch, and the modules that hold them.
PRIVATE = re.compile(
    r"\._client\.force_metadata_update|\._fetcher\b|\._committed_offset\b|\._get_active_partitions\b"
    r"|\._fetch_max_wait_ms\b|\._create_worker_consumer\b|\._new_consumer_thread\b|\._commit_offsets\b"
    r"|\._new_transport\b|faust\.transport\.drivers|faust\.tables\.recovery"
)


def test_no_module_but_faust_internals_reaches_into_faust_or_aiokafka() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "infra" / "faust_internals.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line) and not line.lstrip().startswith("#")
    ]
    assert found == []


def test_the_one_module_holds_every_override() -> None:
    text = (ROOT / "infra" / "faust_internals.py").read_text()
    for name in ("SafeRecovery", "SafeTableManager", "FetchWaitApp", "force_metadata_update", "PINNED"):
        assert re.search(rf"^(class|def|async def) {name}\b|^{name}\b", text, re.M), name
