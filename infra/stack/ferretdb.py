"""The local MongoDB-compatible server: FerretDB with its SQLite backend, on loopback.

The binary is built once from the Go module proxy into
``<cache_dir>/ferretdb-<version>/ferretdb`` (``go mod download`` + ``go build``);
its SQLite files and state live under ``<data_dir>/ferretdb`` and survive restarts.
Cadenza talks to it only through pymongo, like to any MongoDB. Its log (warnings and
errors only) is its redirected output, ``<data_dir>/logs/ferretdb.log``: FerretDB cannot
rotate it, so it is rotated at every start once past ``log_max_mb`` (``log_backups`` kept).
"""

from __future__ import annotations

import json
import shutil
import stat
import tempfile
from pathlib import Path

from infra.errors import ConfigError
from infra.settings import Settings
from infra.stack.process import ManagedProcess, ensure_port_free, port_open, wait_until
from infra.stack.tools import require, run_checked

MODULE = "github.com/FerretDB/FerretDB"

#: Source fixes applied before building (file, original, replacement, count), bumping
#: the cache key. v1.24's SQLite backend looks ``_id`` up as ``->'$._id'`` while its
#: unique index is on ``->"_id"``, so SQLite never used the index: every update or
#: upsert by ``_id`` scanned the table (11 ms per update at 5,000 documents, growing
#: linearly). It also pushed down only string/ObjectId ids; integer ids (FMA track
#: ids) are added, matched on their stored representation.
#: The patches fix the local development server only; production uses any MongoDB.
PATCHES: tuple[tuple[str, str, str, int], ...] = (
    (
        "internal/backends/sqlite/metadata/metadata.go",
        """IDColumn = DefaultColumn + "->'$._id'\"""",
        """IDColumn = DefaultColumn + "->'_id'\"""",
        1,
    ),
    (
        "internal/backends/sqlite/collection.go",
        "case string, types.ObjectID:",
        "case string, types.ObjectID, int32, int64:",
        2,
    ),
    # It pushed ``_id`` down only when ``_id`` was the filter's only key, so an update
    # filtered on ``_id`` and another field (``cadenza db migrate``: ``_id`` and
    # ``features`` still an array) scanned the whole table, for every document. Push the
    # ``_id`` down whatever else the filter holds: every handler applies the whole filter
    # to what the backend returns anyway (a pushdown only narrows the rows read).
    (
        "internal/backends/sqlite/collection.go",
        "if params.Filter.Len() == 1 {",
        "if params.Filter.Len() >= 1 {",
        2,
    ),
    # The update handler deferred closing each statement's query iterator to the end of
    # the whole command: a bulk write updating more than 100 existing documents used up
    # the 100-connection pool and hung forever. Close each one when its update is done.
    ("internal/handler/msg_update.go", "\t\tdefer closer.Close()\n", "", 1),
    (
        "internal/handler/msg_update.go",
        'result, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n',
        'result, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n\t\tcloser.Close()\n',
        1,
    ),
)
PATCH_LEVEL = "cadenza3"


def apply_patches(src: Path) -> None:
    """Apply :data:`PATCHES` to a FerretDB source tree; fail loudly if one no longer fits."""
    for rel, old, new, count in PATCHES:
        path = src / rel
        text = path.read_text()
        if text.count(old) != count:
            raise ConfigError(
                f"FerretDB source {rel} does not contain {old!r} {count}x: the pinned version "
                "changed; update infra/stack/ferretdb.py PATCHES"
            )
        path.write_text(text.replace(old, new))


class FerretDB:
    """Build, start, probe and stop the local FerretDB."""

    name = "ferretdb"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.data_dir.resolve() / "ferretdb"
        version = settings.ferretdb_version
        self.binary = settings.cache_dir.expanduser() / f"ferretdb-{version}-{PATCH_LEVEL}" / "ferretdb"
        self.proc = ManagedProcess(
            "ferretdb",
            settings.run_path.resolve(),
            settings.logs_path.resolve(),
            marker=str(self.home),
            log_max_bytes=settings.log_max_bytes,
            log_backups=settings.log_backups,
        )

    @property
    def address(self) -> str:
        return f"mongodb://127.0.0.1:{self.settings.ferretdb_port}/"

    def ensure_binary(self) -> Path:
        """Build FerretDB from its Go module once (needs Go only while the cache is cold)."""
        if self.binary.exists():
            return self.binary
        go = require(
            "go", "building FerretDB needs Go 1.22+", "https://go.dev/doc/install or apt install golang"
        )
        version = self.settings.ferretdb_version
        info = json.loads(
            run_checked(
                [go, "mod", "download", "-json", f"{MODULE}@{version}"],
                f"downloading FerretDB {version}",
                env={"GOFLAGS": "-mod=mod"},
                cwd=Path(tempfile.gettempdir()),
            )
        )
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="ferretdb-build-") as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(info["Dir"], src)
            for path in [src, *src.rglob("*")]:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
            version_dir = src / "build" / "version"
            (version_dir / "version.txt").write_text(version + "\n")
            (version_dir / "package.txt").write_text("cadenza\n")
            apply_patches(src)
            out = self.binary.with_suffix(".tmp")
            run_checked(
                [
                    go,
                    "build",
                    "-trimpath",
                    "-tags",
                    "ferretdb_no_postgresql",
                    "-o",
                    str(out),
                    "./cmd/ferretdb",
                ],
                f"building FerretDB {version}",
                cwd=src,
            )
            out.rename(self.binary)
        return self.binary

    def running(self) -> bool:
        return self.proc.pid() is not None

    def answers(self) -> bool:
        return port_open("127.0.0.1", self.settings.ferretdb_port)

    def start(self, timeout: float = 30.0) -> None:
        binary = self.ensure_binary()
        ensure_port_free("127.0.0.1", self.settings.ferretdb_port, "CADENZA_FERRETDB_PORT")
        sqlite_dir = self.home / "sqlite"
        state_dir = self.home / "state"
        sqlite_dir.mkdir(parents=True, exist_ok=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.proc.start(
            [
                str(binary), "--handler=sqlite",
                f"--sqlite-url=file:{sqlite_dir}/?_pragma=synchronous({self.settings.ferretdb_sqlite_sync})",
                f"--listen-addr=127.0.0.1:{self.settings.ferretdb_port}", f"--state-dir={state_dir}",
                "--telemetry=disable", "--debug-addr=-", "--log-level=warn",
            ]
        )  # fmt: skip
        wait_until(self.answers, timeout, "FerretDB", self.proc)

    def stop(self) -> bool:
        return self.proc.stop(timeout=15.0)

    def kill(self) -> None:
        self.proc.kill()
