"""Audio streaming over a tiny Starlette app: ranges, validators, preconditions, HEAD, refusals.

Ranges, If-Range, ETag / Last-Modified, HEAD and 416 are Starlette's FileResponse, tested
here as the gateway serves them; 304 and 412, ignoring an unusable Range, stored-path
confinement and content types are gateway.audio's own. No stack needed.
"""

from __future__ import annotations

import gc
import os
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message

from gateway.audio import AUDIO_TYPES, DEFAULT_TYPE, audio_response, content_type, resolve_audio
from gateway.errors import NotFoundError

SIZE = 300_000
CHUNK_SIZE = FileResponse.chunk_size
MTIME_NS = 1_700_000_000_123_456_789
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"
EARLIER = formatdate(MTIME_NS // 10**9 - 3600, usegmt=True)
LATER = formatdate(MTIME_NS // 10**9 + 3600, usegmt=True)


@dataclass
class Library:
    base: Path
    root: Path
    song: Path
    data: bytes = field(repr=False)
    names: dict[str, str | None] = field(repr=False)
    client: TestClient = field(repr=False)
    etag: str = ""


def write(path: Path, data: bytes, mtime_ns: int = MTIME_NS) -> Path:
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    base = tmp_path_factory.mktemp("audio")
    root = base / "root"
    (root / "music").mkdir(parents=True)
    data = random.Random(20240611).randbytes(SIZE)
    song = write(root / "music" / "song.mp3", data)
    write(root / "empty.flac", b"")
    write(root / "blob", b"not audio")
    write(root / "Loud.OGG", b"OggS")
    write(root / "mutable.wav", b"first version")
    (root / "folder.mp3").mkdir()
    outside = write(base / "outside.mp3", b"secret bytes outside the root")
    (root / "link-out.mp3").symlink_to(outside)
    (root / "link-in.mp3").symlink_to(Path("music") / "song.mp3")
    (root / "loop.mp3").symlink_to(root / "loop.mp3")
    names: dict[str, str | None] = {
        "song": "music/song.mp3",
        "link-in": "link-in.mp3",
        "empty": "empty.flac",
        "blob": "blob",
        "ogg": "Loud.OGG",
        "mutable": "mutable.wav",
        "none": None,
        "blank": "",
        "dotdot": "../outside.mp3",
        "inner-dotdot": "music/../music/song.mp3",
        "absolute": str(outside),
        "link-out": "link-out.mp3",
        "loop": "loop.mp3",
        "folder": "folder.mp3",
        "missing": "music/missing.mp3",
    }

    async def audio(request: Request) -> Response:
        return await audio_response(request, resolve_audio(root, names[request.path_params["name"]]))

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=404)

    app = Starlette(
        routes=[
            Route("/audio/{name}", audio, methods=["GET", "HEAD"]),
            Route("/any/{name}", audio, methods=["GET", "HEAD", "POST", "PUT"]),
        ],
        exception_handlers={NotFoundError: not_found},
    )
    with TestClient(app) as client:
        library = Library(base, root, song, data, names, client)
        library.etag = client.get("/audio/song").headers["etag"]
        yield library


def get(library: Library, name: str = "song", method: str = "GET", **headers: str) -> Any:
    fields = {key.replace("_", "-"): value.format(etag=library.etag) for key, value in headers.items()}
    return library.client.request(method, f"/audio/{name}", headers=fields)


def byteranges(response: Any) -> list[tuple[int, int, bytes]]:
    """The parts of a ``multipart/byteranges`` body: (first, last, bytes) each, checking the framing."""
    media_type, _, boundary = response.headers["content-type"].partition("; boundary=")
    assert media_type == "multipart/byteranges" and boundary
    body, pos, parts = response.content, 0, []
    assert int(response.headers["content-length"]) == len(body)
    opening = f"--{boundary}\r\n".encode()
    while body.startswith(opening, pos):
        head_end = body.index(b"\r\n\r\n", pos)
        fields = dict(
            line.split(": ", 1) for line in body[pos + len(opening) : head_end].decode().split("\r\n")
        )
        assert fields["Content-Type"] == "audio/mpeg"
        span, _, size = fields["Content-Range"].removeprefix("bytes ").partition("/")
        assert size == str(SIZE)
        first, last = (int(p) for p in span.split("-"))
        start = head_end + 4
        parts.append((first, last, body[start : start + last - first + 1]))
        assert body[start + last - first + 1 : start + last - first + 3] == b"\r\n"
        pos = start + last - first + 3
    assert body[pos:] == f"--{boundary}--".encode()
    return parts


# --- full responses and HEAD --------------------------------------------------------------------


def test_full_get(library: Library) -> None:
    response = get(library)
    assert response.status_code == 200
    assert response.content == library.data
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == library.etag
    assert library.etag.startswith('"') and library.etag.endswith('"') and len(library.etag) > 2
    assert response.headers["last-modified"] == LAST_MODIFIED
    assert response.headers["cache-control"] == "private, max-age=3600"
    assert "content-range" not in response.headers


def test_a_symlink_inside_the_root_is_served(library: Library) -> None:
    response = get(library, "link-in")
    assert response.status_code == 200
    assert response.content == library.data


@pytest.mark.parametrize(
    "extra", [{}, {"Range": "bytes=0-99"}, {"Range": "bytes=-10"}, {"Range": "bytes=5-1"}]
)
def test_head_has_the_get_headers_and_no_body(library: Library, extra: dict[str, str]) -> None:
    full = get(library, **extra)
    head = get(library, method="HEAD", **extra)
    assert head.status_code == full.status_code
    assert head.content == b""
    assert dict(head.headers) == dict(full.headers)


def test_head_of_empty_file(library: Library) -> None:
    head = get(library, "empty", method="HEAD")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "0"


def test_other_methods_are_not_allowed(library: Library) -> None:
    response = library.client.post("/any/song")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


# --- ranges -------------------------------------------------------------------------------------


def expected_range(
    first: int | None, last: int | None, suffix: int | None, size: int
) -> tuple[int, int] | str | None:
    """One range spec as served: (first, last), "416", or None for a full 200."""
    if suffix is not None:
        return "416" if suffix == 0 or size == 0 else (max(0, size - suffix), size - 1)
    assert first is not None
    if first >= size:
        return "416"
    if last is not None and last < first:
        return None  # invalid, so ignored
    return first, size - 1 if last is None else min(last, size - 1)


positions = st.one_of(
    st.integers(0, SIZE + 10),
    st.sampled_from([0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, SIZE - 1, SIZE, SIZE + 1]),
    st.integers(0, 10**18 - 1),
)


@st.composite
def range_specs(draw: st.DrawFn) -> tuple[str, int | None, int | None, int | None]:
    if draw(st.booleans()):
        suffix = draw(positions)
        return f"bytes=-{suffix}", None, None, suffix
    first = draw(positions)
    last = draw(st.none() | positions)
    return f"bytes={first}-{'' if last is None else last}", first, last, None


def check_range_response(library: Library, response: Any, expected: tuple[int, int] | str | None) -> None:
    if expected == "416":
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{SIZE}"
    elif expected is None:
        assert response.status_code == 200
        assert response.content == library.data
        assert "content-range" not in response.headers
    else:
        assert isinstance(expected, tuple)
        first, last = expected
        assert response.status_code == 206
        assert response.content == library.data[first : last + 1]
        assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
        assert response.headers["content-length"] == str(last - first + 1)
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["etag"] == library.etag


@settings(max_examples=100, deadline=None)
@given(spec=range_specs())
@example(spec=("bytes=0-0", 0, 0, None))
@example(spec=(f"bytes={SIZE - 1}-", SIZE - 1, None, None))
@example(spec=(f"bytes=-{SIZE}", None, None, SIZE))
@example(spec=(f"bytes=-{SIZE + 1}", None, None, SIZE + 1))
@example(spec=(f"bytes={SIZE}-", SIZE, None, None))
@example(spec=("bytes=-0", None, None, 0))
@example(spec=("bytes=10-9", 10, 9, None))
def test_single_ranges_match_the_file(
    library: Library, spec: tuple[str, int | None, int | None, int | None]
) -> None:
    header, first, last, suffix = spec
    check_range_response(library, get(library, Range=header), expected_range(first, last, suffix, SIZE))


def test_a_suffix_range_is_the_end_of_the_file(library: Library) -> None:
    check_range_response(library, get(library, Range="bytes=-500"), (SIZE - 500, SIZE - 1))


def test_an_unsatisfiable_range_is_416_with_the_size(library: Library) -> None:
    response = get(library, Range=f"bytes={SIZE}-{SIZE + 10}")
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert response.content == b""


def test_several_ranges_are_multipart_byteranges(library: Library) -> None:
    response = get(library, Range="bytes=0-9, 100-199, -5")
    assert response.status_code == 206
    assert "content-range" not in response.headers
    assert [(a, b) for a, b, _ in byteranges(response)] == [(0, 9), (100, 199), (SIZE - 5, SIZE - 1)]
    assert all(data == library.data[a : b + 1] for a, b, data in byteranges(response))


def test_overlapping_ranges_are_merged(library: Library) -> None:
    response = get(library, Range="bytes=100-199,150-249,0-9")
    assert [(a, b) for a, b, _ in byteranges(response)] == [(0, 9), (100, 249)]


# What can arrive in a header field value: visible ASCII, SP, HTAB and obs-text (Starlette decodes latin-1).
field_chars = st.characters(codec="latin-1", exclude_categories=["Cc"]) | st.sampled_from(" \t")


@settings(max_examples=100, deadline=None)
@given(header=st.text(alphabet="bytesBYTES=-,0123456789 x;", max_size=30) | st.text(field_chars, max_size=30))
def test_arbitrary_range_text_is_answered_consistently(library: Library, header: str) -> None:
    value = header.strip(" \t").encode("latin-1")
    response = library.client.get("/audio/song", headers=[(b"Range", value)])
    assert response.status_code in (200, 206, 416)
    if response.status_code == 200:
        assert response.content == library.data
    elif response.status_code == 416:
        assert response.headers["content-range"] == f"bytes */{SIZE}"
    elif response.headers["content-type"].startswith("multipart/"):
        parts = byteranges(response)
        assert len(parts) > 1
        assert all(0 <= a <= b < SIZE and data == library.data[a : b + 1] for a, b, data in parts)
    else:
        unit, _, span = response.headers["content-range"].partition(" ")
        first, last = (int(part) for part in span.removesuffix(f"/{SIZE}").split("-"))
        assert unit == "bytes" and 0 <= first <= last < SIZE
        assert response.content == library.data[first : last + 1]


@pytest.mark.parametrize(
    "header",
    [
        "items=0-1",
        "bytes 0-1",
        "bytes=abc",
        "bytes=",
        "bytes=5-1",
        "bytes=5-4",
        "bytes=0-1," * 101,
    ],
)
def test_a_range_that_cannot_be_used_gets_the_full_file(library: Library, header: str) -> None:
    """Starlette answers these 400; the gateway ignores them (RFC 9110 14.2)."""
    check_range_response(library, get(library, Range=header), None)


def test_a_huge_last_position_is_clamped(library: Library) -> None:
    check_range_response(library, get(library, Range="bytes=10-" + "9" * 40), (10, SIZE - 1))


def test_ranges_of_the_empty_file(library: Library) -> None:
    for header in ("bytes=0-", "bytes=-5"):
        response = get(library, "empty", Range=header)
        assert response.status_code == 416
        assert response.headers["content-range"] == "bytes */0"


# --- conditional requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"If-None-Match": "{etag}"},
        {"If-None-Match": "W/{etag}"},
        {"If-None-Match": '"other", {etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": LAST_MODIFIED},
        {"If-Modified-Since": LATER},
        {"If-None-Match": "{etag}", "Range": "bytes=0-9"},
        {"If-Match": "{etag}", "If-None-Match": "{etag}"},
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_not_modified(library: Library, headers: dict[str, str], method: str) -> None:
    response = get(library, method=method, **headers)
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == library.etag
    assert response.headers["cache-control"] == "private, max-age=3600"
    assert "content-range" not in response.headers
    assert "content-length" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"If-None-Match": '"other"'},
        {"If-None-Match": "garbage"},
        {"If-Modified-Since": EARLIER},
        {"If-Modified-Since": "not a date"},
        {"If-None-Match": '"other"', "If-Modified-Since": LATER},
        {"If-Match": "{etag}"},
        {"If-Match": '"other", {etag}'},
        {"If-Match": "*"},
        {"If-Unmodified-Since": LAST_MODIFIED},
        {"If-Unmodified-Since": LATER},
        {"If-Unmodified-Since": "not a date"},
        {"If-Match": "{etag}", "If-Unmodified-Since": EARLIER},
    ],
)
def test_conditions_that_let_the_full_response_through(library: Library, headers: dict[str, str]) -> None:
    response = get(library, **headers)
    assert response.status_code == 200
    assert response.content == library.data


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": '"other"'},
        {"If-Match": "W/{etag}"},
        {"If-Match": ""},
        {"If-Match": "garbage"},
        {"If-Unmodified-Since": EARLIER},
        {"If-Match": '"other"', "If-Unmodified-Since": LATER},
        {"If-Match": '"other"', "If-None-Match": "{etag}"},
        {"If-Unmodified-Since": EARLIER, "If-Modified-Since": LATER},
        {"If-Match": '"other"', "Range": "bytes=0-9"},
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_precondition_failed(library: Library, headers: dict[str, str], method: str) -> None:
    response = get(library, method=method, **headers)
    assert response.status_code == 412
    assert "content-range" not in response.headers
    assert response.content != library.data


