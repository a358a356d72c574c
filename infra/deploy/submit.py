"""Submit a ``cadenza`` command that runs Spark jobs to a Spark cluster with spark-submit.

    CADENZA_STACK_PROFILE=cluster python -m infra.deploy.submit etl run --fma-dir /data/fma
    CADENZA_SPARK_MASTER=spark://10.0.0.5:7077 infra/deploy/spark-submit.sh stream plays

The driver is the ``cadenza`` CLI itself, run in client mode by this environment's
Python. Executors share nothing with this checkout: Cadenza's packages travel as a zip
(``--py-files``), the third-party packages they import as a venv-pack archive
(``--archives …#environment``, built once into the cache by
:mod:`infra.deploy.executor_env`) and their Python is ``./environment/bin/python``;
pyspark itself comes from each worker's SPARK_HOME. Each application takes
``spark_cores_max`` cores in one-core executors, so the streaming queries and a batch
job can share a small cluster. ``--dry-run`` as the first argument prints the command.
"""

from __future__ import annotations

import os
import shlex
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from infra import spark_daemon
from infra.errors import ConfigError
from infra.settings import Settings
from infra.spark import driver_conf, driver_env

#: Cadenza's packages the Spark code needs (driver and executors); the gateway and the
#: recommender never run on Spark.
PACKAGES = ("schemas", "infra", "etl", "streaming_jobs")
ENV_ALIAS = "environment"
EXECUTOR_PYTHON = f"./{ENV_ALIAS}/bin/python"
DRIVER_SCRIPT = '''\
"""spark-submit's entry point: the ``cadenza`` command, Cadenza's packages from --py-files."""

from infra.cli import main

main()
'''
_EPOCH = (1980, 1, 1, 0, 0, 0)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def build_zip(root: Path, dest: Path, packages: Sequence[str] = PACKAGES) -> Path:
    """Zip ``packages`` (folders under ``root``) into ``dest``, without bytecode caches.

    Entries (folders too) are sorted and dated 1980, so the same sources give the same bytes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")  # two submits may build at once
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in packages:
            base = root / package
            if not base.is_dir():  # infra is a namespace package (no __init__.py)
                raise ConfigError(f"{base} is not a folder (building {dest.name})")
            for path in [base, *sorted(base.rglob("*"))]:
                rel = path.relative_to(root)
                if "__pycache__" in rel.parts or path.suffix in {".pyc", ".pyo"}:
                    continue
                if path.is_dir():  # zipimport finds namespace packages by their folder entries
                    info = zipfile.ZipInfo(rel.as_posix() + "/", date_time=_EPOCH)
                    info.external_attr = (0o40755 << 16) | 0x10
                    zf.writestr(info, b"")
                elif path.is_file():
                    info = zipfile.ZipInfo(rel.as_posix(), date_time=_EPOCH)
                    info.external_attr = 0o644 << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    zf.writestr(info, path.read_bytes())
    tmp.replace(dest)
    return dest


def driver_script(build_dir: Path) -> Path:
    """The ``.py`` file spark-submit runs as the driver (in a folder with nothing else to import)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / "cadenza_driver.py"
    if not path.exists() or path.read_text() != DRIVER_SCRIPT:
        path.write_text(DRIVER_SCRIPT)
    return path


def submit_argv(
    settings: Settings,
    py_zip: Path,
    archive: Path,
    jars: Sequence[Path],
    args: Sequence[str],
    *,
    spark_home: Path | None = None,
    entry: Path | None = None,
    driver_python: str = sys.executable,
) -> list[str]:
    """The spark-submit command line running ``cadenza <args>`` on ``settings.spark_master``.

    ``spark_home`` defaults to the installed pyspark, ``entry`` (the driver script, see
    :func:`driver_script`) to ``cadenza_driver.py`` beside the zip."""
    master = settings.spark_master
    if not master.startswith(("spark://", "yarn", "k8s://")):
        raise ConfigError(
            f"spark-submit needs a cluster master, CADENZA_SPARK_MASTER is {master!r}: set "
            "CADENZA_STACK_PROFILE=cluster or CADENZA_SPARK_MASTER=spark://host:port"
        )
    conf = {
        "spark.pyspark.python": EXECUTOR_PYTHON,
        "spark.pyspark.driver.python": driver_python,
        "spark.executor.memory": settings.spark_executor_memory,
        "spark.executor.cores": "1",
        "spark.cores.max": str(settings.spark_cores_max),
        "spark.sql.session.timeZone": "UTC",
        "spark.python.worker.reuse": "true",
        # Python workers that don't re-read Spark's jars before every task (infra/spark_daemon.py).
        "spark.python.daemon.module": spark_daemon.EXECUTOR_MODULE,
    }
    # A cluster on this machine: the driver listens on loopback too (its web UI through
    # SPARK_LOCAL_IP in main()'s environment, infra.spark.driver_env).
    conf.update(driver_conf(settings))
    if spark_home is None:
        from infra.stack.spark_standalone import spark_home as installed_spark_home

        spark_home = installed_spark_home()
    entry = entry or py_zip.parent / "cadenza_driver.py"
    argv = [
        str(spark_home / "bin" / "spark-submit"),
        "--master", master,
        "--deploy-mode", "client",
        "--driver-memory", settings.spark_driver_memory,
        "--py-files", str(py_zip),
        "--archives", f"{archive}#{ENV_ALIAS}",
    ]  # fmt: skip
    if jars:
        argv += ["--jars", ",".join(str(j) for j in jars)]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, str(entry), *args]


def prepare(settings: Settings, args: Sequence[str]) -> list[str]:
    """Build the zip and the environment archive (cached), resolve the jars; the argv to run."""
    from infra.deploy.executor_env import executor_env_archive
    from infra.spark import kafka_connector_jars
    from infra.stack.spark_standalone import spark_home

    build = settings.data_dir.resolve() / "deploy"
    py_zip = build_zip(repo_root(), build / "cadenza.zip")
    archive = executor_env_archive(settings, report=lambda msg: print(msg, file=sys.stderr))
    return submit_argv(
        settings,
        py_zip,
        archive,
        kafka_connector_jars(settings),
        args,
        spark_home=spark_home(),
        entry=driver_script(build),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m infra.deploy.submit [--dry-run] <cadenza arguments>``."""
    from infra.settings import get_settings

    args = list(sys.argv[1:] if argv is None else argv)
    dry_run = bool(args) and args[0] == "--dry-run"
    args = args[1:] if dry_run else args
    if not args:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        settings = get_settings()
        command = prepare(settings, args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    if dry_run:
        print(shlex.join(command))
        return
    env = {**os.environ, "PYSPARK_DRIVER_PYTHON": sys.executable, **driver_env(settings)}
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
