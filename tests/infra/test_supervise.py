"""supervisord.conf for the demo: every program, its log, and the configuration it runs with."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from infra.errors import InfraError
from infra.settings import Settings
from infra.stack.process import niced
from infra.supervise import SUBMIT_MODULE, configured, programs, render


def test_the_config_runs_every_program_with_the_given_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, gateway_port=18123, token_secret=SecretStr("s%cret"), demo_signin=False
    )
    text = render(settings, python="/venv/bin/python")
    sections = _sections(text)
    for program in programs(settings):
        section = sections[program.name]
        nice = "nice -n 10 " if program.name.startswith("stream-") else ""
        assert section["command"] == f"{nice}/venv/bin/python -m infra {' '.join(program.argv)}"
        assert section["stdout_logfile"] == f"{(tmp_path / 'logs' / program.name).resolve()}.log"
        assert section["autorestart"] == "true"
        assert 'CADENZA_DEMO_SIGNIN="True"' in section["environment"]  # the demo always offers sign-in
    gateway = sections["gateway"]["environment"]
    assert 'CADENZA_GATEWAY_PORT="18123"' in gateway
    assert 'CADENZA_TOKEN_SECRET="s%%cret"' in gateway  # % escaped for supervisord
    assert configured(settings)["gateway_port"] == 18123
    assert [p.name for p in programs(settings)] == ["stream-assign", "stream-plays", "recommender", "gateway"]


def test_spark_programs_run_niced_unless_spark_nice_is_0(tmp_path: Path) -> None:
    commands = {
        name: section["command"]
        for name, section in _sections(render(Settings(data_dir=tmp_path, spark_nice=7), "/p")).items()
        if "command" in section
    }
    assert commands["stream-plays"] == "nice -n 7 /p -m infra stream plays"
    assert commands["recommender"] == "/p -m infra recommender"
    plain = _sections(render(Settings(data_dir=tmp_path, spark_nice=0), "/p"))
    assert plain["stream-plays"]["command"] == "/p -m infra stream plays"


def test_a_niced_process_and_its_children_run_at_that_niceness(tmp_path: Path) -> None:
    code = "import os, subprocess; print(os.nice(0), subprocess.check_output(['nice']).decode().strip())"
    out = subprocess.run(niced([sys.executable, "-c", code], 5), capture_output=True, text=True, check=True)
    base = os.nice(0)
    assert out.stdout.split() == [str(min(19, base + 5))] * 2


def _sections(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return {name.removeprefix("program:"): dict(parser[name]) for name in parser.sections()}


def test_the_cluster_profile_runs_two_workers_two_gateways_and_submits_the_queries(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, stack_profile="cluster", gateway_port=18100, faust_port=16100)
    sections = _sections(render(settings, python="/venv/bin/python"))
    assert {"recommender-1", "recommender-2", "gateway-1", "gateway-2"} <= set(sections)
    assert "recommender" not in sections and "gateway" not in sections
    for name in ("stream-assign", "stream-plays"):
        assert sections[name]["command"].startswith(f"nice -n 10 /venv/bin/python -m {SUBMIT_MODULE} stream ")

    def port(name: str) -> str:
        kind = "FAUST" if name.startswith("recommender") else "GATEWAY"
        found = re.search(rf'CADENZA_{kind}_PORT="(\d+)"', sections[name]["environment"])
        assert found is not None
        return found.group(1)

    ports = {name: port(name) for name in ("recommender-1", "recommender-2", "gateway-1", "gateway-2")}
    assert ports == {
        "recommender-1": "16100",
        "recommender-2": "16101",
        "gateway-1": "18100",
        "gateway-2": "18101",
    }
    for section in sections.values():
        if "environment" in section:
            assert 'CADENZA_STACK_PROFILE="cluster"' in section["environment"]
            assert (
                'CADENZA_KAFKA_BOOTSTRAP="127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"'
                in section["environment"]
            )


def test_supervisord_is_driven_through_its_xmlrpc_interface(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real supervisord with a stand-in program: start, status, kill (restarted), stop and
    start one program, a configuration change applied to the running daemon, shutdown."""
    from infra import supervise

    server = ("0", "--bind", "127.0.0.1")  # python -m http.server on a free port: runs until stopped
    one = (supervise.Program("web-1", server, module="http.server"),)
    two = (*one, supervise.Program("web-2", server, module="http.server"))
    monkeypatch.setattr(supervise, "check", lambda settings: None)
    monkeypatch.setattr(supervise, "programs", lambda settings: one)
    settings = Settings(data_dir=tmp_path / "d")
    assert not supervise.running(settings)
    assert [r["state"] for r in supervise.status(settings)] == ["STOPPED"]
    supervise.start(settings)
    try:
        _until(lambda: supervise.running(settings) and supervise.program_pid(settings, "web-1"))
        first = supervise.program_pid(settings, "web-1")
        assert first and [(r["name"], r["state"], r["pid"]) for r in supervise.status(settings)] == [
            ("web-1", "RUNNING", first)
        ]
        supervise.signal_program(settings, "web-1", "KILL")  # supervisord brings it back
        _until(lambda: supervise.program_pid(settings, "web-1") not in (None, first), timeout=30)
        supervise.stop_program(settings, "web-1")
        assert supervise.program_pid(settings, "web-1") is None
        supervise.stop_program(settings, "web-1")  # already stopped: not an error
        supervise.start_program(settings, "web-1")
        assert supervise.program_pid(settings, "web-1")
        with pytest.raises(InfraError, match="BAD_NAME"):
            supervise.start_program(settings, "nope")
        monkeypatch.setattr(supervise, "programs", lambda settings: two)
        supervise.start(settings)  # the running daemon re-reads its configuration
        _until(
            lambda: (
                {r["name"]: r["state"] for r in supervise.status(settings)}
                == dict.fromkeys(("web-1", "web-2"), "RUNNING")
            )
        )
    finally:
        assert supervise.stop(settings)
    assert not supervise.running(settings)
    assert not supervise.stop(settings)


def _until(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not true after {timeout:.0f} s")
