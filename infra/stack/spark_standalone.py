"""The cluster profile's Spark standalone cluster: one master and N workers on loopback.

Started from the installed pyspark's own distribution (``<pyspark>/bin/spark-class``,
SPARK_HOME = the pyspark package), on the system Java 17+. The master listens on
``spark_master_port`` with its web UI on ``spark_ui_port``; worker ``i`` offers
``spark_worker_cores`` cores and ``spark_worker_memory`` with its web UI on
``spark_ui_port + 1 + i``. Everything they write (configuration, executors' work dirs
with their stdout/stderr and unpacked archives, scratch space) lives under
``<data_dir>/spark-cluster``; their logs are ``<data_dir>/logs/spark-*.log``.

Everything listens on loopback: ``--host 127.0.0.1`` for the RPC endpoints, and the web
UIs, which Spark binds to ``SPARK_LOCAL_IP`` (all interfaces without it), get
``SPARK_LOCAL_IP=127.0.0.1`` (:func:`daemon_env`). Logs are bounded: each daemon's log4j2
rolls its log at ``log_max_mb`` (``log_backups`` kept; :func:`daemon_log4j2`), workers
roll their executors' stdout/stderr the same way and delete finished applications' files
(:func:`worker_properties`).

Readiness comes from the master's JSON status page (``http://127.0.0.1:<ui>/json/``):
the master answers when it serves it, a worker when it is listed there ALIVE.
Applications reach the cluster through spark-submit (``infra/deploy/submit.py``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from infra.settings import Settings
from infra.stack.process import ManagedProcess, ensure_port_free, niced, wait_until
from infra.stack.tools import java_bin

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
#: JVM heap of the master and worker daemons themselves (executors have their own).
DAEMON_MEMORY = "512m"

#: Master settings: no REST submission server (its port 6066 is the Faust worker's), and a
#: taken port fails the start instead of silently moving to the next one.
MASTER_PROPERTIES = {
    "spark.master.rest.enabled": "false",
    "spark.port.maxRetries": "0",
}
#: Worker settings: remove finished applications' directories (each executor unpacks the
#: ~0.7 GB Python environment archive there) an hour after they end.
WORKER_PROPERTIES = {
    "spark.port.maxRetries": "0",
    "spark.worker.cleanup.enabled": "true",
    "spark.worker.cleanup.interval": "600",
    "spark.worker.cleanup.appDataTtl": "3600",
}


def worker_properties(settings: Settings) -> dict[str, str]:
    """:data:`WORKER_PROPERTIES` plus size-based rolling of the executors' stdout/stderr files
    (a streaming query's executors run for as long as the demo)."""
    return {
        **WORKER_PROPERTIES,
        "spark.executor.logs.rolling.strategy": "size",
        "spark.executor.logs.rolling.maxSize": str(settings.log_max_bytes),
        "spark.executor.logs.rolling.maxRetainedFiles": str(settings.log_backups),
    }


def daemon_log4j2(log_file: Path, max_mb: int, backups: int) -> str:
    """log4j2 configuration of a master or worker: everything to ``log_file``, rolled over at
    ``max_mb`` MB, ``backups`` old files kept (``<log>.1`` the newest)."""
    return f"""\
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = {max_mb}MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = {backups}
appender.file.strategy.fileIndex = min
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
"""


def daemon_java_opts(log4j2_file: Path) -> str:
    """``SPARK_DAEMON_JAVA_OPTS`` (read for the master and worker only, not their executors)."""
    return f"-Dlog4j2.configurationFile=file:{log4j2_file}"


def spark_home() -> Path:
    """The installed pyspark package, which is a complete Spark distribution."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def properties_text(props: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in sorted(props.items()))


def master_url(settings: Settings) -> str:
    return f"spark://{HOST}:{settings.spark_master_port}"


def worker_ui_port(settings: Settings, index: int) -> int:
    return settings.spark_ui_port + 1 + index


def cluster_home(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "spark-cluster"


def master_argv(settings: Settings, home: Path, conf_file: Path) -> list[str]:
    """Command line of the master (``spark-class … Master``)."""
    return [
        str(home / "bin" / "spark-class"), MASTER_CLASS,
        "--host", HOST, "--port", str(settings.spark_master_port),
        "--webui-port", str(settings.spark_ui_port),
        "--properties-file", str(conf_file),
    ]  # fmt: skip


def worker_argv(settings: Settings, index: int, home: Path, work_dir: Path, conf_file: Path) -> list[str]:
    """Command line of worker ``index`` (``spark-class … Worker spark://…``)."""
    return [
        str(home / "bin" / "spark-class"), WORKER_CLASS, master_url(settings),
        "--host", HOST, "--cores", str(settings.spark_worker_cores),
        "--memory", settings.spark_worker_memory,
        "--webui-port", str(worker_ui_port(settings, index)),
        "--work-dir", str(work_dir),
        "--properties-file", str(conf_file),
    ]  # fmt: skip


def daemon_env(home: Path, log_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of a master or worker (workers pass it on to their executors).

    ``SPARK_LOCAL_IP`` is where Spark binds the web UIs (every interface without it): loopback.

    PYTHONPATH is emptied so executors import Cadenza only from the shipped zip, never
    from a checkout that happened to be on the caller's path.
    """
    return {
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOG_DIR": str(log_dir),
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_NO_DAEMONIZE": "1",
        "PYTHONPATH": "",
        **extra,
    }


# --- the master's JSON status page -----------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as the master lists it."""

    id: str
    host: str
    port: int
    webui_port: int | None
    state: str  # ALIVE, DEAD, DECOMMISSIONED, UNKNOWN
    cores: int
    cores_used: int
    memory_mb: int
    memory_used_mb: int

    @property
    def alive(self) -> bool:
        return self.state == "ALIVE"


@dataclass(frozen=True)
class AppInfo:
    """One application (a spark-submit'ed driver) as the master lists it."""

    id: str
    name: str
    state: str  # RUNNING, WAITING, FINISHED, KILLED, FAILED
    cores: int
    memory_per_executor_mb: int
    duration_s: float
    active: bool


def _webui_port(address: object) -> int | None:
    try:
        return urlparse(str(address)).port
    except ValueError:
        return None


def cluster_workers(master_json: dict[str, Any]) -> list[WorkerInfo]:
    """The workers in the master's ``/json/`` document (dead ones included), by id."""
    workers = [
        WorkerInfo(
            id=str(w.get("id", "")),
            host=str(w.get("host", "")),
            port=int(w.get("port", 0)),
            webui_port=_webui_port(w.get("webuiaddress", "")),
            state=str(w.get("state", "UNKNOWN")),
            cores=int(w.get("cores", 0)),
            cores_used=int(w.get("coresused", 0)),
            memory_mb=int(w.get("memory", 0)),
            memory_used_mb=int(w.get("memoryused", 0)),
        )
        for w in master_json.get("workers", [])
    ]
    return sorted(workers, key=lambda w: w.id)


def cluster_apps(master_json: dict[str, Any]) -> list[AppInfo]:
    """Running (or waiting) applications first, then completed ones, each newest first."""
    apps = []
    for key, active in (("activeapps", True), ("completedapps", False)):
        rows = sorted(master_json.get(key, []), key=lambda a: -int(a.get("starttime", 0)))
        apps += [
            AppInfo(
                id=str(a.get("id", "")),
                name=str(a.get("name", "")),
                state=str(a.get("state", "UNKNOWN")),
                cores=int(a.get("cores", 0)),
                memory_per_executor_mb=int(a.get("memoryperexecutor", a.get("memoryperslave", 0))),
                duration_s=int(a.get("duration", 0)) / 1000.0,
                active=active,
            )
            for a in rows
        ]
    return apps


def worker_registered(master_json: dict[str, Any] | None, webui_port: int) -> bool:
    """True if the master lists an ALIVE worker whose web UI is on ``webui_port``."""
    if not master_json:
        return False
    return any(w.alive and w.webui_port == webui_port for w in cluster_workers(master_json))


def master_json(settings: Settings, timeout: float = 2.0) -> dict[str, Any] | None:
    """The master's ``/json/`` status document, or None if it does not answer."""
    url = f"http://{HOST}:{settings.spark_ui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --- components -------------------------------------------------------------------------


class SparkMaster:
    """The standalone master: start, probe (its JSON page) and stop."""

    name = "spark-master"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = cluster_home(settings)
        self.conf_file = self.home / "master.conf"
        self.log4j2_file = self.home / "master-log4j2.properties"
        # The properties file's path is in the command line and unique to this data dir.
        self.proc = _daemon_process(settings, self.name, self.conf_file)

    @property
    def address(self) -> str:
        return master_url(self.settings)

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.settings.spark_ui_port}"

    def status(self) -> dict[str, Any] | None:
        return master_json(self.settings)

    def running(self) -> bool:
        return self.proc.pid() is not None

    def answers(self) -> bool:
        doc = self.status()
        return doc is not None and doc.get("status", "ALIVE") == "ALIVE"

    def start(self, timeout: float = 60.0) -> None:
        java_bin()
        ensure_port_free(HOST, self.settings.spark_master_port, "CADENZA_SPARK_MASTER_PORT")
        ensure_port_free(HOST, self.settings.spark_ui_port, "CADENZA_SPARK_UI_PORT")
        self.home.mkdir(parents=True, exist_ok=True)
        self.conf_file.write_text(properties_text(MASTER_PROPERTIES))
        _write_log4j2(self.settings, self.log4j2_file, self.proc)
        home = spark_home()
        self.proc.start(
            master_argv(self.settings, home, self.conf_file),
            env=daemon_env(
                home,
                self.settings.logs_path.resolve(),
                SPARK_DAEMON_JAVA_OPTS=daemon_java_opts(self.log4j2_file),
            ),
            cwd=self.home,
        )
        wait_until(self.answers, timeout, "Spark master", self.proc)

    def stop(self) -> bool:
        return self.proc.stop(timeout=20.0)

    def kill(self) -> None:
        self.proc.kill()


class SparkWorker:
    """Standalone worker ``index``: start, probe (registered ALIVE at the master), stop, kill.

    ``kill()`` SIGKILLs the worker with its executors and their Python workers (one
    process group), as a lost machine would; ``start()`` brings it back as a new worker.
    """

    def __init__(self, settings: Settings, index: int) -> None:
        self.settings = settings
        self.index = index
        self.name = f"spark-worker-{index}"
        self.home = cluster_home(settings)
        self.work_dir = self.home / f"worker-{index}"
        self.local_dir = self.home / f"worker-{index}-local"
        self.conf_file = self.home / f"worker-{index}.conf"
        self.log4j2_file = self.home / f"worker-{index}-log4j2.properties"
        self.proc = _daemon_process(settings, self.name, self.conf_file)

    @property
    def ui_port(self) -> int:
        return worker_ui_port(self.settings, self.index)

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.ui_port}"

    def running(self) -> bool:
        return self.proc.pid() is not None

    def answers(self) -> bool:
        return worker_registered(master_json(self.settings), self.ui_port)

    def start(self, timeout: float = 60.0) -> None:
        java_bin()
        ensure_port_free(HOST, self.ui_port, "CADENZA_SPARK_UI_PORT")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.conf_file.write_text(properties_text(worker_properties(self.settings)))
        _write_log4j2(self.settings, self.log4j2_file, self.proc)
        home = spark_home()
        self.proc.start(
            # Executors (and their Python workers) are the worker's children: they inherit this.
            niced(
                worker_argv(self.settings, self.index, home, self.work_dir, self.conf_file),
                self.settings.spark_nice,
            ),
            env=daemon_env(
                home,
                self.settings.logs_path.resolve(),
                SPARK_WORKER_DIR=str(self.work_dir),
                SPARK_LOCAL_DIRS=str(self.local_dir),
                SPARK_DAEMON_JAVA_OPTS=daemon_java_opts(self.log4j2_file),
            ),
            cwd=self.work_dir,
        )
        wait_until(self.answers, timeout, f"Spark worker {self.index}", self.proc)

    def stop(self) -> bool:
        return self.proc.stop(timeout=20.0)

    def kill(self) -> None:
        self.proc.kill()


def _daemon_process(settings: Settings, name: str, conf_file: Path) -> ManagedProcess:
    """A daemon that writes (and rolls) ``<name>.log`` itself; its raw output goes to ``<name>.out``."""
    return ManagedProcess(
        name,
        settings.run_path.resolve(),
        settings.logs_path.resolve(),
        marker=str(conf_file),
        self_logging=True,
        log_max_bytes=settings.log_max_bytes,
        log_backups=settings.log_backups,
    )


def _write_log4j2(settings: Settings, path: Path, proc: ManagedProcess) -> None:
    path.write_text(daemon_log4j2(proc.log_file, settings.log_max_mb, settings.log_backups))


def spark_components(settings: Settings) -> list[SparkMaster | SparkWorker]:
    """The master, then ``spark_workers`` workers (start in this order, stop in reverse)."""
    return [SparkMaster(settings), *(SparkWorker(settings, i) for i in range(settings.spark_workers))]
