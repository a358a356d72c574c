"""The demo's long-running processes under supervisord: streaming jobs, recommender, gateway.

Local profile: both streaming queries in their own driver with Spark in-process, one
recommender worker and one gateway. Cluster profile: the streaming queries are submitted
to the Spark standalone master through the spark-submit recipe (``infra/deploy``), and
``faust_workers`` recommender workers and ``gateways`` gateways run side by side
(``recommender-1`` on ``faust_port``, ``recommender-2`` on ``faust_port + 1`` …).

Source: settings (the stack's addresses, the data dir). Destinations:
``<data dir>/run/supervisord.conf`` (generated), one log per process under
``<data dir>/logs/<program>.log``, and supervisord itself (daemon, pid in
``<data dir>/run/supervisord.pid``, control socket ``<data dir>/run/supervisor.sock``),
which restarts a program that dies. ``cadenza demo status`` and ``cadenza demo stop``
talk to it through ``supervisorctl``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from infra.errors import InfraError
from infra.settings import Settings, child_env
from infra.stack.process import niced


@dataclass(frozen=True)
class Program:
    name: str
    argv: tuple[str, ...]  # arguments of the cadenza command
    settings: tuple[tuple[str, object], ...] = ()  # per-program settings (ports)
    module: str = "infra"  # ``python -m <module> argv…``; the spark-submit recipe on a cluster
    nice: int = 0  # CPU niceness (``nice -n``), inherited by the program's children


#: The spark-submit recipe (``python -m infra.deploy.submit stream plays``).
SUBMIT_MODULE = "infra.deploy.submit"


def spark_job_module(settings: Settings) -> str:
    """How a cadenza command that runs Spark is started: ``python -m infra`` (Spark in the
    driver), or through spark-submit in the cluster profile."""
    return SUBMIT_MODULE if settings.clustered else "infra"


def programs(settings: Settings) -> tuple[Program, ...]:
    """What runs while the demo is up, in start order."""
    module = spark_job_module(settings)
    out = [
        Program("stream-assign", ("stream", "assign"), module=module, nice=settings.spark_nice),
        Program("stream-plays", ("stream", "plays"), module=module, nice=settings.spark_nice),
    ]
    out += _replicas(
        "recommender", ("recommender",), "faust_port", settings.faust_port, settings.faust_workers
    )
    out += _replicas("gateway", ("gateway",), "gateway_port", settings.gateway_port, settings.gateways)
    return tuple(out)


def _replicas(name: str, argv: tuple[str, ...], port_setting: str, port: int, count: int) -> list[Program]:
    if count == 1:
        return [Program(name, argv)]
    return [Program(f"{name}-{i + 1}", argv, ((port_setting, port + i),)) for i in range(count)]


def conf_path(settings: Settings) -> Path:
    return settings.run_path / "supervisord.conf"


def render(settings: Settings, python: str = sys.executable) -> str:
    """supervisord.conf for :func:`programs` (pure)."""
    run, logs = settings.run_path.resolve(), settings.logs_path.resolve()
    parts = [
        "[unix_http_server]",
        f"file={run / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"pidfile={run / 'supervisord.pid'}",
        f"logfile={logs / 'supervisord.log'}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"directory={Path.cwd().resolve()}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run / 'supervisor.sock'}",
        "",
    ]
    for priority, program in enumerate(programs(settings), start=1):
        env = child_env(settings, **{**configured(settings), "demo_signin": True, **dict(program.settings)})
        environment = ",".join(f'{k}="{_quote(v)}"' for k, v in sorted(env.items()) if _plain(k))
        parts += [
            f"[program:{program.name}]",
            f"command={shlex.join(niced([python, '-m', program.module, *program.argv], program.nice))}",
            f"environment={environment}",
            f"priority={priority * 10}",
            "autorestart=true",
            "startsecs=5",
            "startretries=5",
            "stopsignal=TERM",
            "stopwaitsecs=60",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={logs / (program.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
            "",
        ]
    return "\n".join(parts)


def configured(settings: Settings) -> dict[str, object]:
    """The settings given explicitly (environment, .env or arguments), so the programs
    run with this configuration whatever supervisord's own environment holds."""
    out: dict[str, object] = {}
    for name in sorted(settings.model_fields_set):
        value = getattr(settings, name)
        if value is None:
            continue
        out[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return out


def _plain(key: str) -> bool:
    return key.replace("_", "").isalnum()


def _quote(value: str) -> str:
    # supervisord's environment= values: double-quoted, no % expansion.
    return value.replace("%", "%%").replace('"', "'")


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise InfraError(
            f"{name} is not installed: run `make install` (it comes with the supervisor package)"
        )
    return found


def ctl(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``supervisorctl -c <conf> args…``."""
    return subprocess.run(
        [_tool("supervisorctl"), "-c", str(conf_path(settings)), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def running(settings: Settings) -> bool:
    return conf_path(settings).is_file() and ctl(settings, "pid").returncode == 0


def start(settings: Settings) -> None:
    """Write the config and start supervisord (or have a running one re-read it)."""
    settings.run_path.mkdir(parents=True, exist_ok=True)
    settings.logs_path.mkdir(parents=True, exist_ok=True)
    conf_path(settings).write_text(render(settings), encoding="utf-8")
    if running(settings):
        ctl(settings, "update")
        ctl(settings, "start", "all")
        return
    done = subprocess.run(
        [_tool("supervisord"), "-c", str(conf_path(settings))], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise InfraError(f"supervisord did not start: {done.stderr.strip() or done.stdout.strip()}")


def status(settings: Settings) -> list[dict[str, str]]:
    """One row per program: name, state (RUNNING, STARTING, BACKOFF, STOPPED…), details."""
    if not running(settings):
        return [
            {"name": p.name, "state": "STOPPED", "info": "supervisord is not running"}
            for p in programs(settings)
        ]
    rows = []
    for line in ctl(settings, "status").stdout.splitlines():
        fields = line.split(None, 2)
        if len(fields) >= 2:
            rows.append({"name": fields[0], "state": fields[1], "info": fields[2] if len(fields) > 2 else ""})
    return rows


def stop(settings: Settings) -> bool:
    """Stop every program and supervisord; False when it was not running."""
    if not running(settings):
        return False
    ctl(settings, "shutdown")
    deadline = time.monotonic() + 120
    while running(settings) and time.monotonic() < deadline:
        time.sleep(0.5)
    return True
