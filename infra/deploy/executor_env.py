"""The Python environment archive Spark executors run Cadenza's code in.

On a Spark cluster the executors do not share this checkout's virtualenv: spark-submit
ships Cadenza's own packages as a zip (``--py-files``) and the third-party packages
that code imports as an environment archive (``--archives <archive>#environment``,
executors run ``./environment/bin/python``). This module builds that archive once: a
fresh venv under ``<cache_dir>/spark-executor-env/`` with
``infra/deploy/executor-requirements.txt`` installed (each package named there pinned
to the version installed here, on the driver), packed with ``venv-pack`` into
``<cache_dir>/spark-executor-env-<key>.tar.gz``, where the key hashes the requirements,
the pins and the Python version. Later calls reuse the archive (a ``.complete`` file
beside it marks a finished build); ``CADENZA_SPARK_EXECUTOR_ENV`` names a prebuilt one.

The packed venv links ``bin/python`` to this machine's base interpreter, so executor
hosts need the same Python at the same path (true for the local cluster; pass
``--python-prefix`` to venv-pack for other layouts).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path

from infra import spark_daemon
from infra.errors import ConfigError
from infra.settings import Settings
from infra.stack.tools import run_checked

REQUIREMENTS = Path(__file__).resolve().with_name("executor-requirements.txt")
#: Bumped when the way the archive is built changes (invalidates cached archives).
BUILD_LEVEL = "3"
#: Archive format. Spark 4 unpacks a ``.tar`` with Java code that refuses the venv's absolute
#: ``bin/python3.11`` symlink (to the base interpreter); a ``.tar.gz`` goes through the system
#: tar, which keeps symlinks and permissions. Measured on 2 cores (~680 MB unpacked): level 1
#: packs in 8 s to 245 MB and unpacks in ~10 s; level 0 saves little unpacking time at 3x size.
ARCHIVE_FORMAT = "tar.gz"
COMPRESS_LEVEL = 1
#: Left out of the archive: not needed to run code (installers, test suites: ~140 MB).
EXCLUDES = (
    "bin/pip*",
    "lib/python*/site-packages/pip/*",
    "lib/python*/site-packages/pip-*",
    "lib/python*/site-packages/*/tests/*",
)

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

Report = Callable[[str], None]


def requirement_names(text: str) -> list[str]:
    """Distribution names in a requirements file (comments, blank lines and options skipped)."""
    names = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _NAME.match(line)
        if match:
            names.append(canonical_name(match.group(1)))
    return names


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Pydantic_Settings`` -> ``pydantic-settings``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def driver_pins(names: Iterable[str], version: Callable[[str], str] = metadata.version) -> list[str]:
    """``name==version`` of each named package installed in this (the driver's) environment."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return sorted(pins)


def python_tag() -> str:
    """The interpreter the archive is built with and for (``cpython-3.11.7-x86_64``)."""
    return f"{sys.implementation.name}-{platform.python_version()}-{platform.machine()}"


def env_key(requirements: str, pins: Iterable[str], python: str) -> str:
    """Cache key of an archive: requirements text, pins, Python and :data:`BUILD_LEVEL`."""
    digest = hashlib.sha256()
    for part in (BUILD_LEVEL, python, ARCHIVE_FORMAT, requirements.strip(), "\n".join(sorted(pins))):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def archive_path(settings: Settings, key: str) -> Path:
    return settings.cache_dir.expanduser() / f"spark-executor-env-{key}.{ARCHIVE_FORMAT}"


def executor_env_archive(
    settings: Settings, report: Report = lambda _msg: None, requirements: Path = REQUIREMENTS
) -> Path:
    """Path of the executors' environment archive, building it on first use.

    ``settings.spark_executor_env`` wins when set (it must exist). Otherwise the archive
    for the current requirements and Python is reused from the cache or built (minutes:
    ``pip install`` of numpy, pandas, pyarrow, scipy, librosa, …); concurrent callers
    wait for one build. Raises :class:`ConfigError` with the failing step's output.
    """
    if settings.spark_executor_env is not None:
        path = settings.spark_executor_env.expanduser()
        if not path.is_file():
            raise ConfigError(f"CADENZA_SPARK_EXECUTOR_ENV={path} does not exist")
        return path
    text = requirements.read_text()
    pins = driver_pins(requirement_names(text))
    key = env_key(text, pins, python_tag())
    archive = archive_path(settings, key)
    done = complete_marker(archive)
    if archive.exists() and done.exists():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with _locked(archive.parent / "spark-executor-env.lock"):
        if archive.exists() and done.exists():  # built by another process meanwhile
            return archive
        venv = settings.cache_dir.expanduser() / "spark-executor-env" / key
        _build(requirements, pins, venv, archive, report)
        done.write_text("\n".join([python_tag(), *pins]) + "\n")
    return archive


def complete_marker(archive: Path) -> Path:
    return archive.with_name(archive.name + ".complete")


def _build(requirements: Path, pins: list[str], venv: Path, archive: Path, report: Report) -> None:
    """Create ``venv``, install ``requirements`` pinned to ``pins``, pack it into ``archive``."""
    try:
        import venv_pack  # noqa: F401
    except ImportError:
        raise ConfigError(
            "building the Spark executors' environment needs venv-pack: pip install venv-pack "
            "(or set CADENZA_SPARK_EXECUTOR_ENV to a prebuilt archive)"
        ) from None
    shutil.rmtree(venv, ignore_errors=True)  # left over from an interrupted build
    venv.parent.mkdir(parents=True, exist_ok=True)
    constraints = venv.parent / f"{venv.name}-constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in pins))
    python = venv / "bin" / "python"
    tmp = archive.with_name(archive.name + ".tmp")
    started = time.monotonic()
    try:
        report(f"spark executor env: creating a venv in {venv}")
        run_checked([sys.executable, "-m", "venv", str(venv)], "creating the executor venv")
        report(f"spark executor env: pip install -r {requirements.name} (a few minutes)")
        run_checked(
            [
                str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                "-r", str(requirements), "-c", str(constraints),
            ],
            f"installing {requirements} into the executor venv",
        )  # fmt: skip
        add_daemon_module(venv)
        report(f"spark executor env: packing {archive.name}")
        tmp.unlink(missing_ok=True)
        excludes = [arg for pattern in EXCLUDES for arg in ("--exclude", pattern)]
        run_checked(
            [
                sys.executable, "-m", "venv_pack", "--prefix", str(venv), "--output", str(tmp),
                "--format", ARCHIVE_FORMAT, "--compress-level", str(COMPRESS_LEVEL), "--quiet",
                *excludes,
            ],
            "packing the executor venv with venv-pack",
        )  # fmt: skip
        tmp.chmod(0o644)
        tmp.replace(archive)
    finally:
        tmp.unlink(missing_ok=True)
        constraints.unlink(missing_ok=True)
        shutil.rmtree(venv, ignore_errors=True)  # the archive is all that is needed
    size_mb = archive.stat().st_size / 1e6
    report(f"spark executor env: {archive} ({size_mb:.0f} MB, {time.monotonic() - started:.0f} s)")


def add_daemon_module(venv: Path) -> Path:
    """Copy :mod:`infra.spark_daemon` into ``venv``'s site-packages as the top-level
    ``cadenza_spark_daemon`` (what ``spark.python.daemon.module`` names on a cluster)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = venv / "lib" / version / "site-packages" / f"{spark_daemon.EXECUTOR_MODULE}.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spark_daemon.__file__, target)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def main() -> None:
    """``python -m infra.deploy.executor_env``: build (or find) the archive, print its path."""
    from infra.settings import get_settings

    try:
        print(executor_env_archive(get_settings(), report=lambda msg: print(msg, file=sys.stderr)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
