"""Property tests: no route of the gateway answers 500, or lets an exception escape, whatever it is sent.

Every route of :mod:`gateway.routes` (the table :data:`ROUTES`, plus ``/ws``) gets
:data:`EXAMPLES` hypothesis examples of hostile methods, path segments, query strings,
headers, credentials and bodies: Unicode digits, huge numbers, NUL bytes, invalid
percent escapes, invalid UTF-8, deeply nested JSON, bodies over the size limit, huge
headers, forged/expired/malformed tokens, bad ``Range`` and conditional headers.

The app is ``create_app(settings, start_feed=False)`` behind Starlette's TestClient,
which re-raises any exception the app lets escape (the test then fails with it), with
in-memory MongoDB and Kafka stand-ins (:mod:`tests.gateway.fakes`) so the catalogue,
plays and audio routes run their whole code path. Besides "never 500", each answer is
checked for what can be known from the request: a request without a valid token gets
401 from an authenticated route, one with a valid token never does, and each error
our routes answer (400, 401, 413, 422, 429, 503) is a JSON ``{"error": …}``. On ``/ws``,
after any frames (text, bytes, hostile ``play`` frames, deep or oversize JSON), the socket
is still open and has answered each play frame once, never with a 500.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from gateway.app import create_app
from gateway.hub import CLOSE_UNAUTHORIZED
from gateway.intake import Frame, read_frame
from gateway.routes.access import COOKIE, TOKEN_PROTOCOL, WS_PROTOCOL
from gateway.routes.params import MAX_BODY
from gateway.routes.ws import CLOSE_FORBIDDEN
from gateway.tokens import issue
from infra.settings import Settings
from tests.gateway import fakes

EXAMPLES = 1000
SECRET = "property-secret"
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
#: Statuses only our own handlers produce: each must come with a JSON ``{"error": …}`` body.
JSON_ERRORS = {400, 401, 403, 413, 422, 429, 503}
AUDIO = bytes(range(256)) * 8


@dataclass(frozen=True)
class Spec:
    """One route: its methods, path (``{}`` = the drawn path segment), query names, needs."""

    methods: tuple[str, ...]
    path: str
    query: tuple[str, ...] = ()
    authed: bool = True
    body: bool = False
    headers: tuple[str, ...] = ()
    statuses: frozenset[int] = field(default_factory=frozenset)  # allowed besides 4xx
    json_errors: bool = True  # its 4xx/503 are {"error": …} (not /readyz: its 503 lists checks)

    @property
    def name(self) -> str:
        return f"{'|'.join(self.methods)} {self.path}"


OK = frozenset({200})
#: Pages and static files are Starlette's FileResponse: ranges, validators, plain-text errors.
FILE = frozenset({200, 206, 304})
ROUTES = [
    Spec(("GET",), "/", authed=False, statuses=FILE, json_errors=False),
    Spec(("GET",), "/ops", authed=False, statuses=FILE, json_errors=False),
    Spec(("GET", "HEAD"), "/static/{}", authed=False, statuses=FILE, json_errors=False),
    Spec(("GET",), "/healthz", authed=False, statuses=OK),
    Spec(("GET",), "/readyz", authed=False, statuses=frozenset({200}), json_errors=False),
    Spec(("GET",), "/metrics", authed=False, statuses=OK),
    Spec(("GET",), "/api/ops", authed=False, statuses=OK),
    Spec(("GET",), "/api/config", authed=False, statuses=OK),
    Spec(("POST",), "/api/signin", authed=False, body=True, statuses=OK),
    Spec(("POST",), "/api/login", authed=False, body=True, statuses=OK),
    Spec(("POST",), "/api/session", statuses=OK),
    Spec(("DELETE",), "/api/session", authed=False, statuses=frozenset({204})),
    Spec(("GET",), "/api/me", statuses=OK),
    Spec(("GET",), "/api/me/recent", query=("limit",), statuses=OK),
    Spec(("GET",), "/api/tracks", query=("page", "per_page", "q", "genre", "artist"), statuses=OK),
    Spec(("GET",), "/api/tracks/{}", statuses=OK),
    Spec(("GET",), "/api/tracks/{}/similar", query=("limit",), statuses=OK),
    Spec(("GET",), "/api/genres", statuses=OK),
    Spec(("GET",), "/api/recommendations", statuses=OK),
    Spec(("POST",), "/api/plays", body=True, statuses=frozenset({202})),
    Spec(
        ("GET", "HEAD"),
        "/audio/{}",
        headers=(
            "range",
            "if-range",
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
        ),
        statuses=frozenset({200, 206, 304, 412, 416}),
    ),
]


# --- the app -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("property")
    (root / "audio").mkdir()
    (root / "audio" / "1.mp3").write_bytes(AUDIO)
    (root / "secret.txt").write_text("not audio")
    # No rate limit here: the plays route must be reached by every example, not answer 429.
    return Settings(
        data_dir=root, fma_dir=root / "audio", token_secret=SECRET, demo_signin=True, plays_burst=10**9
    )


@pytest.fixture(scope="module")
def client(app_settings: Settings) -> Iterator[TestClient]:
    app = create_app(app_settings, start_feed=False)
    gw = app.state.gateway
    gw.mongo = fakes.Mongo(
        [
            {"_id": 1, "title": "One", "genre_top": "Rock", "audio_path": "1.mp3", "cluster": 0},
            {"_id": 2, "title": "Gone", "audio_path": "2.mp3"},  # no such file
            {"_id": 3, "title": "Escape", "audio_path": "../secret.txt"},
            {"_id": 4, "title": "No audio", "genres": [1, 2]},
        ]
    )
    # Plays in the history of one of the drawn listeners: /api/me/recent reads and joins them.
    gw.mongo.db["plays"].insert_many(
        [
            {
                "_id": f"e{i}",
                "user_id": "alice",
                "track_id": tid,
                "kind": kind,
                "ts": datetime(2024, 1, 1, 0, i),
            }
            for i, (tid, kind) in enumerate([(1, "play"), (4, "play"), (9, "play"), (1, "skip"), (1, "play")])
        ]
    )
    gw.producer = fakes.Producer()
    # Lag is read from the broker every few seconds; there is none here (it would wait for
    # a broker on every /metrics and /api/ops example), so the reading is never due.
    gw.lag_read = math.inf
    with TestClient(app) as c:  # raise_server_exceptions: anything escaping fails the test
        yield c


def token(user: str, *, ttl: int = 3600, now: float | None = None, secret: str = SECRET) -> str:
    return issue(secret, user, now=time.time() if now is None else now, ttl_s=ttl)


# --- hostile values ------------------------------------------------------------------------------

USERS = st.sampled_from(["alice", "bob", "0", "a.b@c-d_e", "Z" * 128, "sim-s1-7", "_", "x.y"])
UNICODE_DIGITS = st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=12)
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    UNICODE_DIGITS,
    st.sampled_from(["²", "١٢", "１２", "⁵", "0", "-0", "+1", "1e9", "1.5", "NaN", "inf", "9" * 5000, " 1"]),
)
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", '{"$ne": null}', "$where", ".*", "\\", "%", "ÿ", "\u202e", "😀" * 50]),
    st.just("x" * 2_000),  # long; the 64 KiB values are headers (httpx refuses URLs over 64 KiB)
)
VALUES = st.one_of(NUMBERS, TEXT)
#: A query value as sent: percent-encoded text, or raw escapes that are not UTF-8 or not escapes.
QUERY_VALUES = st.one_of(
    VALUES.map(lambda v: quote(v, safe="")),
    st.sampled_from(["%FF", "%FE%FF", "%00", "%C0%AF", "%", "%G1", "%E2%82", "a%2", "+", "%2B"]),
)
SEGMENTS = st.one_of(
    st.sampled_from(["1", "2", "3", "4", "5", "0", "-1", "01", "9007199254740992", "1e3", "player.js"]),
    NUMBERS.map(lambda v: quote(v, safe="")),
    st.sampled_from(
        ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%00", "%FF", "a%00.js", "..%5Csecret.txt", "ops.js"]
    ),
    st.text(min_size=1, max_size=30).map(lambda v: quote(v, safe="")),
)


def as_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


HEADER_VALUES = st.one_of(
    VALUES.map(as_bytes),
    st.binary(max_size=60),
    st.sampled_from(
        [
            b"bytes=0-9",
            b"bytes=-5",
            b"bytes=100-",
            b"bytes=9-1",
            b"bytes=0-0,5-9",
            b"bytes=99999999999999999999999-",
            b"bytes=\xc2\xb2-\xc2\xb3",
            b"bytes=",
            b"items=0-1",
            b"bytes=0-9" * 200,
            b'"abc"',
            b'W/"x", *',
            b"*",
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            b"Sunday, 06-Nov-94 08:49:37 GMT",
            b"Sun Feb 30 08:49:37 1994",
            b"\x00\r\n",
        ]
    ),
    st.just(b"a" * 65_536),
)
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False), TEXT
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
REPORTS = st.fixed_dictionaries(
    {"track_id": st.one_of(st.sampled_from([1, 2, 4, 5]), JSON_LEAVES, NUMBERS)},
    optional={
        "kind": st.one_of(st.sampled_from(["play", "skip", "complete", "like", "rewind"]), JSON_LEAVES),
        "position_s": st.one_of(st.floats(), st.integers(-(10**30), 10**30), JSON_LEAVES),
        "event_id": st.one_of(st.uuids().map(str), TEXT),
        "name": st.one_of(USERS, TEXT),
        "user_id": USERS,
    },
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    REPORTS.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.integers(1, 20_000).map(lambda n: b"[" * n),
    st.integers(1, 4_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(1, 200).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from(
        [
            b"",
            b"1" * 5000,
            b'{"track_id": ' + b"9" * 5000 + b', "kind": "play"}',
            b'{"track_id": 1e999, "kind": "play"}',
            b'{"track_id": 1, "kind": "play", "position_s": NaN}',
            b'{"name": "\xff\xfe"}',
            b'{"name": "a\x00b"}',
            json.dumps({"name": "alice"}).encode("utf-16"),
            b"\xef\xbb\xbf" + b'{"name": "bob"}',
        ]
    ),
    st.integers(1, 4096).map(lambda n: b'{"name": "x"}'.ljust(MAX_BODY + n)),
)
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])


@dataclass
class Credential:
    """How the request carries a token, and whether that token is valid."""

    valid: bool
    headers: dict[str, bytes] = field(default_factory=dict)
    query: str = ""
    subprotocols: list[str] = field(default_factory=list)


_GOOD = token("mallory")
#: Tokens that must be refused: empty, forged, expired, another secret's, malformed, huge.
BAD_TOKENS = st.one_of(
    st.sampled_from(
        [
            "",
            _GOOD[:-2] + ("xx" if not _GOOD.endswith("xx") else "yy"),  # forged
            token("mallory", ttl=1, now=1_000_000.0),  # expired long ago
            token("mallory", secret="another-secret"),
            _GOOD + "." + _GOOD,
            "a" * 5000,
            _GOOD.replace(".", "²", 1),
            _GOOD.replace(".", "\x00", 1),
        ]
    ),
    TEXT.filter(lambda t: "\r" not in t and "\n" not in t),
)


@st.composite
def credentials(draw: st.DrawFn, *, websocket: bool = False) -> Credential:
    valid = draw(st.booleans())
    value = token(draw(USERS)) if valid else draw(BAD_TOKENS)
    places = ["bearer", "cookie", "query", "none"] + (["subprotocol"] if websocket else [])
    place = draw(st.sampled_from(places))
    if place == "none":
        return Credential(valid=False)
    if place == "bearer":
        scheme = draw(st.sampled_from(["Bearer ", "bearer ", "BEARER  "]))
        return Credential(valid, headers={"authorization": as_bytes(scheme + value)})
    if place == "cookie":
        return Credential(valid, headers={"cookie": as_bytes(f"{COOKIE}={value}")})
    if place == "query":
        return Credential(valid, query=f"token={quote(value, safe='')}")
    printable = "".join(c for c in value if "!" <= c <= "~" and c != ",")  # what a subprotocol can hold
    return Credential(valid, subprotocols=[WS_PROTOCOL, TOKEN_PROTOCOL + printable])


@st.composite
def query_strings(draw: st.DrawFn, names: tuple[str, ...]) -> str:
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from([*names, "x", "page", "limit", "%FF", "a%00b", ""]), QUERY_VALUES),
            max_size=3,
        )
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


@st.composite
def extra_headers(draw: st.DrawFn, names: tuple[str, ...]) -> dict[str, bytes]:
    all_names = [*names, "content-type", "content-length", "accept", "x-forwarded-for", "x-junk", "range"]
    return draw(st.dictionaries(st.sampled_from(all_names), HEADER_VALUES, max_size=3))


# --- the properties ------------------------------------------------------------------------------


def check_answer(spec: Spec, method: str, cred: Credential, response: Any) -> None:
    status = response.status_code
    assert status != 500 and status < 600, (status, response.text[:300])
    is_json = response.headers.get("content-type", "").startswith("application/json")
    if method not in spec.methods and method != "HEAD":
        return  # another route of the path, or Starlette's 405
    answer = response.json() if is_json and method != "HEAD" else None
    if status in JSON_ERRORS and spec.json_errors:
        assert is_json, (status, response.text[:300])
        assert method == "HEAD" or isinstance(answer.get("error"), str), (status, response.text[:300])
    if spec.path == "/readyz":
        assert status in (200, 503) and (answer is None or "checks" in answer)
    elif status < 400:
        assert status in spec.statuses, (status, response.text[:300])
    routed = status not in (404, 405) or is_json  # Starlette's own 404/405 are plain text
    if spec.authed and method in spec.methods and routed:
        if cred.valid:
            assert status != 401, response.text[:300]
        else:
            assert status == 401, (status, response.text[:300])


@pytest.mark.parametrize("spec", ROUTES, ids=lambda s: s.name)
@PROPERTY
@given(data=st.data())
def test_no_route_answers_500_whatever_it_is_sent(
    client: TestClient, spec: Spec, data: st.DataObject
) -> None:
    method = data.draw(st.one_of(st.sampled_from(spec.methods), METHODS), label="method")
    segment = data.draw(SEGMENTS, label="segment")
    path = spec.path.format(segment)
    cred = data.draw(credentials(), label="credential")
    query = "&".join(q for q in (data.draw(query_strings(spec.query), label="query"), cred.query) if q)
    headers = {**data.draw(extra_headers(spec.headers), label="headers"), **cred.headers}
    body = data.draw(BODIES, label="body") if spec.body or method in ("POST", "PUT", "PATCH") else None
    client.cookies.clear()
    response = client.request(method, f"{path}?{query}" if query else path, headers=headers, content=body)
    check_answer(spec, method, cred, response)


def test_the_route_table_names_every_route(client: TestClient) -> None:
    """The table above covers every HTTP route the app serves (and the property test of
    ``/ws`` below covers the websocket): a new route must be added to it."""
    served = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        methods = getattr(route, "methods", None)
        path = route.path.replace("{track_id}", "{}").replace("/static", "/static/{}")
        if methods is None:
            served.add(("WS" if path == "/ws" else "GET", path))
            continue
        served |= {(m, path) for m in methods if m != "HEAD"}
    covered = {(m, s.path) for s in ROUTES for m in s.methods if m != "HEAD"} | {("WS", "/ws")}
    assert served == covered


#: What a browser may send on /ws: ``play`` frames with hostile refs and data (plays are
#: published, or answered with a play_error), other objects, any text, any bytes.
PLAY_FRAMES = st.fixed_dictionaries(
    {"type": st.just("play")},
    optional={
        "ref": st.one_of(JSON_LEAVES, st.text(max_size=70), st.just([1]), st.just({"$ne": 1})),
        "data": st.one_of(REPORTS, JSON),
        "user_id": USERS,
    },
).map(lambda v: json.dumps(v, allow_nan=True))
WS_MESSAGES = st.lists(
    st.one_of(
        TEXT.map(lambda t: ("text", t)),
        st.text(max_size=300).map(lambda t: ("text", t)),
        PLAY_FRAMES.map(lambda t: ("text", t)),
        JSON.map(lambda v: ("text", json.dumps(v))),
        st.binary(max_size=100).map(lambda b: ("bytes", b)),
        PLAY_FRAMES.map(lambda t: ("bytes", t.encode())),
        st.integers(1, 6_000).map(lambda n: ("text", '{"type": "play", "data": ' + "[" * n + "]" * n + "}")),
        st.sampled_from(
            [
                ("text", "[" * 20_000),
                ("text", '{"type": "pong", "ts": 1e999}'),
                ("bytes", b"\xff"),
                ("text", '{"type": "play", "ref": "r", "data": {"track_id": 1, "kind": "play"}}'),
                ("text", '{"type": "play", "ref": 1e999, "data": {"track_id": 1, "kind": "play"}}'),
                (
                    "text",
                    '{"type": "play", "ref": "big", "data": {"track_id": 1, "kind": "play", "p": "'
                    + "x" * 5000
                    + '"}}',
                ),
                ("text", '{"type": "play", "ref": ' + "9" * 5000 + "}"),
            ]
        ),
    ),
    max_size=4,
)


@PROPERTY
@given(data=st.data())
def test_the_websocket_never_fails_whatever_it_is_sent(client: TestClient, data: st.DataObject) -> None:
    cred = data.draw(credentials(websocket=True), label="credential")
    junk = data.draw(
        st.lists(
            st.text(st.characters(codec="ascii", exclude_characters=",\r\n"), max_size=30).filter(
                lambda p: not p.strip().startswith(TOKEN_PROTOCOL)
            ),
            max_size=3,
        ),
        label="subprotocols",
    )
    protocols = cred.subprotocols + junk
    query = "&".join(q for q in (data.draw(query_strings(("token",)), label="query"), cred.query) if q)
    if not cred.query and "token=" in query:  # a drawn ?token= could be a valid one: keep the oracle exact
        query = ""
    headers = {
        **data.draw(extra_headers(("origin", "sec-websocket-extensions")), label="headers"),
        **cred.headers,
    }
    messages = data.draw(WS_MESSAGES, label="messages")
    client.cookies.clear()
    url = f"/ws?{query}" if query else "/ws"
    # The session cookie is taken only from the gateway's own pages (Origin: this host).
    cross_site = "cookie" in cred.headers and headers.get("origin") != b"http://testserver"
    with client.websocket_connect(url, subprotocols=protocols or None, headers=headers) as ws:
        if not cred.valid or cross_site:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == (CLOSE_UNAUTHORIZED if not cred.valid else CLOSE_FORBIDDEN)
            return
        hello = json.loads(ws.receive_text())
        assert hello["type"] == "hello"
        if WS_PROTOCOL in protocols:
            assert ws.accepted_subprotocol == WS_PROTOCOL  # type: ignore[attr-defined]
        for kind, payload in messages:
            if kind == "text":
                ws.send_text(payload)
            else:
                ws.send_bytes(payload)
        # Still open and in order: each play frame got one answer (none a 500), then this one's.
        plays = sum(kind == "text" and isinstance(read_frame(text), Frame) for kind, text in messages)
        ws.send_text(json.dumps({"type": "play", "ref": "last", "data": {"track_id": 1, "kind": "like"}}))
        answers: list[dict[str, Any]] = []
        while not answers or answers[-1].get("ref") != "last" or answers[-1]["type"] != "play_ack":
            answer = json.loads(ws.receive_text())
            if answer["type"] in ("play_ack", "play_error"):
                assert answer.get("status") != 500, answer
                answers.append(answer)
        assert len(answers) == plays + 1, answers


def test_the_property_app_serves_audio(client: TestClient) -> None:
    """The fixture's app is a working gateway (so the properties above test real paths)."""
    h = {"Authorization": f"Bearer {token('alice')}"}
    assert client.get("/audio/1", headers={**h, "Range": "bytes=0-9"}).content == AUDIO[:10]
    assert client.get("/api/tracks/1", headers=h).json()["title"] == "One"
    recent = client.get("/api/me/recent", headers=h).json()  # track 9 is not in the catalogue
    assert [(t["track_id"], t["played_at"]) for t in recent["items"]] == [
        (1, "2024-01-01T00:04:00+00:00"),
        (4, "2024-01-01T00:01:00+00:00"),
    ]
    assert client.post("/api/plays", json={"track_id": 1, "kind": "play"}, headers=h).status_code == 202
    for missing in ("/audio/2", "/audio/3", "/audio/4", "/audio/5"):
        assert client.get(missing, headers=h).status_code == 404