def test_preconditions_split_over_field_lines(library: Library) -> None:
    response = library.client.get(
        "/audio/song", headers=[("If-Match", '"other"'), ("If-Match", library.etag)]
    )
    assert response.status_code == 200
    response = library.client.get(
        "/audio/song", headers=[("If-None-Match", '"other"'), ("If-None-Match", library.etag)]
    )
    assert response.status_code == 304


@pytest.mark.parametrize(
    ("if_range", "honoured"),
    [
        ("{etag}", True),
        (LAST_MODIFIED, True),
        ('"stale"', False),
        ("W/{etag}", False),
        (EARLIER, False),
        (LATER, False),
        ("garbage", False),
    ],
)
def test_if_range(library: Library, if_range: str, honoured: bool) -> None:
    response = get(library, Range="bytes=100-199", If_Range=if_range)
    check_range_response(library, response, (100, 199) if honoured else None)


def test_if_range_after_the_file_changed(library: Library) -> None:
    mutable = library.root / "mutable.wav"
    old = get(library, "mutable")
    write(mutable, b"second, longer version", MTIME_NS + 5_000_000_000)
    stale = get(library, "mutable", Range="bytes=0-5", If_Range=old.headers["etag"])
    assert stale.status_code == 200
    assert stale.content == b"second, longer version"
    assert stale.headers["etag"] != old.headers["etag"]
    fresh = get(library, "mutable", Range="bytes=0-5", If_Range=stale.headers["etag"])
    assert fresh.status_code == 206
    assert fresh.content == b"second"
    assert get(library, "mutable", If_None_Match=old.headers["etag"]).status_code == 200
    assert get(library, "mutable", If_Match=old.headers["etag"]).status_code == 412


