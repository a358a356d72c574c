"""Listener tokens: issued tokens verify; forged, tampered, expired or malformed ones never do."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import AuthError
from gateway.tokens import check_user, issue, verify

SECRET = "s3cret"
users = st.from_regex(r"[A-Za-z0-9_.@\-]{1,128}", fullmatch=True)


@given(user=users, now=st.integers(0, 2**40), ttl=st.integers(1, 10**8))
def test_an_issued_token_verifies_until_it_expires(user: str, now: int, ttl: int) -> None:
    token = issue(SECRET, user, now=now, ttl_s=ttl)
    claims = verify(SECRET, token, now=now + ttl - 1)
    assert (claims.user_id, claims.issued, claims.expires) == (user, now, now + ttl)
    with pytest.raises(AuthError, match="expired"):
        verify(SECRET, token, now=now + ttl)


@given(user=users, position=st.integers(0, 500), char=st.characters(codec="ascii"))
def test_any_change_to_a_token_is_refused(user: str, position: int, char: str) -> None:
    token = issue(SECRET, user, now=1000, ttl_s=60)
    i = position % len(token)
    tampered = token[:i] + char + token[i + 1 :]
    if tampered == token:
        return
    with pytest.raises(AuthError):
        verify(SECRET, tampered, now=1001)


@given(text=st.text(max_size=300))
def test_arbitrary_text_is_refused_with_an_auth_error(text: str) -> None:
    with pytest.raises(AuthError):
        verify(SECRET, text, now=0)


def test_another_secret_and_missing_tokens_are_refused() -> None:
    token = issue(SECRET, "alice", now=0, ttl_s=60)
    with pytest.raises(AuthError, match="signature"):
        verify("other", token, now=1)
    for missing in (None, ""):
        with pytest.raises(AuthError, match="no token"):
            verify(SECRET, missing, now=1)


def test_user_names_are_checked_when_issuing() -> None:
    assert check_user("a.b-c_d@e") == "a.b-c_d@e"
    for bad in ("", "x" * 129, "has space", "slash/", "{$ne:1}"):
        with pytest.raises(ValueError, match="letters"):
            issue(SECRET, bad, now=0, ttl_s=60)
    with pytest.raises(ValueError, match="lifetime"):
        issue(SECRET, "alice", now=0, ttl_s=0)
