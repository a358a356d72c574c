"""Listener accounts: hashing, `cadenza user` on the real MongoDB, password sign-in with its
lockouts shared by gateways, the Secure cookie, the Origin check, revocations reaching every
gateway (and open websockets) within 5 s, and the player's password sign-in in chromium."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pymongo.database import Database
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from gateway import lockout, passwords
from gateway.accounts import AccountError, Accounts
from gateway.app import create_app
from gateway.hub import Hub
from gateway.revocations import Revocations, Standing, newly_refused
from gateway.routes.access import COOKIE, TOKEN_PROTOCOL, WS_PROTOCOL
from gateway.tokens import issue, verify
from infra.prometheus import parse_metrics
from infra.settings import Settings
from schemas.tokens import _b64, _sign
from tests.gateway.conftest import token_for
from tests.gateway.live_server import serve

Db = Database[dict[str, Any]]
PASSWORD = "correct horse battery"
CHROMIUM = Path("/usr/bin/chromium")


# --- pure: hashing, lockout arithmetic, standing --------------------------------------------------


def test_passwords_are_argon2id_and_checked_in_constant_shape() -> None:
    stored = passwords.hash_password(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert passwords.verify(stored, PASSWORD)
    assert not passwords.verify(stored, PASSWORD + "!")
    assert not passwords.verify(None, PASSWORD)  # no account: a stand-in hash is checked, never a match
    assert not passwords.verify("not a hash", PASSWORD)
    assert not passwords.needs_rehash(stored)
    for bad in ("short", "x" * (passwords.MAX_PASSWORD_CHARS + 1)):
        with pytest.raises(ValueError, match="password has at"):
            passwords.hash_password(bad)


def test_lockout_needs_max_failures_within_the_window() -> None:
    kw = {"max_failures": 3, "window_s": 60.0, "lockout_s": 100.0}
    assert lockout.locked_until([], **kw) is None
    assert lockout.locked_until([0.0, 10.0], **kw) is None
    assert lockout.locked_until([0.0, 10.0, 20.0], **kw) == 120.0
    assert lockout.locked_until([0.0, 50.0, 100.0], **kw) is None  # never 3 within 60 s
    assert lockout.locked_until([0.0, 50.0, 55.0, 100.0], **kw) == 200.0  # the latest lockout wins
    limits = lockout.Limits(max_failures=3, max_per_address=5, window_s=60.0, lockout_s=100.0)
    name, address = lockout.account_key("a"), lockout.address_key("1.2.3.4")
    assert limits.refusal({name: [0.0, 1.0, 2.0]}, "a", "1.2.3.4", now=50.0) == ("locked", 52.0)
    assert limits.refusal({name: [0.0, 1.0, 2.0]}, "a", "1.2.3.4", now=103.0) is None
    assert limits.refusal({address: [0.0, 1, 2, 3, 4]}, "b", "1.2.3.4", now=10.0) == ("rate", 94.0)


def test_tokens_carry_a_precise_issue_time_and_old_ones_still_verify() -> None:
    secret = "s" * 40
    claims = verify(secret, issue(secret, "ann", now=1000.25, ttl_s=60), now=1001)
    assert (claims.issued, claims.issued_ms, claims.issued_at) == (1000, 1000250, 1000.25)
    # a token of the format before iat_ms: still valid, issued at its whole second
    payload = _b64(json.dumps({"sub": "ann", "iat": 1000, "exp": 2000, "v": 1}).encode())
    old = verify(secret, f"{payload}.{_sign(secret.encode(), payload)}", now=1001)
    assert (old.user_id, old.issued_ms, old.issued_at) == ("ann", None, 1000.0)


def test_standing_refuses_disabled_accounts_and_tokens_issued_before_a_revocation() -> None:
    hub = Hub(4)
    revocations = Revocations(hub, 1.0)
    secret = "s" * 40

    def claims(user: str, at: float) -> Any:
        return verify(secret, issue(secret, user, now=at, ttl_s=600), now=at)

    revocations.standing["ann"] = Standing(valid_after=100.0)
    revocations.standing["bob"] = Standing(valid_after=100.0, disabled=True)
    revocations.standing["cid"] = Standing(valid_after=100.0, disabled=True, deleted=True)
    assert revocations.refusal(claims("nobody", 50.0)) is None  # no account: accepted
    assert revocations.refusal(claims("ann", 100.5)) is None
    assert "revoked" in (revocations.refusal(claims("ann", 99.5)) or "")
    assert "disabled" in (revocations.refusal(claims("bob", 150.0)) or "")
    assert "revoked" in (revocations.refusal(claims("cid", 99.0)) or "")
    assert revocations.refusal(claims("cid", 101.0)) is None  # a deleted name's later tokens
    assert revocations.has_account("ann") and not revocations.has_account("cid")
    assert newly_refused(None, Standing(10.0)) == (True, 10.0)
    assert newly_refused(Standing(10.0), Standing(10.0, disabled=True)) == (True, None)
    assert newly_refused(Standing(10.0, disabled=True), Standing(10.0)) == (False, None)  # enabled
    # the hub closes exactly the sockets opened with a token issued before the revocation
    old, new = hub.connect("ann", 50.0), hub.connect("ann", 150.0)
    assert revocations.apply([{"_id": "ann", "tokens_valid_after": datetime.fromtimestamp(120, UTC)}]) == 1
    assert old.closing == 4401 and new.closing is None


# --- component: Secure cookie, Origin check, metrics (no MongoDB) ---------------------------------


def test_the_cookie_is_secure_when_the_gateway_is_served_over_https(component_settings: Settings) -> None:
    plain = TestClient(create_app(component_settings, start_feed=False))
    with plain:
        cookie = plain.post("/api/signin", json={"name": "ann"}).headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    https = component_settings.model_copy(update={"gateway_https": True})
    with TestClient(create_app(https, start_feed=False), base_url="https://testserver") as client:
        signed = client.post("/api/signin", json={"name": "ann"})
        assert "Secure" in signed.headers["set-cookie"] and "HttpOnly" in signed.headers["set-cookie"]
        bearer = {"Authorization": f"Bearer {signed.json()['token']}"}
        assert "Secure" in client.post("/api/session", headers=bearer).headers["set-cookie"]
        assert "Secure" in client.delete("/api/session").headers["set-cookie"]


def test_cookie_authenticated_changes_need_the_gateways_own_origin(
    component: TestClient, component_settings: Settings
) -> None:
    token = token_for("ann", component_settings)
    cookie = {"Cookie": f"{COOKIE}={token}"}
    for headers in ({}, {"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"}):
        r = component.post("/api/session", headers={**cookie, **headers})
        assert r.status_code == 403 and "another site" in r.json()["error"], (headers, r.text)
        r = component.post("/api/plays", json={"track_id": 1, "kind": "play"}, headers={**cookie, **headers})
        assert r.status_code == 403, r.text
    for headers in ({"Origin": "http://testserver"}, {"Referer": "http://testserver/"}):
        assert component.post("/api/session", headers={**cookie, **headers}).status_code == 200
    assert component.get("/api/me", headers=cookie).status_code == 200  # reading needs no Origin
    bearer = {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}
    assert component.post("/api/session", headers=bearer).status_code == 200  # a header is no CSRF
    assert component.post("/api/signin", json={"name": "ann"}, headers=bearer).status_code == 403
    # websockets: the cookie from another site's page is refused (4403); the player's own is fine
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        component.websocket_connect("/ws", headers={**cookie, "Origin": "https://evil.example"}) as ws,
    ):
        ws.receive_json()
    assert refused.value.code == 4403
    with component.websocket_connect("/ws", headers={**cookie, "Origin": "http://testserver"}) as ws:
        assert ws.receive_json() == {"type": "hello", "user_id": "ann"}


def test_allowed_origins_admit_a_proxy_address(component_settings: Settings) -> None:
    settings = component_settings.model_copy(update={"gateway_allowed_origins": ["https://music.example"]})
    with TestClient(create_app(settings, start_feed=False)) as client:
        cookie = {"Cookie": f"{COOKIE}={token_for('ann', settings)}"}
        ok = client.post("/api/session", headers={**cookie, "Origin": "https://music.example"})
        assert ok.status_code == 200
        assert (
            client.post("/api/session", headers={**cookie, "Origin": "http://music.example"}).status_code
            == 403
        )


def test_signin_results_are_exported_from_zero(component: TestClient) -> None:
    found = parse_metrics(component.get("/metrics").text)
    for result in ("ok", "bad_credentials", "locked", "rate", "disabled"):
        assert found[f'cadenza_gateway_signins_total{{result="{result}"}}'] == 0
    assert component.get("/api/config").json()["password_signin"] is True
    assert component.post("/api/login", json={"name": "ann", "password": "x" * 10}).status_code == 503


# --- the real MongoDB: the store and the CLI -------------------------------------------------------


def cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CADENZA_MONGODB_URI": settings.mongo_uri,
        "CADENZA_MONGODB_DB": settings.mongodb_db,
        "CADENZA_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "infra", "user", *args],
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.stack
def test_user_commands_on_the_real_database(settings: Settings, db: Db) -> None:
    added = cli(settings, "add", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert cli(settings, "add", "bob", "--admin", "--password-stdin", stdin="longenough\n").returncode == 0
    again = cli(settings, "add", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "already has an account" in again.stderr and "passwd" in again.stderr
    short = cli(settings, "add", "cid", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    no_tty = cli(settings, "add", "cid")  # no terminal, no --password-stdin: never a password argument
    assert no_tty.returncode == 1 and "--password-stdin" in no_tty.stderr
    doc = db.accounts.find_one({"_id": "ann"})
    assert doc is not None and doc["password_hash"].startswith("$argon2id$") and doc["role"] == "listener"
    assert PASSWORD not in json.dumps(doc, default=str)

    table = cli(settings, "list")
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if "ann" in line or "bob" in line]
    assert len(rows) == 2 and "admin" in rows[1] and "listener" in rows[0]

    before = db.accounts.find_one({"_id": "ann"})
    assert cli(settings, "passwd", "ann", "--password-stdin", stdin="a new password\n").returncode == 0
    after = db.accounts.find_one({"_id": "ann"})
    assert before is not None and after is not None
    assert after["password_hash"] != before["password_hash"]
    assert after["tokens_valid_after"] > before["tokens_valid_after"]
    assert passwords.verify(after["password_hash"], "a new password")

    assert cli(settings, "disable", "bob").returncode == 0
    assert "yes" in next(line for line in cli(settings, "list").stdout.splitlines() if "bob" in line)
    assert cli(settings, "enable", "bob").returncode == 0
    assert (db.accounts.find_one({"_id": "bob"}) or {})["disabled"] is False
    missing = cli(settings, "disable", "nobody")
    assert missing.returncode == 1 and "no account nobody" in missing.stderr and "user list" in missing.stderr

    # delete: the account, the listener's plays, profile and sessions; nobody else's
    now = datetime.now(UTC)
    for user in ("ann", "bob"):
        db.plays.insert_many(
            [
                {"_id": f"{user}-{i}", "user_id": user, "track_id": i, "kind": "play", "ts": now}
                for i in range(3)
            ]
        )
        db.users.insert_one({"_id": user, "totals": {"play": 3}})
        db.sessions.insert_one(
            {"_id": f"{user}:{now.isoformat()}", "user_id": user, "start": now, "end": now}
        )
    unconfirmed = cli(settings, "delete", "ann")
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    deleted = cli(settings, "delete", "ann", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "3 plays" in deleted.stdout.replace("\n", " ")
    assert (
        db.plays.count_documents({"user_id": "ann"}) == 0
        and db.plays.count_documents({"user_id": "bob"}) == 3
    )
    assert db.users.find_one({"_id": "ann"}) is None and db.users.find_one({"_id": "bob"}) is not None
    assert db.sessions.count_documents({"user_id": "ann"}) == 0
    assert db.sessions.count_documents({"user_id": "bob"}) == 1
    tomb = db.accounts.find_one({"_id": "ann"})  # the revocation left behind: no password
    assert tomb is not None and tomb["deleted"] is True and "password_hash" not in tomb
    assert "ann" not in cli(settings, "list").stdout
    assert cli(settings, "add", "ann", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0  # again


@pytest.mark.stack
def test_the_store_refuses_what_it_cannot_do(db: Db) -> None:
    store = Accounts(db, time.time)
    with pytest.raises(AccountError, match="letters, digits"):
        store.add("no spaces", PASSWORD)
    with pytest.raises(AccountError, match="no account"):
        store.passwd("ghost", PASSWORD)
    with pytest.raises(AccountError, match="no account"):
        store.delete("ghost")


# --- the real stack: sign-in, lockouts, revocations ----------------------------------------------


@pytest.fixture
def gw_settings(topics: Settings) -> Settings:
    return topics.model_copy(
        update={
            "token_secret": SecretStr("accounts-test-secret-0123456789abcdef"),
            "demo_signin": True,
            "password_signin": True,
            "signin_max_failures": 3,
            "signin_max_failures_per_address": 50,
            "signin_window_s": 60.0,
            "signin_lockout_s": 120.0,
            "accounts_poll_s": 0.5,
            "gateway_replay_s": 0.0,
        }
    )


@contextmanager
def gateway(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as client:
        assert app.state.gateway.revocations.loaded  # read before the first request
        yield client


def login(client: TestClient | httpx.Client, name: str, password: str) -> httpx.Response:
    return client.post("/api/login", json={"name": name, "password": password})


def eventually(check: Any, timeout: float = 5.0) -> float:
    """Seconds until ``check()`` is true (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.stack
def test_password_signin_ok_wrong_and_unknown(gw_settings: Settings, db: Db) -> None:
    Accounts(db, time.time).add("ann", PASSWORD, role="admin")
    with gateway(gw_settings) as client:
        ok = login(client, "ann", PASSWORD)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["user_id"] == "ann" and body["role"] == "admin" and body["token"]
        cookie = ok.headers["set-cookie"]
        assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie
        me = client.get("/api/me", headers={"Authorization": f"Bearer {body['token']}"}).json()
        assert me == {"user_id": "ann", "expires": body["expires"], "role": "admin"}

        wrong, unknown = login(client, "ann", "not the password"), login(client, "nobody-here", PASSWORD)
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json() == {"error": "wrong name or password"}
        assert login(client, "bad name!", PASSWORD).json() == {"error": "wrong name or password"}
        assert login(client, "ann", "").status_code == 422
        # demo sign-in never hands out a name that has an account
        taken = client.post("/api/signin", json={"name": "ann"})
        assert taken.status_code == 403 and "password" in taken.json()["error"]
        assert client.post("/api/signin", json={"name": "newcomer"}).status_code == 200

        # a wrong name costs about what a wrong password does (argon2 runs either way)
        def took(name: str) -> float:
            started = time.perf_counter()
            assert login(client, name, f"guess-{uuid.uuid4().hex[:6]}").status_code == 401
            return time.perf_counter() - started

        Accounts(db, time.time).add("bea", PASSWORD)
        known = statistics.median(took("bea") for _ in range(2))
        ghost = statistics.median(took(f"ghost{i}") for i in range(2))
        assert ghost > 0.4 * known, (ghost, known)
        found = parse_metrics(client.get("/metrics").text)
        assert found['cadenza_gateway_signins_total{result="ok"}'] == 1
        assert found['cadenza_gateway_signins_total{result="bad_credentials"}'] >= 7


@pytest.mark.stack
def test_lockout_is_shared_by_gateways_and_says_when_to_retry(gw_settings: Settings, db: Db) -> None:
    Accounts(db, time.time).add("ann", PASSWORD)
    with gateway(gw_settings) as one, gateway(gw_settings) as two:
        for client in (one, two, one):  # failures on either gateway count together
            assert login(client, "ann", "wrong password").status_code == 401
        for client in (two, one):
            locked = login(client, "ann", PASSWORD)  # even the right password, while locked
            assert locked.status_code == 429, locked.text
            assert 100 <= int(locked.headers["Retry-After"]) <= 120
            assert "try again in 2 minutes" in locked.json()["error"]
        assert login(one, "someone-else", "wrong password").status_code == 401  # others are not locked
        found = parse_metrics(two.get("/metrics").text)
        assert found['cadenza_gateway_signins_total{result="locked"}'] == 1
    # the lockout ends on time: moved into the past, the name signs in again (and is cleared)
    db.signin_failures.update_many({}, {"$set": {"at": datetime.fromtimestamp(time.time() - 200, UTC)}})
    with gateway(gw_settings) as client:
        assert login(client, "ann", PASSWORD).status_code == 200
        assert db.signin_failures.count_documents({"key": "account:ann"}) == 0


@pytest.mark.stack
def test_one_address_guessing_many_names_is_refused(gw_settings: Settings, db: Db) -> None:
    settings = gw_settings.model_copy(update={"signin_max_failures_per_address": 4})
    Accounts(db, time.time).add("ann", PASSWORD)
    with gateway(settings) as client:
        for i in range(4):
            assert login(client, f"name{i}", "wrong password").status_code == 401
        refused = login(client, "ann", PASSWORD)
        assert refused.status_code == 429 and "from your address" in refused.json()["error"]
        assert int(refused.headers["Retry-After"]) > 60
        found = parse_metrics(client.get("/metrics").text)
        assert found['cadenza_gateway_signins_total{result="rate"}'] == 1


@pytest.mark.stack
def test_a_disabled_account_is_refused_everywhere_and_its_websocket_closed(
    gw_settings: Settings, db: Db
) -> None:
    store = Accounts(db, time.time)
    store.add("ann", PASSWORD)
    store.add("bea", PASSWORD)
    with serve(create_app(gw_settings)) as one, serve(create_app(gw_settings)) as two:
        http = httpx.Client(base_url=one.url, timeout=10)
        other = httpx.Client(base_url=two.url, timeout=10)
        token = login(http, "ann", PASSWORD).json()["token"]
        bea = login(other, "bea", PASSWORD).json()["token"]
        legacy = token_for("tok-only", gw_settings)  # `cadenza token create`: no account
        bearer = {"Authorization": f"Bearer {token}"}
        assert other.get("/api/me", headers=bearer).status_code == 200
        url = f"ws://127.0.0.1:{two.port}/ws"
        with (
            ws_connect(url, subprotocols=[WS_PROTOCOL, TOKEN_PROTOCOL + token]) as ws,  # type: ignore[list-item]
            ws_connect(url, subprotocols=[WS_PROTOCOL, TOKEN_PROTOCOL + bea]) as ws_bea,  # type: ignore[list-item]
        ):
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
            assert json.loads(ws_bea.recv(timeout=5))["type"] == "hello"
            started = time.monotonic()
            store.set_disabled("ann", True)
            with pytest.raises(ConnectionClosed) as closed:
                while time.monotonic() - started < 6:
                    ws.recv(timeout=6)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            assert time.monotonic() - started < 5
            eventually(lambda: http.get("/api/me", headers=bearer).status_code == 401)
            eventually(lambda: other.get("/api/me", headers=bearer).status_code == 401)
            assert "disabled" in other.get("/api/me", headers=bearer).json()["error"]
            ws_bea.ping().wait(5)  # the others stay connected
        refused = login(http, "ann", PASSWORD)
        assert refused.status_code == 403 and "disabled" in refused.json()["error"]
        # enabled again: a new sign-in works, the token from before the disabling stays refused
        store.set_disabled("ann", False)
        eventually(lambda: login(http, "ann", PASSWORD).status_code == 200)
        assert other.get("/api/me", headers=bearer).status_code == 401
        # a new password revokes the tokens signed before it, on every gateway
        fresh = {"Authorization": f"Bearer {login(http, 'ann', PASSWORD).json()['token']}"}
        eventually(lambda: other.get("/api/me", headers=fresh).status_code == 200)  # once it saw the enable
        store.passwd("ann", "another password")
        eventually(lambda: other.get("/api/me", headers=fresh).status_code == 401)
        # names without an account keep working throughout
        assert other.get("/api/me", headers={"Authorization": f"Bearer {legacy}"}).status_code == 200
        http.close()
        other.close()


@pytest.mark.stack
def test_a_deleted_account_loses_its_tokens_and_data(gw_settings: Settings, db: Db) -> None:
    store = Accounts(db, time.time)
    store.add("ann", PASSWORD)
    db.plays.insert_one(
        {"_id": "p1", "user_id": "ann", "track_id": 1, "kind": "play", "ts": datetime.now(UTC)}
    )
    db.users.insert_one({"_id": "ann", "totals": {"play": 1}})
    with gateway(gw_settings) as client:
        bearer = {"Authorization": f"Bearer {login(client, 'ann', PASSWORD).json()['token']}"}
        assert client.get("/api/me", headers=bearer).status_code == 200
        removed = store.delete("ann")
        assert (removed.plays, removed.profiles) == (1, 1)
        eventually(lambda: client.get("/api/me", headers=bearer).status_code == 401)
        assert db.plays.count_documents({"user_id": "ann"}) == 0 and db.users.find_one({"_id": "ann"}) is None
        assert login(client, "ann", PASSWORD).status_code == 401
        # the name is free for the demo again (a new token, issued after the deletion)
        assert client.post("/api/signin", json={"name": "ann"}).status_code == 200
        assert client.get("/api/me", headers=bearer).status_code == 401  # the old token never comes back
        unknown = {"Authorization": f"Bearer {token_for('never-had-one', gw_settings)}"}
        assert client.get("/api/me", headers=unknown).status_code == 200


# --- the player in chromium ----------------------------------------------------------------------


@pytest.mark.stack
def test_the_player_signs_in_with_a_password(gw_settings: Settings, db: Db) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package); never downloaded")
    from playwright.sync_api import sync_playwright

    from tests.gateway.test_browser import CHROMIUM_ARGS

    settings = gw_settings.model_copy(update={"demo_signin": False})
    Accounts(db, time.time).add("ann", PASSWORD)
    errors: list[str] = []
    with serve(create_app(settings)) as running, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(running.url)
            page.locator("#signin-password").wait_for(state="visible")
            assert page.locator("#signin-nodemo").is_hidden()
            page.locator("#signin-name").fill("ann")
            page.locator("#signin-password").fill("not the password")
            page.locator("#signin-button").click()
            page.locator("#signin-error").wait_for(state="visible")
            assert page.locator("#signin-error").inner_text() == "Wrong name or password."
            page.locator("#signin-password").fill(PASSWORD)
            page.locator("#signin-button").click()
            page.locator("#app").wait_for(state="visible")
            assert page.locator("#user-name").inner_text() == "ann"
            page.locator("#conn-status[data-state=connected]").wait_for()
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.stack
def test_a_burst_of_guesses_at_once_is_held_to_the_lockout(gw_settings: Settings, db: Db) -> None:
    """Concurrent attempts queue for a hashing slot and read the failures again there, so a
    burst of 12 wrong passwords at once gets at most max_failures + slots - 1 checks (3 + 2 - 1),
    the rest 429; and a password that is not valid text is a 401, never a 500."""
    from concurrent.futures import ThreadPoolExecutor

    from gateway.signin import HASHING_AT_ONCE

    Accounts(db, time.time).add("ann", PASSWORD)
    with serve(create_app(gw_settings)) as running, httpx.Client(base_url=running.url, timeout=60) as client:
        lone = b'{"name": "ann", "password": "\\ud800 not text at all"}'  # JSON's escape of a lone surrogate
        assert (
            client.post("/api/login", content=lone, headers={"content-type": "application/json"}).status_code
            == 401
        )
        db.signin_failures.delete_many({})
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(lambda i: login(client, "ann", f"wrong {i}").status_code, range(12)))
    checked = codes.count(401)
    assert gw_settings.signin_max_failures <= checked <= gw_settings.signin_max_failures + HASHING_AT_ONCE - 1
    assert codes.count(429) == 12 - checked, codes


def test_a_password_with_a_lone_surrogate_is_refused_not_a_crash() -> None:
    assert passwords.verify(None, "\ud800abcdefgh") is False
    assert passwords.verify(passwords.hash_password("a good password"), "\udfffabcdefgh") is False
    with pytest.raises(ValueError, match="valid text"):
        passwords.check_password("\ud800abcdefgh")