# A model of RFC 9110 13.2.2 over the truth of each condition; headers are built to have that truth.
tristate = st.sampled_from(["absent", "true", "false"])


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD"]),
    if_match=tristate,
    if_unmodified_since=tristate,
    if_none_match=tristate,
    if_modified_since=tristate,
    has_range=st.booleans(),
    if_range=tristate,
    data=st.data(),
)
def test_precedence_model(
    library: Library,
    method: str,
    if_match: str,
    if_unmodified_since: str,
    if_none_match: str,
    if_modified_since: str,
    has_range: bool,
    if_range: str,
    data: st.DataObject,
) -> None:
    # "true" means the condition holds (RFC wording): e.g. If-None-Match true = no tag matches.
    choices: dict[tuple[str, str], list[str]] = {
        ("If-Match", "true"): ["{etag}", "*", '"x", {etag}'],
        ("If-Match", "false"): ['"x"', "W/{etag}", "bad"],
        ("If-Unmodified-Since", "true"): [LAST_MODIFIED, LATER],
        ("If-Unmodified-Since", "false"): [EARLIER, "Sat, 01 Jan 2000 00:00:00 GMT"],
        ("If-None-Match", "true"): ['"x"', 'W/"x", "y"', "bad"],
        ("If-None-Match", "false"): ["{etag}", "W/{etag}", "*"],
        ("If-Modified-Since", "true"): [EARLIER, "Sat, 01 Jan 2000 00:00:00 GMT"],
        ("If-Modified-Since", "false"): [LAST_MODIFIED, LATER],
        ("If-Range", "true"): ["{etag}", LAST_MODIFIED],
        ("If-Range", "false"): ['"stale"', "W/{etag}", LATER, "junk"],
    }
    state = {
        "If-Match": if_match,
        "If-Unmodified-Since": if_unmodified_since,
        "If-None-Match": if_none_match,
        "If-Modified-Since": if_modified_since,
        "If-Range": if_range,
    }
    headers = {
        name.replace("-", "_"): data.draw(st.sampled_from(choices[name, truth]))
        for name, truth in state.items()
        if truth != "absent"
    }
    if has_range:
        headers["Range"] = "bytes=0-9"

    if if_match == "false" or (if_match == "absent" and if_unmodified_since == "false"):
        expected = 412
    elif if_none_match == "false" or (if_none_match == "absent" and if_modified_since == "false"):
        expected = 304
    elif has_range and if_range != "false":
        expected = 206  # HEAD too: FileResponse answers it with the headers of the GET
    else:
        expected = 200
    assert get(library, method=method, **headers).status_code == expected


