"""ManagedProcess's pid files: a process found again across execs, a reused pid called stale."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from infra.stack.process import ManagedProcess

MARKER = "cadenza-test-marker-7f3a"

# Re-executes itself (through /bin/sh, as spark-class's bash becomes java) n times, then
# touches the done file and sleeps. Every command line in the chain carries the marker.
CHAIN = """
import os, sys, time
n, marker, done, code = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if n:
    os.execv("/bin/sh", ["/bin/sh", "-c", 'exec "$0" "$@"', sys.executable, "-S", "-c", code,
                         str(n - 1), marker, done, code])
open(done, "w").close()
time.sleep(30)
"""


def test_a_process_is_found_while_it_execs_into_another_program(tmp_path: Path) -> None:
    # Mid-exec, /proc/<pid>/cmdline is empty for a moment; a single look at that moment
    # made the Spark master's start-up report "the process exited" (CI, stop 16).
    proc = ManagedProcess("chain", tmp_path / "run", tmp_path / "logs", marker=MARKER)
    done = tmp_path / "done"
    pid = proc.start([sys.executable, "-S", "-c", CHAIN, "40", MARKER, str(done), CHAIN])
    try:
        lost = looks = 0
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            looks += 1
            if proc.pid() != pid:
                lost += 1
        assert done.exists(), "the exec chain did not finish in 60 s"
        assert looks > 40
        assert lost == 0, f"{lost} of {looks} looks lost the process during its execs"
        assert proc.pid() == pid
    finally:
        proc.stop(timeout=5)
    assert proc.pid() is None


def test_a_pid_file_naming_another_program_is_stale_and_removed(tmp_path: Path) -> None:
    proc = ManagedProcess("other", tmp_path / "run", tmp_path / "logs", marker=MARKER)
    other = subprocess.Popen(["sleep", "30"])
    try:
        proc.run_dir.mkdir(parents=True)
        proc.pid_file.write_text(str(other.pid))
        assert proc.pid() is None
        assert not proc.pid_file.exists()
        assert other.poll() is None, "a stale pid file must never lead to signalling its pid"
    finally:
        other.kill()
        other.wait()


def test_a_pid_file_of_an_exited_process_is_stale(tmp_path: Path) -> None:
    proc = ManagedProcess("gone", tmp_path / "run", tmp_path / "logs", marker=MARKER)
    pid = proc.start([sys.executable, "-S", "-c", "pass", MARKER])
    deadline = time.monotonic() + 10
    while proc.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    assert pid > 0
