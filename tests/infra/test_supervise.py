"""supervisord.conf for the demo: every program, its log, and the configuration it runs with."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from infra.settings import Settings
from infra.supervise import PROGRAMS, configured, render


def test_the_config_runs_every_program_with_the_given_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, gateway_port=18123, token_secret=SecretStr("s%cret"), demo_signin=False
    )
    text = render(settings, python="/venv/bin/python")
    for program in PROGRAMS:
        assert f"[program:{program.name}]" in text
        assert f"command=/venv/bin/python -m infra {' '.join(program.argv)}" in text
        assert f"stdout_logfile={(tmp_path / 'logs' / program.name).resolve()}.log" in text
    assert 'CADENZA_GATEWAY_PORT="18123"' in text
    assert 'CADENZA_TOKEN_SECRET="s%%cret"' in text  # % escaped for supervisord
    assert 'CADENZA_DEMO_SIGNIN="True"' in text  # the demo always offers sign-in
    assert "autorestart=true" in text
    assert configured(settings)["gateway_port"] == 18123
