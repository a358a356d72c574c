"""requirements.lock is the tested install: complete, hash-checked, and what is installed here.

Also the faust-streaming/aiokafka pin (infra/faust_internals.py): the versions whose
internals the recommender relies on are the installed and the locked ones, and a worker
refuses to start on others.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from infra import faust_internals as pinned

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


@dataclass(frozen=True)
class Locked:
    version: str
    hashes: tuple[str, ...]


def parse_lock(path: Path) -> dict[str, Locked]:
    """name (canonical) -> version and hashes, from a ``pip-compile``-style lock file."""
    entries: dict[str, Locked] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        match = PIN.match(block)
        if match is None:
            continue
        name = canonicalize_name(match[1])
        assert name not in entries, f"{path.name} names {name} twice"
        entries[name] = Locked(match[2], tuple(re.findall(r"--hash=(\S+)", block)))
    return entries


def pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def declared() -> list[Requirement]:
    project = pyproject()["project"]
    runtime = project["dependencies"]
    dev = project["optional-dependencies"]["dev"]
    return [Requirement(spec) for spec in [*runtime, *dev]]


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# (a) faust-streaming and aiokafka are exactly the releases the code relies on


def test_the_installed_faust_and_aiokafka_are_the_pinned_releases() -> None:
    assert pinned.mismatches() == []


def test_the_lock_holds_the_pinned_faust_and_aiokafka() -> None:
    lock = parse_lock(LOCK)
    assert {name: lock[name].version for name in pinned.PINNED} == dict(pinned.PINNED)


def test_mismatches_names_each_package_that_differs() -> None:
    versions = {"faust-streaming": "0.15.3", "aiokafka": "0.15.0"}
    problems = pinned.mismatches(versions.get, {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"})
    assert problems == ["aiokafka 0.15.0 is installed, Cadenza needs aiokafka==0.14.0"]
    assert pinned.mismatches(lambda name: None, {"aiokafka": "0.14.0"}) == [
        "aiokafka not installed is installed, Cadenza needs aiokafka==0.14.0"
    ]


def test_require_pinned_refuses_with_what_to_do() -> None:
    pinned.require_pinned(lambda name: pinned.PINNED[name])  # the right versions: no exit
    with pytest.raises(SystemExit) as exit_:
        pinned.require_pinned(lambda name: "9.9.9")
    message = str(exit_.value.code)
    assert "refusing to start" in message
    assert "faust-streaming 9.9.9" in message
    assert "aiokafka==" + pinned.PINNED["aiokafka"] in message
    assert "infra/bootstrap.sh" in message


def test_the_worker_checks_the_pin_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender_stream import worker

    def get_settings() -> None:
        raise AssertionError("the worker went on past a wrong aiokafka")

    monkeypatch.setattr(worker, "get_settings", get_settings)
    monkeypatch.setattr(pinned.metadata, "version", lambda name: "0.0.1")
    with pytest.raises(SystemExit, match="refusing to start"):
        worker.main([])


# (b) what is installed here is what the lock says


def test_every_installed_package_the_lock_names_has_the_locked_version() -> None:
    wrong = {
        name: (entry.version, have)
        for name, entry in parse_lock(LOCK).items()
        if (have := installed(name)) is not None and Version(have) != Version(entry.version)
    }
    assert wrong == {}, "(locked, installed): run `bash infra/bootstrap.sh`"


# (c) the lock covers pyproject.toml


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    lock = parse_lock(LOCK)
    missing = [str(req) for req in declared() if canonicalize_name(req.name) not in lock]
    assert missing == [], "not in requirements.lock: run `make lock`"
    outside = [
        f"{req} (locked {lock[canonicalize_name(req.name)].version})"
        for req in declared()
        if not req.specifier.contains(lock[canonicalize_name(req.name)].version, prereleases=True)
    ]
    assert outside == [], "locked outside pyproject.toml's range: run `make lock`"


def test_the_build_lock_covers_the_build_backend() -> None:
    lock = parse_lock(BUILD_LOCK)
    for spec in pyproject()["build-system"]["requires"]:
        req = Requirement(spec)
        assert req.specifier.contains(lock[canonicalize_name(req.name)].version), spec


def test_starlette_is_past_cve_2025_62727() -> None:
    (starlette,) = [req for req in declared() if req.name == "starlette"]
    assert not starlette.specifier.contains("0.49.0")
    assert Version(parse_lock(LOCK)["starlette"].version) >= Version("0.49.1")


# (d) every entry is hash-checked


@pytest.mark.parametrize("path", [LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_every_lock_entry_has_a_hash(path: Path) -> None:
    lock = parse_lock(path)
    assert lock, f"{path.name} names no package"
    assert [name for name, entry in lock.items() if not entry.hashes] == []
    assert all(h.startswith("sha256:") for entry in lock.values() for h in entry.hashes)
