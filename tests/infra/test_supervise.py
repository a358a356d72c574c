"""supervisord.conf for the demo: every program, its log, and the configuration it runs with."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from infra.settings import Settings
from infra.stack.process import niced
from infra.supervise import SUBMIT_MODULE, configured, programs, render


def test_the_config_runs_every_program_with_the_given_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, gateway_port=18123, token_secret=SecretStr("s%cret"), demo_signin=False
    )
    text = render(settings, python="/venv/bin/python")
    for program in programs(settings):
        assert f"[program:{program.name}]" in text
        nice = "nice -n 10 " if program.name.startswith("stream-") else ""
        assert f"command={nice}/venv/bin/python -m infra {' '.join(program.argv)}" in text
        assert f"stdout_logfile={(tmp_path / 'logs' / program.name).resolve()}.log" in text
    assert 'CADENZA_GATEWAY_PORT="18123"' in text
    assert 'CADENZA_TOKEN_SECRET="s%%cret"' in text  # % escaped for supervisord
    assert 'CADENZA_DEMO_SIGNIN="True"' in text  # the demo always offers sign-in
    assert "autorestart=true" in text
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
