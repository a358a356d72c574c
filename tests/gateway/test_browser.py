"""The web player in Debian's headless chromium (Playwright) against a running gateway and recommender.

A recommender worker and a gateway run as subprocesses on the session's stack, over the
``trained`` catalogue (Spark model promoted, clusters stored) with a short sine-tone WAV
per track (pitch by cluster). A new listener signs in, searches a track of a known
cluster and plays it: the audio element's time advances, the play reaches Kafka, and
"Up next for you" fills with tracks mostly of that cluster (never the played one). The
first suggestion is queued and the track skipped: the skip reaches Kafka, the queued
track plays and "Up next" changes. A full-page screenshot is saved as
``tests/artifacts/player-latest.png`` (ignored by git: the README's committed
``player.png`` changes only when someone copies a new one over it on purpose).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymongo import UpdateOne
from pymongo.database import Database

from infra.kafka_clients import consumer
from infra.prometheus import parse_metrics as samples_of
from infra.settings import Settings, child_env
from infra.stack.process import free_port
from schemas.cluster_model import load_current
from schemas.codec import decode
from schemas.events import PlayEvent
from schemas.topics import PLAYS
from streaming_jobs.model.snapshot import write_snapshot
from tests.recommender_stream.conftest import Worker, trained  # noqa: F401

pytestmark = [pytest.mark.stack, pytest.mark.spark, pytest.mark.e2e]

Db = Database[dict[str, Any]]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SAMPLE_RATE = 8000
AUDIO_S = 30
READY_TIMEOUT_S = 60.0
UI_TIMEOUT_MS = 20_000
RECO_TIMEOUT_MS = 30_000
IN_CLUSTER_SHARE = 0.7

UPNEXT_IDS = (
    "() => [...document.querySelectorAll('#upnext .upnext-item')].map((e) => Number(e.dataset.trackId))"
)
AUDIO_PLAYING = """(t) => {
  const a = document.getElementById('player-audio');
  return a.currentTime > t && !a.paused && !a.error;
}"""
ONLY_ROW = """(id) => {
  const rows = [...document.querySelectorAll('#track-list .track-row')];
  return rows.length > 0 && rows.every((r) => r.dataset.trackId === String(id));
}"""
UPNEXT_CHANGED = """([before, gone]) => {
  const ids = [...document.querySelectorAll('#upnext .upnext-item')].map((e) => Number(e.dataset.trackId));
  return ids.length > 0 && ids.join(',') !== before.join(',') && !ids.some((i) => gone.includes(i));
}"""


# --- audio ------------------------------------------------------------------------------------


def tone(cluster: int) -> bytes:
    """AUDIO_S seconds of a 16-bit mono sine tone, one pitch per cluster."""
    t = np.arange(SAMPLE_RATE * AUDIO_S) / SAMPLE_RATE
    wave_ = 0.3 * np.sin(2 * np.pi * (220.0 + 110.0 * cluster) * t)
    return (wave_ * 32767).astype("<i2").tobytes()


def write_audio(db: Db, root: Path) -> dict[int, int]:
    """A WAV file per clustered track under ``root``, its ``audio_path`` stored; track id -> cluster."""
    clusters: dict[int, int] = {}
    tones: dict[int, bytes] = {}
    updates = []
    for doc in db.tracks.find({}, {"cluster": 1}):
        cluster = doc.get("cluster")
        if not isinstance(cluster, int) or cluster < 0:
            continue
        tid = int(doc["_id"])
        relative = f"c{cluster}/{tid}.wav"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(root / relative), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(tones.setdefault(cluster, tone(cluster)))
        clusters[tid] = cluster
        updates.append(
            UpdateOne(
                {"_id": tid},
                {
                    "$set": {
                        "audio_path": relative,
                        "duration_s": float(AUDIO_S),
                        "artist": f"Cluster {cluster}",
                    }
                },
            )
        )
    assert updates, "the trained catalogue has no clustered tracks"
    db.tracks.bulk_write(updates)
    return clusters


# --- processes --------------------------------------------------------------------------------


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<{path.name} unreadable: {err}>"
    return "\n".join(text.splitlines()[-lines:])


def logs(*paths: Path) -> str:
    return "\n".join(f"--- last lines of {p.name} ---\n{tail(p)}" for p in paths)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """Terminate, then kill if still running after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


