"""Bench only: the processes of one ``bench.e2e`` run, and what they cost in CPU.

The stack (:class:`infra.stack.manager.LocalStack`: Kafka + FerretDB, the runner's
:func:`bench.common.temporary_stack`), the batch stages run as ``python -m infra …`` (sample
data, ETL, training; their output goes to ``stage-<name>.log`` in the run's work dir) and the
programs supervisord runs (:mod:`infra.supervise`: streaming jobs, recommender, gateway).
Read from them: the gateway's ``/metrics`` text, the programs' pids and CPU seconds (from
``/proc``, each with its live descendants), their log tails. Used by ``bench.e2e`` (set-up
and tear-down) and by ``bench.e2e.load``, ``bench.e2e.phases`` and ``bench.e2e.naive``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo.database import Database

from bench.e2e.report import say
from infra import supervise
from infra.demo import gateway_url
from infra.mongo import client as mongo_client
from infra.settings import Settings, child_env
from infra.stack.manager import LocalStack

STAGE_TIMEOUT_S = 1800.0


def process_cpu_s() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds) of every process, from /proc: user + system time,
    its own and that of its children that have exited and been waited for (``cutime``,
    ``cstime``). Without the latter a tree's total drops when a child exits (a Spark
    Python worker ending with its task), and a phase's share came out negative."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(entry.name)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / tick)
    return out


def machine_cpu_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot (``/proc/stat``: user,
    nice, system, irq, softirq and steal; idle and I/O wait left out): the total that the
    cost table's rows must add up to."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / tick


def tree_cpu_s(root: int, table: dict[int, tuple[int, float]]) -> float:
    """CPU seconds of ``root`` and its live descendants (a stream job's Spark JVM and workers),
    those that have exited included (see :func:`process_cpu_s`)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


@dataclass
class System:
    """The stack, the batch stages and the supervised programs of one bench run."""

    stack: LocalStack
    workdir: Path
    supervised: bool = False

    @property
    def settings(self) -> Settings:
        return self.stack.settings

    @property
    def url(self) -> str:
        return gateway_url(self.settings)

    @property
    def db(self) -> Database[dict[str, Any]]:
        return mongo_client(self.settings)[self.settings.mongodb_db]

    def gateway_metrics(self) -> str:
        """The gateway's ``/metrics`` text ("" when it does not answer)."""
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    def cadenza(self, *args: str, timeout: float = STAGE_TIMEOUT_S) -> None:
        """``python -m infra args`` in its own process group (killed whole on error or Ctrl-C)."""
        log = self.workdir / f"stage-{args[0]}.log"
        env = {**child_env(self.settings, **supervise.configured(self.settings)), "COLUMNS": "200"}
        started = time.monotonic()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "infra", *args],
                env=env,
                cwd=self.workdir,  # no checkout .env
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except BaseException:
                kill_group(proc)
                raise
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"cadenza {' '.join(args)} failed ({code}):\n{tail}")
        say(f"cadenza {' '.join(args)}: {time.monotonic() - started:.0f} s")

    def start_programs(self) -> None:
        self.supervised = True
        with contextlib.chdir(self.workdir):  # supervisord's programs run in its directory
            supervise.start(self.settings)

    def stop_programs(self) -> None:
        """``supervisorctl shutdown``; if supervisord still runs (e.g. not answering yet), SIGTERM
        it by the pid in its pidfile (it then stops its programs' process groups)."""
        if not self.supervised:
            return
        with contextlib.suppress(Exception):
            supervise.stop(self.settings)
        pidfile = self.settings.run_path / "supervisord.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        for sig, wait_s in ((signal.SIGTERM, 90.0), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.5)

    def program_pids(self) -> dict[str, int]:
        """Pid of each supervised program and of each stack part (broker, FerretDB): the
        machine's whole CPU budget is theirs and the simulator's."""
        out = {c.name: pid for c in self.stack.components if (pid := c.proc.pid())}
        for program in supervise.programs(self.settings):
            if pid := supervise.program_pid(self.settings, program.name):
                out[program.name] = pid
        return out

    def program_cpu(self, pids: dict[str, int]) -> dict[str, float]:
        table = process_cpu_s()
        return {name: tree_cpu_s(pid, table) for name, pid in pids.items()}

    def worker_up(self) -> bool:
        url = f"http://127.0.0.1:{self.settings.faust_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for p in supervise.programs(self.settings):
            path = self.settings.logs_path / f"{p.name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            out.append(f"--- {p.name} ---\n" + "\n".join(text))
        return "\n".join(out)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM then SIGKILL the process group that ``proc`` leads (started with a new session)."""
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
