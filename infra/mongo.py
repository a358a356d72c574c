"""pymongo access for every Cadenza process: one client, the database, and its indexes.

``init_db`` creates the collections and indexes of ``schemas.documents.COLLECTIONS``
idempotently (``cadenza db init``): run twice, the second run changes nothing.
Works against the local FerretDB and any MongoDB alike.
"""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

from infra.errors import UnreachableError
from infra.settings import Settings
from schemas.documents import COLLECTIONS, IndexSpec

Doc = dict[str, Any]


def client(settings: Settings, timeout_ms: int = 5000) -> MongoClient[Doc]:
    """A pymongo client for ``CADENZA_MONGODB_URI`` (lazy: connects on first use)."""
    return MongoClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        appname="cadenza",
        tz_aware=True,
    )


def database(settings: Settings, mongo: MongoClient[Doc] | None = None) -> Database[Doc]:
    return (mongo or client(settings))[settings.mongodb_db]


def ping(settings: Settings, mongo: MongoClient[Doc] | None = None) -> str:
    """The server's version string, or :class:`UnreachableError` saying what to do."""
    try:
        info = (mongo or client(settings, timeout_ms=3000)).server_info()
    except PyMongoError as err:
        raise UnreachableError(
            f"MongoDB at {settings.mongo_uri} did not answer ({type(err).__name__}); start the "
            "local stack with `cadenza stack up` or set CADENZA_MONGODB_URI"
        ) from None
    return str(info.get("version", "?"))


def index_name(spec: IndexSpec) -> str:
    return spec.name or "_".join(f"{k}_{d}" for k, d in spec.keys)


def init_db(db: Database[Doc]) -> list[str]:
    """Create missing collections and indexes; return a list of what was created."""
    created: list[str] = []
    try:
        present = set(db.list_collection_names())
        for coll in COLLECTIONS:
            if coll.name not in present:
                db.create_collection(coll.name)
                created.append(f"collection {coll.name}")
            existing = {info["name"] for info in db[coll.name].list_indexes()}
            for spec in coll.indexes:
                name = index_name(spec)
                if name not in existing:
                    db[coll.name].create_index(list(spec.keys), name=name, unique=spec.unique)
                    created.append(f"index {coll.name}.{name}")
    except PyMongoError as err:
        raise UnreachableError(f"initialising database {db.name} failed: {err}") from None
    return created
