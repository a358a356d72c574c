"""``cadenza simulate`` on the real stack: every accepted event lands on the plays topic exactly
once, straight to Kafka and through a gateway process (websockets open, pings answered,
no recommender running: no recommendation, said plainly), with plays sent as frames on the
listeners' sockets (the default) or POSTed. Plus its pure helpers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from pydantic import SecretStr
from pymongo.database import Database
from typer.testing import CliRunner

from gateway.app import create_app
from infra.kafka_clients import consumer, producer
from infra.settings import Settings, child_env
from infra.stack.process import free_port
from schemas.codec import decode, encode, encode_key
from schemas.events import PlayEvent, PlayKind, Recommendation, RecommendedTrack
from schemas.topics import PLAYS, RECOMMENDATIONS
from simulator.cli import register
from simulator.errors import SimulationError
from simulator.report import NO_RECOMMENDER, Arrival, SimulationReport, latency_summary, match, summary
from simulator.run import SimulationConfig, run, user_ids
from simulator.sockets import ws_url
from tests.conftest import topic_reader
from tests.gateway.live_server import serve

Db = Database[dict[str, Any]]
READY_TIMEOUT_S = 60.0


def catalogue_docs() -> list[dict[str, Any]]:
    """40 tracks: 25 Rock, 15 Jazz."""
    return [
        {"_id": i, "title": f"Song {i}", "genre_top": "Rock" if i <= 25 else "Jazz", "duration_s": 120.0 + i}
        for i in range(1, 41)
    ]


def read_plays(settings: Settings, expect: int, timeout: float = 30.0) -> list[tuple[bytes, PlayEvent]]:
    """(key, event) of every record on the plays topic: until ``expect`` came, then 1.5 s more."""
    c = topic_reader(settings, settings.topic(PLAYS))
    got: list[tuple[bytes, PlayEvent]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) < expect:
            for records in c.poll(timeout_ms=300).values():
                got += [(r.key, decode(PlayEvent, r.value)) for r in records]
        quiet = time.monotonic() + 1.5
        while time.monotonic() < quiet:
            for records in c.poll(timeout_ms=300).values():
                got += [(r.key, decode(PlayEvent, r.value)) for r in records]
    finally:
        c.close()
    return got


def check_topic(
    settings: Settings, report: SimulationReport, earlier: set[str] | None = None
) -> list[tuple[bytes, PlayEvent]]:
    """Every accepted event exactly once on the topic, keyed by its listener; nothing else
    but the ``earlier`` events (of a previous run)."""
    earlier = earlier or set()
    plays = read_plays(settings, expect=report.accepted + len(earlier))
    plays = [(k, e) for k, e in plays if str(e.event_id) not in earlier]
    ids = Counter(str(e.event_id) for _, e in plays)
    assert ids == Counter(report.accepted_event_ids)
    assert max(ids.values()) == 1
    users = set(user_ids(report.run_tag, report.listeners))
    known = {d["_id"] for d in catalogue_docs()}
    for key, event in plays:
        assert key == event.user_id.encode() and event.user_id in users
        assert event.track_id in known
    return plays


def in_order(plays: list[tuple[bytes, PlayEvent]]) -> None:
    """Each listener's follow-ups come after a play of the same track (a partition keeps order)."""
    current: dict[str, int | None] = {}
    for _, e in plays:
        if e.kind is PlayKind.PLAY:
            current[e.user_id] = e.track_id
        else:
            assert current.get(e.user_id) == e.track_id, e
            if e.kind is not PlayKind.LIKE:
                current[e.user_id] = None


def echo(settings: Settings, stop: threading.Event) -> None:
    """A stand-in recommender: one Recommendation per play, caused by it, until ``stop``."""
    c = consumer(settings, settings.topic(PLAYS), group_id=None)
    p = producer(settings, linger_ms=0)
    try:
        while not stop.is_set():
            for records in c.poll(timeout_ms=100).values():
                for r in records:
                    e = decode(PlayEvent, r.value)
                    answer = Recommendation(
                        user_id=e.user_id,
                        items=[RecommendedTrack(track_id=e.track_id, score=1.0, reason="echo")],
                        cause_event_id=e.event_id,
                        cause_ts=e.ts,
                    )
                    p.send(settings.topic(RECOMMENDATIONS), key=encode_key(e.user_id), value=encode(answer))
            p.flush()
    finally:
        c.close()
        p.close()


@pytest.mark.stack
def test_via_kafka_every_accepted_event_is_on_the_plays_topic_once(topics: Settings, db: Db) -> None:
    config = SimulationConfig(
        listeners=8, rate=20.0, duration_s=3.0, via="kafka", sockets=False, seed=7, progress=False
    )
    with pytest.raises(SimulationError, match="cadenza demo"):
        run(topics, config)
    db.tracks.insert_many(catalogue_docs())

    report = run(topics, config)

    assert report.run_tag == "s7" and report.seed == 7
    assert report.failed == {}
    assert report.sent == report.accepted == len(report.accepted_event_ids) == report.scheduled
    assert 30 <= report.accepted <= 100  # Poisson, mean 60
    assert report.achieved_rate == pytest.approx(report.sent / 3.0, rel=0.2)
    assert (report.sockets, report.received, report.outstanding) == (0, 0, 0)
    assert report.note is not None and "--no-sockets" in report.note
    in_order(check_topic(topics, report))


