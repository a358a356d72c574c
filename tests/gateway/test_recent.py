"""A listener's recently played tracks on the real stack: ``GET /api/me/recent`` over FerretDB's
``plays`` and ``tracks`` (the catalogue in memory and MongoDB's path), and the player's
"Recently played" view in Debian's headless chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.database import Database
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.history import DEFAULT_LIMIT, MAX_LIMIT, READ_FACTOR
from infra.settings import Settings
from infra.stack.process import free_port
from tests.gateway.conftest import token_for
from tests.gateway.live_server import serve

pytestmark = [pytest.mark.stack]
Db = Database[dict[str, Any]]
CHROMIUM = Path("/usr/bin/chromium")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def gateway_settings(topics: Settings) -> Settings:
    return topics.model_copy(update={"token_secret": SecretStr("recent-secret"), "demo_signin": True})


@contextmanager
def started(settings: Settings) -> Iterator[TestClient]:
    """The gateway app, ready, and its catalogue loaded if it keeps one in memory."""
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 30
        while (ready := c.get("/readyz")).status_code != 200 or ready.json()["catalogue"][
            "state"
        ] == "loading":
            assert time.monotonic() < deadline, ready.json()
            time.sleep(0.2)
        yield c


def auth(settings: Settings, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user, settings)}"}


def play(n: int, user: str, track: int, minute: float, kind: str = "play") -> dict[str, Any]:
    """A ``plays`` document as Spark's history query writes it."""
    return {
        "_id": f"{user}-{n}",
        "user_id": user,
        "track_id": track,
        "kind": kind,
        "position_s": 0.0,
        "ts": T0 + timedelta(minutes=minute),
        "cluster": 0,
    }


def ids(answer: dict[str, Any]) -> list[int]:
    return [t["track_id"] for t in answer["items"]]


@pytest.mark.parametrize("memory", [True, False], ids=["memory", "mongodb"])
def test_newest_first_once_per_track_only_the_listeners_plays(
    gateway_settings: Settings, db: Db, memory: bool
) -> None:
    db.tracks.insert_many(
        [
            {
                "_id": i,
                "title": f"Song {i}",
                "artist": "Band",
                "album": "LP",
                "genre_top": "Rock",
                "duration_s": 180.0 + i,
                "audio_path": f"{i}.mp3" if i != 2 else None,
                "features": None,
                "cluster": i % 2,
            }
            for i in range(1, 7)
        ]
    )
    db.plays.insert_many(
        [
            play(1, "alice", 1, 0),
            play(2, "alice", 2, 1),
            play(3, "alice", 2, 2, "complete"),  # not a play
            play(4, "alice", 4, 3, "like"),  # only likes and skips of 4 and 5
            play(5, "alice", 5, 4, "skip"),
            play(6, "alice", 1, 5),  # 1 again: it moves up
            play(7, "alice", 999, 6),  # no longer in the catalogue
            play(8, "bob", 6, 7),  # another listener
            play(9, "alice", 3, 8),
        ]
    )
    settings = gateway_settings.model_copy(update={"gateway_catalogue_memory": memory})
    with started(settings) as client:
        h = auth(settings, "alice")
        answer = client.get("/api/me/recent", headers=h).json()
        assert ids(answer) == [3, 1, 2]
        assert (answer["total"], answer["limit"]) == (3, DEFAULT_LIMIT)
        assert [t["played_at"] for t in answer["items"]] == [
            "2024-05-01T12:08:00+00:00",
            "2024-05-01T12:05:00+00:00",
            "2024-05-01T12:01:00+00:00",
        ]
        for item in answer["items"]:  # the catalogue's JSON of the track, and when it was played
            shown = client.get(f"/api/tracks/{item['track_id']}", headers=h).json()
            assert {k: v for k, v in item.items() if k != "played_at"} == shown
        assert answer["items"][2]["playable"] is False and answer["items"][0]["playable"] is True
        assert ids(client.get("/api/me/recent", headers=auth(settings, "bob")).json()) == [6]
        assert client.get("/api/me/recent", headers=auth(settings, "carol")).json() == {
            "items": [],
            "total": 0,
            "limit": DEFAULT_LIMIT,
        }