# --- stored paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["none", "blank", "dotdot", "inner-dotdot", "absolute", "link-out", "loop", "folder", "missing"]
)
def test_refused_stored_paths(library: Library, name: str) -> None:
    with pytest.raises(NotFoundError):
        resolve_audio(library.root, library.names[name])
    response = get(library, name)
    assert response.status_code == 404
    assert b"secret" not in response.content


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        (None, "no stored audio path"),
        ("", "no stored audio path"),
        ("../outside.mp3", "'..'"),
        ("music/../../outside.mp3", "'..'"),
        ("/etc/passwd", "absolute"),
        ("link-out.mp3", "outside the audio root"),
        ("folder.mp3", "not a regular file"),
        ("music/missing.mp3", "does not exist"),
        ("music/song.mp3\x00.txt", "NUL"),
    ],
)
def test_refusals_say_why(library: Library, relative: str | None, reason: str) -> None:
    with pytest.raises(NotFoundError, match=reason.replace(".", r"\.")):
        resolve_audio(library.root, relative)


def test_resolve_audio_returns_the_file(library: Library) -> None:
    assert resolve_audio(library.root, "music/song.mp3") == library.song.resolve()
    assert resolve_audio(library.root, "./music//song.mp3") == library.song.resolve()
    assert resolve_audio(library.root, "link-in.mp3") == library.song.resolve()