@pytest.mark.stack
def test_via_gateway_with_sockets_every_play_lands_once_and_recommendations_are_timed(
    topics: Settings, db: Db, tmp_path: Path
) -> None:
    db.tracks.insert_many(catalogue_docs())
    port, secret = free_port(), "simulator-secret-of-at-least-32-chars"
    log = tmp_path / "gateway.log"
    env = child_env(
        topics,
        gateway_host="127.0.0.1",
        gateway_port=port,
        token_secret=secret,
        gateway_heartbeat_s=0.5,  # pings every 0.5 s: an unanswered socket would be closed in 1.5 s
        log_level="WARNING",
    )
    with log.open("ab") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "infra", "gateway"],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stop = threading.Event()
    echoing = threading.Thread(target=echo, args=(topics, stop), daemon=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", gateway, log)
        settings = topics.model_copy(
            update={"token_secret": SecretStr(secret), "gateway_host": "127.0.0.1", "gateway_port": port}
        )
        config = SimulationConfig(listeners=6, rate=20.0, duration_s=3.0, drain_s=1.5, progress=False)

        report = run(settings, config)

        assert (report.via, report.url) == ("gateway", f"http://127.0.0.1:{port}")
        assert report.sockets == 6
        assert report.socket_errors == {}, report.socket_errors  # pings were answered
        assert report.failed == {}
        assert report.sent == report.accepted == len(report.accepted_event_ids) > 20
        assert (report.received, report.matched, report.unmatched, report.listeners_reached) == (0, 0, 0, 0)
        assert report.outstanding == report.accepted
        assert set(report.latency_ms.values()) == {None}
        assert report.note == NO_RECOMMENDER
        assert report.drain_s >= 1.5
        assert json.loads(json.dumps(report.to_dict()))["accepted"] == report.accepted
        accepted_before = set(report.accepted_event_ids)
        assert summary(report).row_count >= 10
        in_order(check_topic(topics, report))

        # Now with a (stand-in) recommender: each accepted play's list arrives and is timed.
        echoing.start()
        report = run(settings, SimulationConfig(listeners=6, rate=20.0, duration_s=2.0, progress=False))
        assert report.failed == {} and report.socket_errors == {}
        assert report.received == report.matched == report.accepted > 10
        assert (report.unmatched, report.outstanding, report.note) == (0, 0, None)
        assert report.drain_s < 10.0  # stopped waiting once all had come
        lat = report.latency_ms
        assert lat["p50"] is not None and lat["max"] is not None and 0 < lat["p50"] <= lat["max"] < 10_000
        reached = {e.user_id for _, e in check_topic(topics, report, earlier=accepted_before)}
        assert report.listeners_reached == len(reached)
    finally:
        stop.set()
        if echoing.is_alive():
            echoing.join(timeout=10)
        gateway.terminate()
        try:
            gateway.wait(timeout=20)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=10)


