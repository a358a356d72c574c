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
status``, ``cadenza demo stop``, the tests and the benches talk to it through supervisor's
XML-RPC interface on that socket (:func:`rpc`: typed process records, faults as codes), never
by reading ``supervisorctl``'s text. The configuration is written with :mod:`configparser`.

Why the local stack (``cadenza stack up``: Kafka, FerretDB, Spark daemons) is not under
supervisord too: see the README's "Two supervisors" — in short, tests and benches start,
kill and restart single brokers and Spark daemons on their own ports and data dirs, and
wait for each to be ready, which :mod:`infra.stack` does with pid files; supervisord is
for the demo's programs, which must come back by themselves when they die.

The gateways offer demo sign-in only when they listen on loopback. Without a configured
``CADENZA_TOKEN_SECRET`` the programs sign with ``<data dir>/token-secret``, a random
secret created here once per data dir (mode 0600), which they read themselves
(:func:`infra.settings.get_settings`): it is never written into the configuration.
"""

from __future__ import annotations

import configparser
import io
import shlex
import shutil
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from supervisor.xmlrpc import Faults, SupervisorTransport

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


def socket_path(settings: Settings) -> Path:
    return settings.run_path.resolve() / "supervisor.sock"


def render(settings: Settings, python: str = sys.executable) -> str:
    """supervisord.conf for :func:`programs` (pure)."""
    run, logs = settings.run_path.resolve(), settings.logs_path.resolve()
    conf = configparser.RawConfigParser(interpolation=None)
    conf.optionxform = str  # type: ignore[assignment,method-assign]  # keep keys as written
    conf["unix_http_server"] = {"file": str(socket_path(settings)), "chmod": "0700"}
    conf["supervisord"] = {
        "pidfile": str(run / "supervisord.pid"),
        "logfile": str(logs / "supervisord.log"),
        "logfile_maxbytes": f"{settings.log_max_mb}MB",
        "logfile_backups": str(settings.log_backups),
        "umask": "077",  # logs (gateway logs can hold request URLs) and files only for the owner
        "directory": str(Path.cwd().resolve()),
    }
    conf["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    conf["supervisorctl"] = {"serverurl": f"unix://{socket_path(settings)}"}
    for priority, program in enumerate(programs(settings), start=1):
        given = {**configured(settings), "demo_signin": demo_signin(settings), **dict(program.settings)}
        env = child_env(settings, **given)
        conf[f"program:{program.name}"] = {
            "command": shlex.join(niced([python, "-m", program.module, *program.argv], program.nice)),
            "environment": ",".join(f'{k}="{_quote(v)}"' for k, v in sorted(env.items()) if _plain(k)),
            "priority": str(priority * 10),
            "autorestart": "true",
            "startsecs": "5",
            "startretries": "5",
            "stopsignal": "TERM",
            "stopwaitsecs": "60",
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": str(logs / (program.name + ".log")),
            "stdout_logfile_maxbytes": f"{settings.log_max_mb}MB",
            "stdout_logfile_backups": str(settings.log_backups),
        }
    out = io.StringIO()
    conf.write(out)
    return out.getvalue()


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


def rpc(settings: Settings) -> Any:
    """supervisord's XML-RPC interface (``supervisor.*`` methods) on the demo's control socket."""
    transport = SupervisorTransport(None, None, f"unix://{socket_path(settings)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport, allow_none=True)


def _call(settings: Settings, method: str, *args: Any, ok: tuple[int, ...] = ()) -> Any:
    """``supervisor.<method>(*args)``; a fault whose code is in ``ok`` (already started, not
    running) is not an error and returns None; any other becomes an :class:`InfraError`."""
    try:
        return getattr(rpc(settings).supervisor, method)(*args)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode in ok:
            return None
        raise InfraError(f"supervisord refused {method}{args}: {fault.faultString}") from None
    except OSError as err:
        raise InfraError(
            f"supervisord is not answering on {socket_path(settings)} ({err}): is the demo running? "
            "(`cadenza demo status`)"
        ) from None


def running(settings: Settings) -> bool:
    """True when the demo's supervisord answers on its socket."""
    if not socket_path(settings).exists():
        return False
    try:
        return rpc(settings).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def start_program(settings: Settings, name: str) -> None:
    """Start one program and wait until it is RUNNING (its ``startsecs`` passed)."""
    _call(settings, "startProcess", name, True, ok=(Faults.ALREADY_STARTED,))


def stop_program(settings: Settings, name: str) -> None:
    """Stop one program (TERM, then KILL after ``stopwaitsecs``); supervisord does not restart
    it until :func:`start_program`."""
    _call(settings, "stopProcess", name, True, ok=(Faults.NOT_RUNNING,))


def restart_program(settings: Settings, name: str) -> None:
    stop_program(settings, name)
    start_program(settings, name)


def signal_program(settings: Settings, name: str, sig: str) -> None:
    """Send ``sig`` (``"KILL"``, ``"TERM"``, …) to one program; supervisord restarts it when it dies."""
    _call(settings, "signalProcess", name, sig)


def program_pid(settings: Settings, name: str) -> int | None:
    """The running program's pid, None when it is not running."""
    info = _call(settings, "getProcessInfo", name)
    return int(info["pid"]) or None if info["statename"] == "RUNNING" else None


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
    (or have a running one re-read it: programs added, removed or changed are applied)."""
    check(settings)
    write_conf(settings)
    if running(settings):
        added, changed, removed = _call(settings, "reloadConfig")[0]
        for name in (*changed, *removed):
            _call(settings, "stopProcessGroup", name, True)
            _call(settings, "removeProcessGroup", name)
        for name in (*changed, *added):
            _call(settings, "addProcessGroup", name, ok=(Faults.ALREADY_ADDED,))
        _call(settings, "startAllProcesses", True)
        return
    done = subprocess.run(
        [_tool("supervisord"), "-c", str(conf_path(settings))], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise InfraError(f"supervisord did not start: {done.stderr.strip() or done.stdout.strip()}")


def status(settings: Settings) -> list[dict[str, Any]]:
    """One row per program: name, state (RUNNING, STARTING, BACKOFF, STOPPED…), pid (0 when
    not running) and supervisord's description (``pid 123, uptime 0:01:02``, the last exit)."""
    if not running(settings):
        return [
            {"name": p.name, "state": "STOPPED", "pid": 0, "info": "supervisord is not running"}
            for p in programs(settings)
        ]
    return [
        {"name": p["name"], "state": p["statename"], "pid": int(p["pid"]), "info": p["description"]}
        for p in _call(settings, "getAllProcessInfo")
    ]


def stop(settings: Settings) -> bool:
    """Stop every program and supervisord; False when it was not running."""
    if not running(settings):
        return False
    _call(settings, "shutdown", ok=(Faults.SHUTDOWN_STATE,))
    deadline = time.monotonic() + 120
    while running(settings) and time.monotonic() < deadline:
        time.sleep(0.5)
    return True