def test_symlinked_root_is_followed(library: Library) -> None:
    alias = library.base / "alias"
    if not alias.exists():
        alias.symlink_to(library.root)
    assert resolve_audio(alias, "music/song.mp3") == library.song.resolve()
    with pytest.raises(NotFoundError):
        resolve_audio(alias, "link-out.mp3")


def test_missing_root(library: Library) -> None:
    with pytest.raises(NotFoundError):
        resolve_audio(library.base / "no-such-root", "music/song.mp3")


def test_audio_response_refuses_what_cannot_be_served(library: Library) -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}

    async def attempt(path: Path) -> None:
        await audio_response(Request(scope), path)

    for path in (library.root / "music" / "missing.mp3", library.root / "folder.mp3"):
        with pytest.raises(NotFoundError):
            anyio.run(attempt, path)


# --- content types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.mp3", "audio/mpeg"),
        ("a.ogg", "audio/ogg"),
        ("a.opus", "audio/ogg"),
        ("a.flac", "audio/flac"),
        ("a.wav", "audio/wav"),
        ("a.m4a", "audio/mp4"),
        ("A.MP3", "audio/mpeg"),
        ("a.tar.flac", "audio/flac"),
        ("a.aac", DEFAULT_TYPE),
        ("mp3", DEFAULT_TYPE),
        ("a", DEFAULT_TYPE),
    ],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(Path(name)) == expected


