"""`cadenza stack up | down | status` on the real processes: idempotent, no orphans, data kept,
and bad configuration reported in one actionable line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.errors import ConfigError
from infra.mongo import client
from infra.settings import Settings
from infra.stack.manager import LocalStack
from infra.stack.process import free_port, port_open

pytestmark = pytest.mark.stack


def _pids(stack: LocalStack) -> dict[str, int | None]:
    return {c.name: c.proc.pid() for c in stack.components}


def _processes_for(home: Path) -> list[str]:
    """Command lines of live processes that belong to a stack data dir."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text()
        except OSError:
            continue
        if str(home) in cmd and ") Z" not in state and "pytest" not in cmd:
            found.append(cmd)
    return found


def test_up_is_idempotent_and_down_up_keeps_data(owned_stack: LocalStack) -> None:
    settings = owned_stack.settings
    before = _pids(owned_stack)
    assert all(before.values())
    owned_stack.up()  # already running: nothing restarts
    assert _pids(owned_stack) == before

    mongo = client(settings)
    mongo["lifecycle"].kept.replace_one({"_id": "k"}, {"v": 42}, upsert=True)
    mongo.close()

    owned_stack.down()
    assert _pids(owned_stack) == {"kafka": None, "ferretdb": None}
    assert _processes_for(settings.data_dir.resolve()) == []  # no orphans
    assert not port_open("127.0.0.1", settings.kafka_port)
    assert not port_open("127.0.0.1", settings.ferretdb_port)
    owned_stack.down()  # down twice is fine

    owned_stack.up()
    assert all(_pids(owned_stack).values())
    status = owned_stack.status()
    assert status.healthy, status.problems
    mongo = client(settings)
    try:
        assert mongo["lifecycle"].kept.find_one({"_id": "k"}) == {"_id": "k", "v": 42}
        mongo.drop_database("lifecycle")
    finally:
        mongo.close()


def test_taken_port_is_refused_with_the_setting_to_change(
    tmp_path: Path, stack_overrides: dict[str, Any]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = Settings(data_dir=tmp_path, kafka_port=port, kafka_controller_port=free_port(),
                            ferretdb_port=free_port())  # fmt: skip
        with pytest.raises(ConfigError) as info:
            LocalStack(settings).kafka.start()
    assert f"port {port}" in str(info.value) and "CADENZA_KAFKA_PORT" in str(info.value)
    assert _processes_for(tmp_path.resolve()) == []


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_java_is_one_line_error(tmp_path: Path) -> None:
    env = {
        "PATH": str(Path(sys.executable).parent),  # python only: no java
        "HOME": os.environ.get("HOME", "/root"),
        "CADENZA_DATA_DIR": str(tmp_path),
        "CADENZA_KAFKA_PORT": str(free_port()),
        "CADENZA_FERRETDB_PORT": str(free_port()),
    }
    result = _cli(["stack", "up"], env, tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Java not found" in lines[0] and "JAVA_HOME" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_status_of_a_stopped_stack_exits_nonzero(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CADENZA_DATA_DIR": str(tmp_path),
        "CADENZA_KAFKA_PORT": str(free_port()),
        "CADENZA_FERRETDB_PORT": str(free_port()),
    }
    result = _cli(["stack", "status"], env, tmp_path)
    assert result.returncode == 1
    assert "did not answer" in result.stdout and "cadenza stack up" in result.stdout
