"""Bench only: phase 3 of ``bench.gateway``, random 64 KiB ``Range`` GETs of one audio file.

:func:`prepare_audio` writes a 16 MiB file of random bytes under the run's audio root and its
track document to MongoDB (``tracks``), before the gateway starts. :func:`bench_audio` then
runs ``concurrency`` loops of ``GET /audio/<track>`` with a random 64 KiB ``Range`` on
keep-alive connections to the gateway (``bench.gateway.system``), each answer checked
against the file's bytes (:func:`bench.gateway.analysis.check`), with a minimal HTTP/1.1
client (:class:`bench.gateway.system.RawHttp`, ``raw``) or ``httpx.AsyncClient``
(``httpx``); a 1 s warm-up first, not measured. The latencies, errors and CPU seconds go
to :func:`bench.gateway.analysis.audio_summary`, whose dict goes back to ``bench.gateway``
(JSON, table).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.gateway.analysis import RANGE_SIZE, audio_summary, check
from bench.gateway.system import TOKEN_TTL_S, GatewayProcess, RawHttp
from infra.mongo import database
from infra.settings import Settings
from schemas import tokens

AUDIO_SIZE, TRACK_ID, AUDIO_PATH = 16 << 20, 1, "000/000001.mp3"


def prepare_audio(settings: Settings) -> bytes:
    data = os.urandom(AUDIO_SIZE)
    file = settings.audio_root / AUDIO_PATH
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    db = database(settings)
    db.tracks.replace_one(
        {"_id": TRACK_ID}, {"_id": TRACK_ID, "title": "bench", "audio_path": AUDIO_PATH}, upsert=True
    )
    db.client.close()
    return data


Fetch = Callable[[int], Awaitable[tuple[int, bytes]]]


async def audio_load(
    client: str, gw: GatewayProcess, token: str, data: bytes, seconds: float, concurrency: int
) -> dict[str, Any]:
    """``concurrency`` loops of random 64 KiB range GETs for ``seconds`` (after a 1 s warm-up)."""
    latencies: list[float] = []
    bad: Counter[str] = Counter()
    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0, headers=auth, trust_env=False) as pool:

        async def via_httpx(first: int) -> tuple[int, bytes]:
            last = first + RANGE_SIZE - 1
            r = await pool.get(f"{gw.base}/audio/{TRACK_ID}", headers={"Range": f"bytes={first}-{last}"})
            return r.status_code, r.content

        async def loop(seed: int, deadline: float, record: bool) -> None:
            rng = random.Random(seed)
            raw = RawHttp(gw.port, token)

            async def via_raw(first: int) -> tuple[int, bytes]:
                return await raw.get(f"/audio/{TRACK_ID}", f"Range: bytes={first}-{first + RANGE_SIZE - 1}")

            fetch: Fetch = via_httpx if client == "httpx" else via_raw
            try:
                while time.perf_counter() < deadline:
                    first = rng.randrange(0, len(data) - RANGE_SIZE + 1)
                    started = time.perf_counter()
                    try:
                        status, body = await asyncio.wait_for(fetch(first), 30.0)
                    except (OSError, EOFError, KeyError, ValueError, httpx.HTTPError) as err:
                        bad[type(err).__name__] += 1
                        continue
                    took = time.perf_counter() - started
                    problem = check(status, body, data[first : first + RANGE_SIZE])
                    if problem is not None:
                        bad[problem] += 1
                    elif record:
                        latencies.append(took)
            finally:
                raw.close()

        warm_until = time.perf_counter() + 1.0
        await asyncio.gather(*(loop(-1 - i, warm_until, False) for i in range(concurrency)))
        if bad:
            raise RuntimeError(f"audio requests fail: {dict(bad)}")
        cpu0, gw_cpu0 = time.process_time(), gw.cpu_s()
        started = time.perf_counter()
        await asyncio.gather(*(loop(i, started + seconds, True) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        gw_cpu = gw.cpu_s() - gw_cpu0
    return audio_summary(
        client=client,
        concurrency=concurrency,
        seconds=seconds,
        latencies=latencies,
        errors=bad,
        elapsed=elapsed,
        gateway_cpu_s=gw_cpu,
        client_cpu_s=time.process_time() - cpu0,
    )


def bench_audio(
    gw: GatewayProcess, secret: str, data: bytes, seconds: float, concurrency: int, client: str
) -> dict[str, Any]:
    token = tokens.issue(secret, "bench-audio", now=time.time(), ttl_s=TOKEN_TTL_S)
    return {
        "file_bytes": len(data),
        "range_bytes": RANGE_SIZE,
        **asyncio.run(audio_load(client, gw, token, data, seconds, concurrency)),
    }
