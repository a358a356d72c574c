"""End to end, everything real: sample catalogue -> ETL -> model -> streaming jobs, recommender,
gateway (supervised) -> browser, upstream producers and simulated listeners.

Tests run in order on one system (module fixture); each uses its own listeners.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client

from schemas.cluster_model import load_current
from schemas.codec import decode
from schemas.events import PlayEvent
from schemas.json_schema import export
from schemas.tokens import issue
from schemas.topics import PLAYS
from schemas.vectors import unpack
from tests.conftest import read_until_idle
from tests.e2e.conftest import System
from tests.gateway.test_browser import AUDIO_PLAYING, CHROMIUM, CHROMIUM_ARGS, UPNEXT_IDS
from tests.infra.test_upstream_publisher import publish

pytestmark = [pytest.mark.stack, pytest.mark.spark, pytest.mark.e2e]
UI_TIMEOUT_MS = 30_000


def token(system: System, user: str) -> str:
    return issue(system.settings.token_secret.get_secret_value(), user, now=time.time(), ttl_s=3600)


def topic_plays(system: System, prefix: str) -> list[PlayEvent]:
    """Every distinct PlayEvent on the plays topic of listeners whose id starts with ``prefix``."""
    seen: dict[str, PlayEvent] = {}
    for r in read_until_idle(system.settings, system.settings.topic(PLAYS)):
        with contextlib.suppress(Exception):
            event = decode(PlayEvent, r.value)
            if event.user_id.startswith(prefix):
                seen[str(event.event_id)] = event
    return list(seen.values())


def play_and_wait(system: System, user: str, track_id: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """POST a play as ``user`` and return the items of the list that play causes, from /ws."""
    settings = system.settings
    with ws_client.connect(f"ws://127.0.0.1:{settings.gateway_port}/ws?token={token(system, user)}") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        r = httpx.post(
            f"{system.url}/api/plays",
            json={"track_id": track_id, "kind": "play"},
            headers={"Authorization": f"Bearer {token(system, user)}"},
        )
        assert r.status_code == 202, r.text
        event_id = r.json()["event_id"]
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message["type"] == "recommendations" and message["data"]["cause_event_id"] == event_id:
                return message["data"]["items"]


def simulate(system: System, out: Path, *args: str) -> dict[str, Any]:
    system.cadenza("simulate", "--via", "gateway", "--url", system.url, "--out", str(out), *args, timeout=300)
    return json.loads(out.read_text())


def history_ids(system: System, users: set[str]) -> Counter[str]:
    return Counter(
        str(d["_id"]) for d in system.db.plays.find({"user_id": {"$in": sorted(users)}}, {"_id": 1})
    )


def check_exactly_once(system: System, prefix: str) -> list[PlayEvent]:
    """Every accepted play of these listeners is in history once, and in their profile totals."""
    events = topic_plays(system, prefix)
    assert events, "no play reached the topic"
    users = {e.user_id for e in events}
    expected = {str(e.event_id) for e in events}
    system.wait(
        "every play in history",
        lambda: set(history_ids(system, users)) >= expected,
        timeout=180,
        every=2.0,
    )
    stored = history_ids(system, users)
    assert set(stored) == expected and max(stored.values()) == 1
    per_user: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        per_user[e.user_id][e.kind.value] += 1

    def profiles_match() -> bool:
        docs = {d["_id"]: d.get("totals", {}) for d in system.db.users.find({"_id": {"$in": sorted(users)}})}
        return all(dict(docs.get(u, {})) == dict(per_user[u]) for u in users)

    system.wait("profile totals equal to the plays", profiles_match, timeout=180, every=2.0)
    return events


def lag_drains(system: System, names: set[str]) -> None:
    def zero() -> bool:
        rows = [r for r in system.lag() if r["name"] in names]
        return bool(rows) and {r["name"] for r in rows} == names and sum(r["lag"] for r in rows) == 0

    system.wait(f"lag 0 for {sorted(names)}", zero, timeout=180, every=3.0)


def test_a_listener_in_the_browser_gets_up_next_from_the_sound_they_play(system: System) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package); never downloaded")
    from playwright.sync_api import sync_playwright

    tracks = list(system.db.tracks.find({"cluster": {"$ne": None}, "audio_path": {"$ne": None}}))
    by_genre: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in tracks:
        by_genre[str(t.get("genre_top"))].append(t)

    def purity(docs: list[dict[str, Any]]) -> float:
        return Counter(d["cluster"] for d in docs).most_common(1)[0][1] / len(docs)

    genre = max(by_genre, key=lambda g: (purity(by_genre[g]), g))
    cluster = Counter(d["cluster"] for d in by_genre[genre]).most_common(1)[0][0]
    chosen = [d for d in by_genre[genre] if d["cluster"] == cluster][:3]
    clusters = {int(t["_id"]): t["cluster"] for t in tracks}
    user = f"browser-{uuid.uuid4().hex[:6]}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(system.url)
            page.locator("#signin-name").fill(user)
            page.locator("#signin-button").click()
            page.locator("#conn-status[data-state=connected]").wait_for()
            before: list[int] = []
            for doc in chosen:
                tid = int(doc["_id"])
                page.locator("#search").fill(str(doc["title"]))
                page.locator(f'.track-row[data-track-id="{tid}"] .play').first.click()
                page.locator(f'#now-playing[data-track-id="{tid}"]').wait_for()
                page.wait_for_function(AUDIO_PLAYING, arg=1.0)
                page.wait_for_function(
                    "([before, tid]) => { const ids = [...document.querySelectorAll('#upnext .upnext-item')]"
                    ".map((e) => Number(e.dataset.trackId));"
                    " return ids.length > 0 && ids.join() !== before.join() && !ids.includes(tid); }",
                    arg=[before, tid],
                )
                before = page.evaluate(UPNEXT_IDS)
            played = {int(d["_id"]) for d in chosen}
            assert not played & set(before), before
            same = [t for t in before if clusters.get(t) == cluster]
            assert len(same) >= 0.6 * len(before), (genre, cluster, [(t, clusters.get(t)) for t in before])
        finally:
            browser.close()


def test_an_upstream_track_is_assigned_by_spark_and_recommendable_at_once(
    system: System, tmp_path: Path
) -> None:
    settings = system.settings
    model = load_current(settings.models_path)
    source = system.db.tracks.find_one({"features": {"$ne": None}, "cluster": {"$ne": None}})
    assert source is not None
    new_id = int(max(d["_id"] for d in system.db.tracks.find({}, {"_id": 1}))) + 1000
    features = unpack(source["features"]).tolist()  # stored packed; the event carries a JSON list
    expected = model.assign_one(features)
    track = {
        "track_id": new_id,
        "title": "Upstream Premiere",
        "artist": "Another Service",
        "genre_top": source.get("genre_top"),
        "features": features,
    }
    (tmp_path / "track.json").write_text(json.dumps(track))
    schemas = tmp_path / "schemas"
    export(schemas, settings.topic_prefix)
    added_before = system.worker_metric("cadenza_recommender_tracks_added_total")
    done = publish(settings, schemas, "track", str(tmp_path / "track.json"))
    assert done.returncode == 0, done.stderr
    # The recommender places it at once; the streaming job stores it with Spark's cluster.
    system.wait(
        "the recommender to place the new track",
        lambda: system.worker_metric("cadenza_recommender_tracks_added_total") > added_before,
        timeout=30,
    )
    stored = system.wait(
        "the assign job to store the track",
        lambda: system.db.tracks.find_one({"_id": new_id, "cluster": {"$ne": None}}),
        timeout=180,
        every=1.0,
    )
    assert stored["cluster"] == expected and stored["title"] == "Upstream Premiere"
    # Recommendable: a listener can play it, and gets a list caused by that play.
    items = play_and_wait(system, f"upstream-{uuid.uuid4().hex[:6]}", new_id)
    assert items and new_id not in [i["track_id"] for i in items]


def test_simulated_listeners_every_play_stored_once_and_lag_drains(system: System, tmp_path: Path) -> None:
    report = simulate(
        system, tmp_path / "sim.json", "--listeners", "12", "--rate", "8", "--duration", "20", "--seed", "3"
    )
    assert report["accepted"] >= 100 and report["accepted"] == report["sent"], report
    assert report["listeners_reached"] == 12, report
    prefix = "sim-s3-"
    events = check_exactly_once(system, prefix)
    assert {str(e.event_id) for e in events} == set(report["accepted_event_ids"])
    lag_drains(system, {f"{system.settings.topic_prefix}recommender", "plays-history", "plays-profiles"})


def test_killing_a_worker_and_a_spark_query_mid_run_loses_and_doubles_nothing(
    system: System, tmp_path: Path
) -> None:
    out = tmp_path / "sim.json"
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(
            simulate(
                system,
                out,
                "--listeners",
                "10",
                "--rate",
                "8",
                "--duration",
                "40",
                "--seed",
                "4",
                "--drain",
                "60",
            )
        )

    load = threading.Thread(target=run)
    load.start()
    time.sleep(12)
    system.signal("recommender", "KILL")
    time.sleep(4)
    system.signal("stream-plays", "KILL")
    load.join(timeout=400)
    assert result, "the simulator did not finish"
    assert result["accepted"] >= 200, result
    events = check_exactly_once(system, "sim-s4-")
    assert {str(e.event_id) for e in events} == set(result["accepted_event_ids"])
    assert result["listeners_reached"] == 10, result
    # The restarted worker carries on for these listeners.
    track = int(events[0].track_id)
    for user in sorted({e.user_id for e in events})[:3]:
        assert play_and_wait(system, user, track), user
    lag_drains(system, {f"{system.settings.topic_prefix}recommender", "plays-history", "plays-profiles"})