Check = tuple[subprocess.Popen[bytes], Path, Callable[[], bool]]


def wait_ready(checks: dict[str, Check], timeout: float, all_logs: list[Path]) -> None:
    """Poll every check until all pass; fail at once if a process exits, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    pending = dict(checks)
    while True:
        for name, (proc, log, check) in list(pending.items()):
            if proc.poll() is not None:
                pytest.fail(
                    f"{name} exited with code {proc.returncode} before it was ready\n{logs(log)}",
                    pytrace=False,
                )
            if check():
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"{sorted(pending)} not ready within {timeout:.0f} s\n{logs(*all_logs)}", pytrace=False
            )
        time.sleep(0.25)


# --- Kafka ------------------------------------------------------------------------------------


def wait_plays(
    settings: Settings, user: str, wanted: set[tuple[str, int]], timeout: float
) -> list[PlayEvent]:
    """The listener's PlayEvents on the plays topic, once ``wanted`` (kind, track) are all there."""
    c = consumer(
        settings,
        settings.topic(PLAYS),
        group_id=f"browser-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    events: list[PlayEvent] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in c.poll(timeout_ms=300).values():
                events += [e for e in (decode(PlayEvent, r.value) for r in records) if e.user_id == user]
            if wanted <= {(e.kind.value, e.track_id) for e in events}:
                return events
    finally:
        c.close()
    raise AssertionError(
        f"{user}'s plays on Kafka lack {sorted(wanted - {(e.kind.value, e.track_id) for e in events})}; "
        f"got {[(e.kind.value, e.track_id) for e in events]}"
    )


# --- the test ---------------------------------------------------------------------------------


def test_listener_plays_skips_and_up_next_follows(
    trained: dict[str, Any],  # noqa: F811
    topics: Settings,
    db: Db,
    tmp_path: Path,
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package); never downloaded")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    settings = topics
    root = settings.audio_root
    root.mkdir(parents=True, exist_ok=True)
    clusters = write_audio(db, root)
    # The audio paths were written behind the topics' back: write the catalogue snapshot
    # again, as `cadenza model snapshot` does, so the gateway's cold start sees them.
    write_snapshot(db, settings, load_current(settings.models_path))
    # A track of a known cluster whose title only it matches (so the search finds just it).
    titles = {int(d["_id"]): str(d["title"]) for d in db.tracks.find({}, {"title": 1})}
    cluster = min(clusters.values())
    first = next(
        tid
        for tid, c in sorted(clusters.items())
        if c == cluster and sum(titles[tid].lower() in t.lower() for t in titles.values()) == 1
    )

    gateway_log, worker_log = tmp_path / "gateway.log", tmp_path / "worker.log"
    worker = Worker(settings, worker_log)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway: subprocess.Popen[bytes] | None = None
    console: list[str] = []
    page_errors: list[str] = []
    try:
        worker.start()
        assert worker.proc is not None
        with gateway_log.open("ab") as out:
            gateway = subprocess.Popen(
                [sys.executable, "-c", "from infra.cli import main; main()", "gateway"],
                env=child_env(settings, demo_signin=True, gateway_port=port, log_level="INFO"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_ready(
            {
                "gateway (/readyz)": (gateway, gateway_log, lambda: http_ok(f"{base}/readyz")),
                "recommender worker (/metrics, catalogue loaded)": (
                    worker.proc,
                    worker_log,
                    lambda: (
                        http_ok(f"http://127.0.0.1:{worker.port}/metrics")
                        and "recommender ready" in worker_log.read_text(errors="replace")
                    ),
                ),
            },
            READY_TIMEOUT_S,
            [gateway_log, worker_log],
        )
        user = f"e2e-{uuid.uuid4().hex[:8]}"

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                page = context.new_page()
                page.set_default_timeout(UI_TIMEOUT_MS)
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: page_errors.append(str(e)))
                try:
                    # Sign in as a new listener; the websocket connects.
                    page.goto(base)
                    page.locator("#signin-name").fill(user)
                    page.locator("#signin-button").click()
                    page.locator("#app").wait_for(state="visible")
                    page.locator("#conn-status[data-state=connected]").wait_for()
                    assert page.locator("#user-name").inner_text() == user

                    # Search the track and play it: the audio advances, "now playing" shows it.
                    page.locator("#search").fill(titles[first])
                    page.wait_for_function(ONLY_ROW, arg=first)
                    page.locator(f'.track-row[data-track-id="{first}"] .play').click()
                    page.locator(f'#now-playing[data-track-id="{first}"]').wait_for()
                    page.wait_for_function(AUDIO_PLAYING, arg=1.0)
                    src = page.locator("#player-audio").evaluate("(a) => a.currentSrc")
                    assert src.endswith(f"/audio/{first}") and "token=" not in src

                    # The recommender answers: Up next fills, mostly from the played track's cluster.
                    page.locator("#upnext .upnext-item").first.wait_for(timeout=RECO_TIMEOUT_MS)
                    before: list[int] = page.evaluate(UPNEXT_IDS)
                    reasons = page.locator("#upnext .upnext-item .reason").all_inner_texts()
                    assert first not in before, before
                    assert all(r.strip() for r in reasons), reasons
                    same = [t for t in before if clusters.get(t) == cluster]
                    assert len(same) >= IN_CLUSTER_SHARE * len(before), (
                        cluster,
                        [(t, clusters.get(t)) for t in before],
                    )

                    # Queue the first suggestion, then skip: it plays, and Up next changes.
                    second = before[0]
                    page.locator(f'#upnext .upnext-item[data-track-id="{second}"] .queue-add').click()
                    page.locator(f'#queue .queue-item[data-track-id="{second}"]').wait_for()
                    page.locator("#btn-skip").click()
                    page.locator(f'#now-playing[data-track-id="{second}"]').wait_for()
                    page.wait_for_function(AUDIO_PLAYING, arg=0.5)
                    page.wait_for_function(
                        UPNEXT_CHANGED, arg=[before, [first, second]], timeout=RECO_TIMEOUT_MS
                    )
                    after: list[int] = page.evaluate(UPNEXT_IDS)
                    assert after != before and first not in after and second not in after
                    assert not page_errors, page_errors

                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / "player-latest.png"), full_page=True)
                except (AssertionError, PlaywrightError) as err:
                    with contextlib.suppress(PlaywrightError, OSError):
                        ARTIFACTS.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(ARTIFACTS / "player-failure.png"), full_page=True)
                    raise AssertionError(
                        f"{type(err).__name__}: {err}\n--- browser console ---\n"
                        + "\n".join([*console[-30:], *(f"pageerror: {e}" for e in page_errors)])
                        + f"\n{logs(gateway_log, worker_log)}"
                    ) from err
            finally:
                browser.close()

        # What the player reported reached Kafka as PlayEvents of this listener.
        events = wait_plays(settings, user, {("play", first), ("skip", first), ("play", second)}, timeout=20)
        skip = next(e for e in events if e.kind.value == "skip")
        assert skip.track_id == first and skip.position_s >= 1.0, skip
        # Each says where the track was started from: the search list, then "Up next" (queued).
        sources = {(e.kind.value, e.track_id): e.source and e.source.value for e in events}
        assert sources[("play", first)] == sources[("skip", first)] == "browse", sources
        assert sources[("play", second)] == "up_next", sources
        # ... sent as play frames on the player's open socket, not as POSTs.
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            exposition = answer.read().decode()
        frames = samples_of(exposition)
        assert frames.get('cadenza_gateway_ws_frames_total{kind="play"}', 0) >= 3, exposition[:2000]
    finally:
        stop(gateway)
        stop(worker.proc)