def test_limit_bounds_bad_limits_and_a_bounded_read(gateway_settings: Settings, db: Db) -> None:
    n = MAX_LIMIT + 30
    db.tracks.insert_many([{"_id": i, "title": f"T{i}", "audio_path": f"{i}.mp3"} for i in range(1, n + 1)])
    db.plays.insert_many([play(i, "dana", i, i) for i in range(1, n + 1)])
    with started(gateway_settings) as client:
        h = auth(gateway_settings, "dana")

        def recent(limit: str) -> dict[str, Any]:
            r = client.get(f"/api/me/recent?limit={limit}", headers=h)
            assert r.status_code == 200, (limit, r.text)
            return r.json()

        assert ids(recent("2")) == [n, n - 1]
        assert ids(recent("1")) == [n]
        assert ids(client.get("/api/me/recent", headers=h).json()) == list(range(n, n - DEFAULT_LIMIT, -1))
        full = recent(str(MAX_LIMIT))
        assert (full["total"], full["limit"]) == (MAX_LIMIT, MAX_LIMIT)
        assert ids(full) == list(range(n, n - MAX_LIMIT, -1))
        assert recent("5000")["limit"] == MAX_LIMIT and recent("5000")["total"] == MAX_LIMIT
        for bad in ("0", "-1", "1.5", "abc", "", "%C2%B2", "1e3", "9" * 20, "%00"):
            answer = recent(bad)
            assert (answer["limit"], answer["total"]) == (DEFAULT_LIMIT, DEFAULT_LIMIT), bad

        # Only the newest limit * READ_FACTOR plays are read: a track replayed that often hides older ones.
        db.plays.insert_many([play(1000 + k, "dana", 7, n + 1 + k) for k in range(2 * READ_FACTOR)])
        assert ids(recent("2")) == [7]
        assert ids(recent("3"))[:2] == [7, n]


def test_a_token_is_needed_and_mongodb_down_is_a_503(gateway_settings: Settings, db: Db) -> None:
    db.tracks.insert_one({"_id": 1, "title": "One"})
    db.plays.insert_one(play(1, "erin", 1, 0))
    with started(gateway_settings) as client:
        assert client.get("/api/me/recent").status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert client.get("/api/me/recent", headers=bad).status_code == 401
        h = auth(gateway_settings, "erin")
        assert ids(client.get("/api/me/recent", headers=h).json()) == [1]
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        working, gw.mongo = (
            gw.mongo,
            MongoClient(f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=300),
        )
        try:
            down = client.get("/api/me/recent", headers=h)
            assert down.status_code == 503 and "MongoDB" in down.json()["error"], down.text
        finally:
            gw.mongo.close()
            gw.mongo = working


RECENT_ROWS = (
    "() => [...document.querySelectorAll('#recent-list .track-row')].map((r) => Number(r.dataset.trackId))"
)


def test_the_player_shows_recently_played_newest_first(gateway_settings: Settings, db: Db) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package); never downloaded")
    from playwright.sync_api import sync_playwright

    from tests.gateway.test_browser import CHROMIUM_ARGS

    user = "rita"
    db.tracks.insert_many(
        [
            {"_id": i, "title": f"<b>Tune {i}</b>", "artist": f"Artist {i}", "audio_path": f"{i}.mp3"}
            for i in (11, 12, 13, 14)
        ]
    )
    now = datetime.now(UTC)
    db.plays.insert_many(
        [
            {**play(1, user, 11, 0), "ts": now - timedelta(minutes=30)},
            {**play(2, user, 12, 0), "ts": now - timedelta(minutes=20)},
            {**play(3, user, 11, 0), "ts": now - timedelta(minutes=10)},  # 11 again: first
            {**play(4, user, 13, 0, "skip"), "ts": now - timedelta(minutes=5)},  # a skip: not shown
            {**play(5, "someone-else", 14, 0), "ts": now},
        ]
    )
    errors: list[str] = []
    with serve(create_app(gateway_settings)) as running, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(running.url)
            page.locator("#signin-name").fill(user)
            page.locator("#signin-button").click()
            page.locator("#app").wait_for(state="visible")
            assert page.locator("#view-recent").is_hidden()

            # From the sidebar's navigation, by keyboard: focus the link, press Enter.
            page.locator("#nav-recent").focus()
            page.keyboard.press("Enter")
            page.locator("#view-recent").wait_for(state="visible")
            assert page.locator("#view-browse").is_hidden()
            assert page.locator("#nav-recent").get_attribute("aria-current") == "page"
            page.wait_for_function(f"() => ({RECENT_ROWS})().length === 2")
            assert page.evaluate(RECENT_ROWS) == [11, 12]
            titles = page.locator("#recent-list .track-row .t-title").all_inner_texts()
            assert titles == ["<b>Tune 11</b>", "<b>Tune 12</b>"]  # server text as text
            assert page.locator("#recent-list .t-played time").all_inner_texts() == [
                "10 min ago",
                "20 min ago",
            ]
            assert "within a few seconds" in page.locator("#view-recent .view-note").inner_text()

            # The rows' buttons are the catalogue's: add to queue.
            page.locator('#recent-list .track-row[data-track-id="12"] .queue-add').click()
            page.locator('#queue .queue-item[data-track-id="12"]').wait_for()

            # Back to the catalogue from the navigation.
            page.locator("#nav-browse").click()
            page.locator("#view-browse").wait_for(state="visible")
            assert page.locator("#view-recent").is_hidden()
            assert not errors, errors
        finally:
            browser.close()
