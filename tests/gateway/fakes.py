"""In-memory stand-ins for the gateway's MongoDB client and Kafka producer, for component tests.

Source: a few track documents given by the test. Destination: the routes of a
``create_app(settings, start_feed=False)`` app, through ``app.state.gateway.mongo`` and
``.producer``, so catalogue, play and audio routes run their whole code path (paging,
validation, the publish, ranges) without a broker or a database. Only the calls the
gateway makes are implemented; ``tracks`` filters are not interpreted beyond ``_id``
look-ups, those of the other collections (password sign-in's) only for the operators it uses.
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


def matches(doc: dict[str, Any], where: dict[str, Any]) -> bool:
    """``where`` as MongoDB reads it, for equality and ``$in $ne $gt $gte $lt`` only."""
    tests = {
        "$in": lambda v, arg: v in arg,
        "$ne": lambda v, arg: v != arg,
        "$gt": lambda v, arg: v is not None and v > arg,
        "$gte": lambda v, arg: v is not None and v >= arg,
        "$lt": lambda v, arg: v is not None and v < arg,
    }
    for name, wanted in where.items():
        value = doc.get(name)
        if isinstance(wanted, dict):
            if not all(tests[op](value, arg) for op, arg in wanted.items()):
                return False
        elif value != wanted:
            return False
    return True


class Records:
    """Any other collection (``accounts``, ``signin_failures``): finds, inserts and deletes."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    def find(self, where: dict[str, Any], projection: Any = None) -> Cursor:
        return Cursor([dict(d) for d in self.docs if matches(d, where)])

    def find_one(self, where: dict[str, Any], projection: Any = None) -> dict[str, Any] | None:
        return next(iter(self.find(where)), None)

    def insert_many(self, docs: list[dict[str, Any]]) -> None:
        self.docs.extend(dict(d) for d in docs)

    def delete_many(self, where: dict[str, Any]) -> SimpleNamespace:
        kept = [d for d in self.docs if not matches(d, where)]
        deleted, self.docs = len(self.docs) - len(kept), kept
        return SimpleNamespace(deleted_count=deleted)


class Database(SimpleNamespace):
    """``db.tracks`` (the given tracks), and ``db[name]`` for the other collections."""

    def __getitem__(self, name: str) -> Any:
        if name == "tracks":
            return self.tracks
        return self.__dict__.setdefault(f"_{name}", Records())


class Mongo:
    """``client[db].tracks``, ``client[db][name]`` and ``client.admin.command("ping")``."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.db = Database(tracks=Tracks(docs))
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
