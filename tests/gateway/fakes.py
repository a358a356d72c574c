"""In-memory stand-ins for the gateway's MongoDB client and Kafka producer, for component tests.

Source: a few track documents given by the test. Destination: the routes of a
``create_app(settings, start_feed=False)`` app, through ``app.state.gateway.mongo`` and
``.producer``, so catalogue, play and audio routes run their whole code path (paging,
validation, the publish, ranges) without a broker or a database. Only the calls the
gateway makes are implemented; filters are not interpreted beyond ``_id`` look-ups.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any


class Cursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def sort(self, key: str, direction: int) -> Cursor:
        return Cursor(sorted(self.docs, key=lambda d: d[key], reverse=direction < 0))

    def skip(self, n: int) -> Cursor:
        return Cursor(self.docs[n:])

    def limit(self, n: int) -> Cursor:
        return Cursor(self.docs[:n])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.docs)


class Tracks:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = {int(d["_id"]): d for d in docs}

    def _matching(self, where: dict[str, Any]) -> list[dict[str, Any]]:
        wanted = where.get("_id")
        if isinstance(wanted, int):
            return [self.docs[wanted]] if wanted in self.docs else []
        if isinstance(wanted, dict) and "$in" in wanted:
            return [self.docs[i] for i in wanted["$in"] if i in self.docs]
        return list(self.docs.values())

    def find_one(self, where: dict[str, Any], projection: Any = None) -> dict[str, Any] | None:
        found = self._matching(where)
        return dict(found[0]) if found else None

    def find(self, where: dict[str, Any], projection: Any = None) -> Cursor:
        return Cursor([dict(d) for d in self._matching(where)])

    def count_documents(self, where: dict[str, Any]) -> int:
        return len(self._matching(where))

    def aggregate(self, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        counts: dict[str, int] = {}
        for d in self.docs.values():
            if isinstance(d.get("genre_top"), str):
                counts[d["genre_top"]] = counts.get(d["genre_top"], 0) + 1
        return [{"_id": g, "n": n} for g, n in counts.items()]


class Mongo:
    """``client[db].tracks`` and ``client.admin.command("ping")``."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.db = SimpleNamespace(tracks=Tracks(docs))
        self.admin = SimpleNamespace(command=lambda name: {"ok": 1})

    def __getitem__(self, name: str) -> Any:
        return self.db

    def close(self) -> None:
        """What the app's lifespan calls at shutdown."""


class Producer:
    """``send_and_wait`` records what would have gone to Kafka; ``client`` answers ``/readyz``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

        async def force_metadata_update() -> bool:
            return True

        self.client = SimpleNamespace(
            force_metadata_update=force_metadata_update, cluster=SimpleNamespace(brokers=lambda: {1})
        )

    async def send_and_wait(self, topic: str, *, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    async def stop(self) -> None:
        """What the app's lifespan calls at shutdown."""
