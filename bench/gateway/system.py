"""Bench only: the gateway process that ``bench.gateway`` measures, and what is read from it.

:class:`GatewayProcess` runs ``python -m infra gateway --port P`` on loopback, configured by
environment (:func:`infra.settings.child_env`: the run's stack, token secret, websocket queue
size, no heartbeats), its output in ``gateway.log`` in the run's temporary dir. Read from it:
``/readyz``, ``/metrics`` (parsed by :func:`infra.prometheus.parse_metrics`), its RSS,
threads and open fds (``/proc/PID/status`` and ``/proc/PID/fd``), its CPU seconds
(``/proc/PID/stat``) and its log tail. Used by ``bench.gateway`` (start, stop, log tail on
error), ``bench.gateway.phases`` and ``bench.gateway.audio`` (the readings, whose
figures ``bench.gateway.analysis`` computes).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import cpu_seconds
from infra.prometheus import parse_metrics
from infra.settings import Settings, child_env
from infra.stack.process import free_port

TOKEN_TTL_S = 3600
HEARTBEAT_S = 3600.0  # no gateway pings (and no "silent socket" closes) during the bench
READY_TIMEOUT_S = 90.0


class GatewayProcess:
    """``python -m infra gateway --port P`` on loopback, configured by environment."""

    def __init__(self, settings: Settings, secret: str, ws_queue_size: int, workdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "gateway.log"
        env = child_env(
            settings,
            gateway_host="127.0.0.1",
            gateway_port=self.port,
            token_secret=secret,
            log_level="WARNING",
            ws_queue_size=ws_queue_size,
            gateway_heartbeat_s=HEARTBEAT_S,
        )
        with open(self.log, "ab") as log:
            # cwd: the temp dir, so no ``.env`` of the checkout is read.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infra", "gateway", "--port", str(self.port)],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.base, timeout=10.0, trust_env=False)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/readyz").status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"the gateway was not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (KiB) and Threads from /proc/PID/status; open fds."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        return out

    def cpu_s(self) -> float:
        return cpu_seconds(self.proc.pid)

    def metrics(self) -> dict[str, float]:
        response = self.http.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
