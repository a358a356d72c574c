"""Password hashing for listener accounts: argon2id through argon2-cffi (its RFC 9106
low-memory profile: 64 MiB, 3 passes), never our own crypto.

Source: a password typed at ``cadenza user add``/``passwd`` or sent to ``POST /api/login``.
Destination: the PHC string stored as ``accounts.password_hash``, or whether a password
matches one. Hashing is deliberately slow (tens of milliseconds and 64 MiB): the gateway
runs it in worker threads, a few at a time (:mod:`gateway.signin`).
"""

from __future__ import annotations

from functools import cache
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_CHARS: Final = 8
#: Longer passwords are refused before hashing (argon2 takes any length; a request need not).
MAX_PASSWORD_CHARS: Final = 1024

_hasher: Final = PasswordHasher()


def check_password(password: str) -> str:
    """``password`` if it is acceptable (8-1024 characters); else ValueError saying what is wrong."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password has at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a password must be valid text (it has a lone surrogate)") from None
    return password


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of an acceptable password."""
    return _hasher.hash(check_password(password))


@cache
def _stand_in() -> str:
    """A hash checked when there is no account, so a wrong name costs what a wrong password does."""
    return _hasher.hash("no account has this password")


def verify(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; with no stored hash (no such account, a deleted
    one) a stand-in hash is checked all the same, and the answer is False."""
    target = stored if stored else _stand_in()
    try:
        matched = _hasher.verify(target, password[:MAX_PASSWORD_CHARS])
    except (VerificationError, InvalidHashError, UnicodeEncodeError):  # a lone surrogate: no match
        return False
    return bool(matched and stored)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was made with other parameters than today's (re-hash on sign-in)."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return False