def test_audio_types_table() -> None:
    assert dict(AUDIO_TYPES) == {
        ".mp3": "audio/mpeg",
        ".ogg": "audio/ogg",
        ".opus": "audio/ogg",
        ".flac": "audio/flac",
        ".wav": "audio/wav",
        ".m4a": "audio/mp4",
    }
    assert DEFAULT_TYPE == "application/octet-stream"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ogg", "audio/ogg"), ("empty", "audio/flac"), ("blob", "application/octet-stream")],
)
def test_content_type_over_http(library: Library, name: str, expected: str) -> None:
    assert get(library, name).headers["content-type"] == expected


# --- streaming and resources --------------------------------------------------------------------


def scope_for(method: str = "GET", **headers: str) -> dict[str, Any]:
    raw = [
        (key.replace("_", "-").lower().encode(), value.encode("latin-1")) for key, value in headers.items()
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "method": method,
        "path": "/",
        "headers": raw,
        "query_string": b"",
    }


async def never_receive() -> Message:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


def test_body_is_streamed_in_chunks(library: Library) -> None:
    scope = scope_for(Range="bytes=1000-")
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    async def run() -> None:
        response = await audio_response(Request(scope), library.song)
        assert isinstance(response, FileResponse)
        await response(scope, never_receive, send)

    anyio.run(run)
    assert messages[0]["status"] == 206
    bodies = [message["body"] for message in messages[1:]]
    assert all(len(body) <= CHUNK_SIZE for body in bodies)
    assert len(bodies) > SIZE // CHUNK_SIZE
    assert b"".join(bodies) == library.data[1000:]
    assert messages[-1]["more_body"] is False


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_no_file_is_left_open(library: Library) -> None:
    get(library)  # warm up the client's portal
    before = open_fds()
    with warnings.catch_warnings(record=True) as caught:
        # A file dropped unclosed is closed by the garbage collector, with a ResourceWarning.
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(3):
            get(library)
            get(library, method="HEAD")
            get(library, Range="bytes=10-20")
            get(library, Range="bytes=10-20,30-40")
            get(library, Range=f"bytes={SIZE}-")
            get(library, If_None_Match="{etag}")
            get(library, If_Match='"other"')
            get(library, "empty")
            library.client.post("/any/song")
        gc.collect()
    assert open_fds() == before
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_client_gone_mid_stream_closes_the_file(library: Library) -> None:
    scope = scope_for()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("connection reset")
        sent.append(message)

    async def run() -> None:
        response = await audio_response(Request(scope), library.song)
        await response(scope, never_receive, send)

    before = open_fds()
    with pytest.raises(OSError, match="connection reset"):
        anyio.run(run)
    assert sent[0]["status"] == 200
    assert open_fds() == before
