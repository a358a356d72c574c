"""Settings of MongoDB: any server by URI, or the local stack's FerretDB."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infra.settings.component import Component


class MongoSettings(Component):
    """Mongo settings: see each field's description."""

    mongodb_uri: str | None = Field(
        None,
        description="Any MongoDB (or compatible) server; default: the local stack's "
        "FerretDB, mongodb://127.0.0.1:<ferretdb_port>/.",
    )
    mongodb_db: str = Field("cadenza", description="Database name.")
    ferretdb_version: str = Field(
        "v1.24.2", description="Local stack: FerretDB version built from the Go module proxy."
    )
    ferretdb_port: int = Field(27017, description="Local stack: FerretDB listen port.")
    ferretdb_sqlite_sync: Literal["off", "normal", "full"] = Field(
        "normal",
        description="Local stack: SQLite `synchronous` of FerretDB (WAL mode): 'normal' survives "
        "process crashes, 'full' also power loss (slower writes).",
    )

    @property
    def mongo_uri(self) -> str:
        """Where pymongo connects."""
        return self.mongodb_uri or f"mongodb://127.0.0.1:{self.ferretdb_port}/"
