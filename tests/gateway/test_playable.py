"""Tracks without audio (imported features: ``cadenza etl import-features``) are listed as not playable.

The catalogue API says ``playable: false`` for a track without a stored audio path, from
MongoDB and from the in-memory catalogue alike; its audio route answers 404 with the
reason, and the web player (Debian's headless chromium) shows its row with a "No audio"
label and a disabled play button, and never loads its audio.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo.database import Database

from gateway.track_json import Track
from infra.settings import Settings, child_env
from infra.stack.process import free_port
from tests.gateway.test_api import auth, started

pytestmark = [pytest.mark.stack]
Db = Database[dict[str, Any]]
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def gateway_settings(topics: Settings) -> Settings:
    return topics.model_copy(update={"token_secret": SecretStr("playable-secret")})


def tracks() -> list[dict[str, Any]]:
    return [
        {"_id": 1, "title": "Has audio", "genre_top": "Rock", "audio_path": "fma_small/000/000001.wav"},
        {"_id": 2, "title": "Imported", "genre_top": "Rock", "audio_path": None, "source": "synthetic"},
        {"_id": 3, "title": "Imported too", "genre_top": "Rock", "source": "fma-features"},  # no field
    ]


def test_playable_follows_the_stored_audio_path() -> None:
    assert [Track.from_doc(d).playable for d in tracks()] == [True, False, False]
    assert Track.from_doc({"_id": 4, "audio_path": ""}).json()["playable"] is False
    assert Track(5).json()["playable"] is True  # a track the caller vouches for (tracks.new)


@pytest.mark.parametrize("memory", [True, False], ids=["memory", "mongodb"])
def test_the_api_lists_imported_tracks_as_not_playable(
    gateway_settings: Settings, db: Db, memory: bool
) -> None:
    db.tracks.insert_many(tracks())
    settings = gateway_settings.model_copy(update={"gateway_catalogue_memory": memory})
    with started(settings) as client:
        h = auth(gateway_settings, "ines")
        listed = client.get("/api/tracks", headers=h).json()["items"]
        assert {t["track_id"]: t["playable"] for t in listed} == {1: True, 2: False, 3: False}
        assert client.get("/api/tracks/2", headers=h).json()["playable"] is False
        searched = client.get("/api/tracks?q=imported", headers=h).json()["items"]
        assert [t["playable"] for t in searched] == [False, False]
        audio = client.get("/audio/2", headers=h)
        assert audio.status_code == 404 and "no stored audio path" in audio.text


def test_the_player_shows_a_track_without_audio_as_not_playable(
    gateway_settings: Settings,
    db: Db,
    tmp_path: Path,
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package); never downloaded")
    from playwright.sync_api import sync_playwright

    settings = gateway_settings
    audio = settings.audio_root / "fma_small/000/000001.wav"
    audio.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 5)
    db.tracks.insert_many(tracks())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    with log.open("ab") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "infra", "gateway"],
            env=child_env(settings, demo_signin=True, gateway_port=port, log_level="WARNING"),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=3) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert gateway.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.25)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(20_000)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(base)
                page.locator("#signin-name").fill(f"ui-{uuid.uuid4().hex[:6]}")
                page.locator("#signin-button").click()
                row = page.locator('.track-row[data-track-id="2"]')
                row.wait_for()
                assert "is-unplayable" in (row.get_attribute("class") or "")
                assert row.locator(".no-audio").inner_text() == "No audio"
                play = row.locator(".play")
                assert play.is_disabled() and "Not playable" in (play.get_attribute("title") or "")
                assert row.locator(".queue-add").is_disabled()
                assert page.locator('.track-row[data-track-id="1"] .play').is_enabled()
                row.locator(".t-title").click()  # the row itself: a note, no audio request
                page.locator(".toast", has_text="has no audio").first.wait_for()
                assert page.locator("#player-audio").evaluate("(a) => a.getAttribute('src')") is None
                assert page.locator("#now-playing").get_attribute("data-track-id") is None
                assert not errors, errors
            finally:
                browser.close()
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
