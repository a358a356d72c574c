"""The Python worker daemon's zip-import patch (infra/spark_daemon.py), and Spark using it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
import zipimport
from pathlib import Path
from typing import Any

import pytest

from infra import spark_daemon


def _archive(path: Path, modules: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in modules.items():
            zf.writestr(f"{name}.py", text)


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The patch installed for one test; the archives each re-read touched."""
    reads: list[str] = []
    original = spark_daemon._reread

    def counting(self: Any) -> None:
        reads.append(self.archive)
        original(self)

    monkeypatch.setattr(spark_daemon, "_read", {})
    monkeypatch.setattr(spark_daemon, "_reread", counting)
    monkeypatch.setattr(zipimport.zipimporter, "invalidate_caches", spark_daemon.invalidate_caches)
    return reads


def test_an_unchanged_archive_is_read_once_a_changed_one_again(tmp_path: Path, patched: list[str]) -> None:
    archive = tmp_path / "lib.zip"
    _archive(archive, {"alpha": "X = 1\n"})
    importers = [zipimport.zipimporter(str(archive)) for _ in range(3)]
    for _ in range(5):
        for importer in importers:
            importer.invalidate_caches()
    assert patched == [str(archive)]  # one read for five rounds of three importers

    _archive(archive, {"alpha": "X = 1\n", "beta": "Y = 2\n"})
    os.utime(archive, ns=(0, archive.stat().st_mtime_ns + 10**9))  # even within one mtime tick
    for importer in importers:
        importer.invalidate_caches()
    assert patched == [str(archive), str(archive)]
    assert all(importer.find_spec("beta") is not None for importer in importers)


def test_a_missing_archive_is_handed_to_zipimport(tmp_path: Path, patched: list[str]) -> None:
    archive = tmp_path / "lib.zip"
    _archive(archive, {"alpha": "X = 1\n"})
    importer = zipimport.zipimporter(str(archive))
    archive.unlink()
    importer.invalidate_caches()
    importer.invalidate_caches()
    assert patched == [str(archive), str(archive)]  # nothing to compare with: re-read each time
    assert importer.find_spec("alpha") is None


def test_the_daemon_module_patches_zipimport_in_its_process(tmp_path: Path) -> None:
    code = (
        "import zipimport, infra.spark_daemon as d; d.install(); "
        "print(zipimport.zipimporter.invalidate_caches is d.invalidate_caches)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert importlib.util.find_spec("infra.spark_daemon") is not None


def test_the_executor_copy_runs_without_cadenza_on_the_path(tmp_path: Path) -> None:
    """What executor_env puts in the executors' archive imports nothing of Cadenza's."""
    from infra.deploy.executor_env import add_daemon_module

    module = add_daemon_module(tmp_path / "venv")
    assert module.name == "cadenza_spark_daemon.py"
    assert module.read_text() == Path(spark_daemon.__file__).read_text()
    # -S: no site-packages, so neither Cadenza's editable install nor anything else.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import zipimport, cadenza_spark_daemon as d; "
        "d.install(); import importlib.util; print(importlib.util.find_spec('infra') is None, "
        "zipimport.zipimporter.invalidate_caches is d.invalidate_caches)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(module.parent)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.spark
def test_local_spark_runs_python_udfs_through_the_daemon_module(spark: Any) -> None:
    from pyspark.sql import functions as sf
    from pyspark.sql.types import StringType

    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == "infra.spark_daemon"

    @sf.udf(StringType())
    def where(_: int) -> str:
        import zipimport

        method = zipimport.zipimporter.invalidate_caches
        return f"{method.__module__}.{method.__qualname__}"

    rows = spark.range(4).repartition(2).select(where("id").alias("m")).collect()
    # Spark starts the daemon with ``python -m``: its functions live in ``__main__``
    # (zipimport's own would be "zipimport.zipimporter.invalidate_caches").
    assert {r.m for r in rows} == {"__main__.invalidate_caches"}
