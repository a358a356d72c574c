"""Bench only: the gateway process that ``bench.gateway`` (and ``bench.catalogue``) measures, and
what is read from it.

:class:`GatewayProcess` runs ``python -m infra gateway --port P`` on loopback, configured by
environment (:func:`infra.settings.child_env`: the run's stack, token secret, websocket queue
size, no heartbeats, and any other setting the caller gives), its output in ``gateway.log``
in the run's temporary dir. Read from it: ``/readyz``, ``/metrics`` (parsed by
:func:`infra.prometheus.parse_metrics`), its RSS, threads and open fds (``/proc/PID/status``
and ``/proc/PID/fd``), its CPU seconds (``/proc/PID/stat``), its log tail, and any GET
through :class:`RawHttp`, a minimal keep-alive client. Used by
``bench.gateway`` (start, stop, log tail on error), ``bench.gateway.phases`` and
``bench.gateway.audio`` (the readings, whose figures ``bench.gateway.analysis`` computes),
and ``bench.catalogue``.
"""

from __future__ import annotations

import argparse
import asyncio
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
from infra.stack.process import free_port, niced

TOKEN_TTL_S = 3600
HEARTBEAT_S = 3600.0  # no gateway pings (and no "silent socket" closes) during the bench
READY_TIMEOUT_S = 90.0


class GatewayProcess:
    """``python -m infra gateway --port P`` on loopback, configured by environment."""

    def __init__(
        self,
        settings: Settings,
        secret: str,
        ws_queue_size: int,
        workdir: Path,
        *,
        niceness: int = 0,
        **more: object,
    ) -> None:
        """``niceness``: its CPU priority (``nice -n``; below 0 needs root); ``more``: other
        settings of the gateway (``gateway_catalogue_memory=False`` …)."""
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
            **more,
        )
        with open(self.log, "ab") as log:
            # cwd: the temp dir, so no ``.env`` of the checkout is read.
            self.proc = subprocess.Popen(
                niced([sys.executable, "-m", "infra", "gateway", "--port", str(self.port)], niceness),
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


def clients_option(parser: argparse.ArgumentParser, flag: str) -> None:
    """The option choosing the HTTP clients a bench measures with (``bench.gateway``, ``bench.catalogue``)."""
    parser.add_argument(
        flag,
        nargs="+",
        choices=("raw", "httpx"),
        default=["raw", "httpx"],
        help="raw: minimal HTTP/1.1 keep-alive client (gateway-bound); httpx: AsyncClient (client-bound)",
    )


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client of the gateway's GETs (one connection, one request
    at a time): a few µs of CPU per request, so the gateway, not the client, is what
    saturates (httpx needs a core for ~250 req/s)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, header: str = "") -> tuple[int, bytes]:
        """``(status, body)`` of ``GET path`` with the token and ``header`` (one ``Name: value``)."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        extra = f"{header}\r\n" if header else ""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\n{extra}\r\n"
        )
        self.writer.write(request.encode("ascii"))
        try:
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            body = await self.reader.readexactly(int(fields["content-length"]))
        except (OSError, EOFError, KeyError, ValueError, asyncio.LimitOverrunError):
            self.close()
            raise
        if fields.get("connection", "").lower() == "close":
            self.close()
        return int(head[0].split()[1]), body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
