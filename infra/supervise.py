"""The demo's long-running processes under supervisord: streaming jobs, recommender, gateway.

Local profile: both streaming queries in their own driver with Spark in-process, one
recommender worker and one gateway. Cluster profile: the streaming queries are submitted
to the Spark standalone master through the spark-submit recipe (``infra/deploy``), and
``faust_workers`` recommender workers and ``gateways`` gateways run side by side
(``recommender-1`` on ``faust_port``, ``recommender-2`` on ``faust_port + 1`` …).

Source: settings (the stack's addresses, the data dir, the token secret). Destinations:
``<data dir>/run/supervisord.conf`` (generated, mode 0600: it holds the programs'
environment, secrets included), one log per process under ``<data dir>/logs/<program>.log``
(rotated at ``log_max_mb``, ``log_backups`` kept; created owner-only, umask 077), and
supervisord itself (daemon, pid in ``<data dir>/run/supervisord.pid``, control socket
``<data dir>/run/supervisor.sock``), which restarts a program that dies. ``cadenza demo
status`` and ``cadenza demo stop`` talk to it through ``supervisorctl``.

The gateways offer demo sign-in only when they listen on loopback. Without a configured
``CADENZA_TOKEN_SECRET`` the programs sign with ``<data dir>/token-secret``, a random
secret created here once per data dir (mode 0600), which they read themselves
(:func:`infra.settings.get_settings`): it is never written into the configuration.
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

from infra.errors import ConfigError, InfraError
from infra.settings import (
    Settings,
    child_env,
    ensure_token_secret,
    gateway_refusal,
    is_loopback,
    write_private,
)
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


def demo_signin(settings: Settings) -> bool:
    """The demo's gateways serve sign-in (anyone as anyone) only when they listen on loopback."""
    return is_loopback(settings.gateway_host)


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
        f"logfile_maxbytes={settings.log_max_mb}MB",
        f"logfile_backups={settings.log_backups}",
        "umask=077",  # logs (gateway logs can hold request URLs) and files only for the owner
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
        given = {**configured(settings), "demo_signin": demo_signin(settings), **dict(program.settings)}
        env = child_env(settings, **given)
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
            f"stdout_logfile_maxbytes={settings.log_max_mb}MB",
            f"stdout_logfile_backups={settings.log_backups}",
            "",
        ]
    return "\n".join(parts)


def configured(settings: Settings) -> dict[str, object]:
    """The settings given explicitly (environment, .env or arguments), so the programs
    run with this configuration whatever supervisord's own environment holds."""
    out: dict[str, object] = {}
    for name in sorted(settings.model_fields_set):
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value() or None  # empty: none (the programs read the file)
        if value is None:
            continue
        out[name] = value
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


def token_secret(settings: Settings) -> str:
    """The secret the demo's gateways sign with: ``CADENZA_TOKEN_SECRET`` if set, else the
    data dir's ``token-secret`` file, created (random, mode 0600) on first use."""
    return settings.token_secret.get_secret_value() or ensure_token_secret(settings.token_secret_path)


def write_conf(settings: Settings, python: str = sys.executable) -> Path:
    """Write :func:`render`'s configuration to :func:`conf_path`, readable by the owner only
    (it holds every program's environment: the token secret when one is configured)."""
    settings.run_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.logs_path.mkdir(parents=True, exist_ok=True)
    return write_private(conf_path(settings), render(settings, python))


def check(settings: Settings) -> None:
    """A :class:`ConfigError` saying what to set if the demo's gateways would refuse to start."""
    refusal = gateway_refusal(token_secret(settings), settings.gateway_host, demo_signin(settings))
    if refusal is not None:
        raise ConfigError(f"the demo's gateways would not start: {refusal}")


def start(settings: Settings) -> None:
    """Check that the gateways may start, write the config (mode 0600) and start supervisord
    (or have a running one re-read it)."""
    check(settings)
    write_conf(settings)
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
