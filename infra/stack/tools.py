"""Checks for the host tools the local stack needs (Java, Maven, Go), with actionable errors.

Java runs the Kafka broker; Maven resolves Kafka's and Spark's jars once into the
cache; Go builds FerretDB once into the cache. Maven and Go are only needed while
the cache is cold.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from infra.errors import ConfigError

MIN_JAVA = 17


def java_bin() -> str:
    """Path of a Java ≥ 17 executable (``$JAVA_HOME/bin/java`` first, then ``PATH``)."""
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise ConfigError(
            "Java not found: the Kafka broker needs Java 17 or newer; install it "
            "(Debian/Ubuntu: apt install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    out = subprocess.run([candidate, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise ConfigError(
            f"{candidate} is Java {major or 'of unknown version'}; the Kafka broker needs "
            f"Java {MIN_JAVA}+ (set JAVA_HOME to a newer JDK)"
        )
    return candidate


def require(tool: str, why: str, install: str) -> str:
    """Path of ``tool`` on PATH or a :class:`ConfigError` saying how to get it."""
    found = shutil.which(tool)
    if not found:
        raise ConfigError(f"{tool} not found on PATH: {why}; install it ({install})")
    return found


def run_checked(
    argv: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    """Run a build step; on failure raise a :class:`ConfigError` with the output's tail."""
    proc = subprocess.run(
        argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ConfigError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return proc.stdout
