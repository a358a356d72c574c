"""Detached service processes tracked by pid files under ``<data_dir>/run``.

Used by the stack components (Kafka, FerretDB, Spark daemons): start a command in its
own session with output to a log file, find it again after the CLI exits, stop it (TERM,
then KILL) and check that a pid file still names the process it was written for (pid
reuse is detected by comparing the command line).

Logs stay bounded: a process whose own logging rotates its log (Kafka's and Spark's
log4j) writes ``<name>.log`` itself and its raw output goes to ``<name>.out``; either
file is rotated at start (:func:`rotate`) when it has grown past ``log_max_bytes``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.errors import ConfigError, StackError

# How often, and how far apart, a pid file's process is looked at before it is called stale.
STALE_CHECKS = 4
STALE_CHECK_INTERVAL = 0.05


def niced(argv: Sequence[str], niceness: int) -> list[str]:
    """``argv`` run at a lower CPU priority (``nice -n``; children inherit it); as is for 0."""
    return ["nice", "-n", str(niceness), *argv] if niceness else list(argv)


@dataclass(frozen=True)
class ManagedProcess:
    """A named background process with a pid file and a log file."""

    name: str
    run_dir: Path
    log_dir: Path
    marker: str  # a string that must appear in the process command line
    self_logging: bool = False  # the process writes (and rotates) log_file; its output goes to out_file
    log_max_bytes: int = 20 * 1024 * 1024  # rotate at start beyond this size …
    log_backups: int = 2  # … keeping this many old files

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def out_file(self) -> Path:
        """Where the process's stdout and stderr go: its log, or ``<name>.out`` if it logs itself."""
        return self.log_dir / f"{self.name}.out" if self.self_logging else self.log_file

    def pid(self) -> int | None:
        """The live pid of this process, or None (stale pid files are removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        # A process in the middle of an exec (spark-class's bash becoming java) shows an
        # empty command line for a moment: look again before calling the pid file stale.
        for _ in range(STALE_CHECKS):
            cmdline = _cmdline(pid)
            if cmdline is None:
                break
            if self.marker in cmdline:
                return pid
            time.sleep(STALE_CHECK_INTERVAL)
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for path in {self.log_file, self.out_file}:
            rotate(path, self.log_max_bytes, self.log_backups)
        log = open(self.out_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        self.pid_file.write_text(str(proc.pid))
        # Between fork and exec the child's command line is still ours: wait for exec.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and proc.poll() is None:
            if _cmdline_contains(proc.pid, self.marker):
                break
            time.sleep(0.01)
        return proc.pid

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the process (TERM, then KILL after ``timeout``); True if one was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        pid = self.pid()
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
            self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log (and of the raw output, where a JVM that dies at start
        says why, for a process that logs itself)."""
        tails = []
        for path in dict.fromkeys([self.out_file, self.log_file]):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                continue
            if tail:
                head = [] if path == self.log_file else [f"({path.name}:)"]
                tails.append("\n".join(head + tail))
        return "\n".join(tails)


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """If ``path`` is larger than ``max_bytes``: ``path.N-1`` -> ``path.N`` … ``path`` -> ``path.1``,
    dropping ``path.<backups>``; True if it rotated. (What supervisord and log4j do while a
    process runs, for logs written by processes that cannot rotate their own.)"""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{i + 1}"))
    if backups >= 1:
        path.replace(path.with_name(f"{path.name}.1"))
    else:
        path.unlink()
    return True


def _cmdline(pid: int) -> str | None:
    """The command line of a live process (words joined by spaces), None if gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if ") Z" in stat:  # zombie
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _cmdline_contains(pid: int, marker: str) -> bool:
    cmdline = _cmdline(pid)
    return cmdline is not None and marker in cmdline


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return ") Z" not in stat


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_port_free(host: str, port: int, setting: str) -> None:
    """Raise a :class:`ConfigError` naming the setting to change if the port is taken."""
    if port_open(host, port):
        raise ConfigError(
            f"port {port} on {host} is already in use by another program; stop it or "
            f"choose another port with {setting}=<port>"
        )


def free_port() -> int:
    """An ephemeral port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    proc: ManagedProcess | None = None,
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until it is true; raise a :class:`StackError` with the log tail if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.pid() is None:
            raise StackError(
                f"{what}: the process exited during start-up; last log lines "
                f"({proc.log_file}):\n{proc.log_tail()}"
            )
        time.sleep(interval)
    tail = f"; last log lines ({proc.log_file}):\n{proc.log_tail()}" if proc else ""
    raise StackError(f"{what}: not ready after {timeout:.0f} s{tail}")