def wait_ready(base: str, proc: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and log is not None and proc.poll() is not None:
            pytest.fail(f"the gateway exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=3, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    output = log.read_text(errors="replace")[-3000:] if log is not None else ""
    pytest.fail(f"the gateway was not ready in {READY_TIMEOUT_S:.0f} s:\n{output}")


@pytest.mark.stack
@pytest.mark.parametrize("plays_via", ["ws", "http"])
def test_plays_over_the_socket_or_http_to_an_in_process_gateway_are_all_accepted(
    topics: Settings, db: Db, plays_via: str
) -> None:
    """The gateway app on a real uvicorn in this process (Kafka and FerretDB real): every play
    sent as a frame on the listener's own socket (or POSTed) is acknowledged, lands once on the
    topic, keyed by its listener, and each listener's plays keep their order."""
    db.tracks.insert_many(catalogue_docs())
    settings = topics.model_copy(update={"token_secret": SecretStr("simulator-secret-of-at-least-32-chars")})
    with serve(create_app(settings)) as running:
        wait_ready(running.url, None, None)
        config = SimulationConfig(
            listeners=5,
            rate=25.0,
            duration_s=2.0,
            drain_s=0.2,
            url=running.url,
            plays_via="ws" if plays_via == "ws" else "http",
            progress=False,
        )
        report = run(settings, config)
        metrics = running.gateway.metrics
        frames = metrics.ws_frames["play"]
    assert report.plays_via == plays_via and f"plays over {plays_via}" in report.rows()[0][1]
    assert report.sockets == 5 and report.socket_errors == {}
    assert report.failed == {}
    assert report.sent == report.accepted == len(report.accepted_event_ids) == report.scheduled > 20
    assert metrics.plays_accepted == report.accepted
    assert frames == (report.accepted if plays_via == "ws" else 0)
    in_order(check_topic(topics, report))


def recommend_jazz(settings: Settings, stop: threading.Event) -> None:
    """A stand-in recommender: every play is answered with the same ten Jazz tracks (26-35)."""
    c = consumer(settings, settings.topic(PLAYS), group_id=None)
    p = producer(settings, linger_ms=0)
    items = [RecommendedTrack(track_id=t, score=1.0, reason="jazz") for t in range(26, 36)]
    try:
        while not stop.is_set():
            for records in c.poll(timeout_ms=100).values():
                for r in records:
                    e = decode(PlayEvent, r.value)
                    answer = Recommendation(
                        user_id=e.user_id, items=items, cause_event_id=e.event_id, cause_ts=e.ts
                    )
                    p.send(settings.topic(RECOMMENDATIONS), key=encode_key(e.user_id), value=encode(answer))
            p.flush()
    finally:
        c.close()
        p.close()


@pytest.mark.stack
def test_closed_loop_listeners_choose_from_what_they_were_pushed_and_the_gateway_counts_it(
    topics: Settings, db: Db
) -> None:
    """Each listener's next track comes from the list its socket was last pushed (source up_next)
    or from browsing its home genre (browse); every play says which, and the gateway's count of
    plays from Up next is the simulator's."""
    db.tracks.insert_many(catalogue_docs())
    settings = topics.model_copy(update={"token_secret": SecretStr("simulator-secret-of-at-least-32-chars")})
    stop = threading.Event()
    pushing = threading.Thread(target=recommend_jazz, args=(topics, stop), daemon=True)
    pushing.start()
    try:
        with serve(create_app(settings)) as running:
            wait_ready(running.url, None, None)
            config = SimulationConfig(
                listeners=4, rate=30.0, duration_s=4.0, drain_s=1.0, url=running.url, progress=False, seed=5
            )
            report = run(settings, config)
            by = dict(running.gateway.metrics.plays_by)
    finally:
        stop.set()
        pushing.join(timeout=10)
    assert report.listening == "closed" and report.failed == {}
    started = report.choices["started"]
    assert started.get("up_next", 0) > 0 and started.get("browse", 0) > 0, report.choices
    assert by[("play", "up_next")] == started["up_next"] and by[("play", "browse")] == started["browse"]
    assert report.time_compression is not None and report.time_compression > 1
    assert any("Up next" in name for name, _ in report.rows())
    plays = check_topic(topics, report)
    in_order(plays)
    assert all(e.source is not None for _, e in plays)
    assert {e.track_id for _, e in plays if e.source and e.source.value == "up_next"} <= set(range(26, 36))


# --- pure helpers (no stack) ----------------------------------------------------------------------


def test_helpers_name_listeners_match_recommendations_and_summarise_latency() -> None:
    assert user_ids("abc", 2) == ["sim-abc-0", "sim-abc-1"]
    assert ws_url("http://h:8000/", "T") == "ws://h:8000/ws?token=T"
    assert ws_url("https://h", "T") == "wss://h/ws?token=T"
    assert ws_url("h:1", "T") == "ws://h:1/ws?token=T"
    arrivals = [Arrival("u", 10.25, "a"), Arrival("u", 11.0, None), Arrival("u", 12.0, "zzz")]
    latencies, unmatched = match(arrivals, {"a": 10.0, "b": 10.5})
    assert latencies == [250.0] and unmatched == 2
    assert latency_summary([]) == {"p50": None, "p95": None, "p99": None, "max": None}
    lat = latency_summary([float(i) for i in range(1, 101)])
    assert lat["p50"] == pytest.approx(50.5) and lat["max"] == 100.0
    assert lat["p99"] is not None and 99 <= lat["p99"] <= 100
    for bad in (
        {"listeners": 0},
        {"rate": 0.0},
        {"duration_s": -1.0},
        {"via": "carrier-pigeon"},
        {"plays_via": "fax"},
    ):
        with pytest.raises(ValueError):
            SimulationConfig(**bad)
    assert SimulationConfig().plays_path == "ws"
    assert SimulationConfig(plays_via="http").plays_path == "http"
    assert SimulationConfig(sockets=False).plays_path == "http"  # no socket to send on
    assert SimulationConfig(via="kafka").plays_path == "kafka"


def test_the_cli_refuses_plays_over_sockets_it_was_told_not_to_open() -> None:
    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands: "simulate" stays a subcommand
    refused = CliRunner().invoke(app, ["simulate", "--plays-via", "ws", "--no-sockets"])
    assert refused.exit_code == 2 and "--no-sockets" in refused.output
    refused = CliRunner().invoke(app, ["simulate", "--via", "kafka", "--plays-via", "http"])
    assert refused.exit_code == 2 and "--via gateway" in refused.output
    assert "--plays-via" in CliRunner().invoke(app, ["simulate", "--help"]).output
