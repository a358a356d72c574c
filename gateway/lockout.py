"""Failed password sign-ins, shared by every gateway through MongoDB ``signin_failures``,
and the lockouts they cause.

Source: each refused password (:mod:`gateway.signin`), recorded twice: for the account
name (``account:<name>``, whether or not it has an account) and for the client address
(``address:<ip>``). Destination: whether a sign-in may be tried now, or how long until it
may (HTTP 429 with ``Retry-After``). ``CADENZA_SIGNIN_MAX_FAILURES`` failures of one name
within ``CADENZA_SIGNIN_WINDOW_S`` lock that name for ``CADENZA_SIGNIN_LOCKOUT_S``;
``CADENZA_SIGNIN_MAX_FAILURES_PER_ADDRESS`` failures from one address lock the address.
Attempts refused during a lockout are not recorded, so a lockout ends on time.

Works on FerretDB: plain finds, inserts and deletes. Every read filters by time itself
(a TTL index may not be enforced), and old failures are deleted by :func:`prune`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pymongo.database import Database

Doc = dict[str, Any]
FAILURES: Final = "signin_failures"


def account_key(name: str) -> str:
    return f"account:{name}"


def address_key(address: str) -> str:
    return f"address:{address}"


def locked_until(
    times: Sequence[float], *, max_failures: int, window_s: float, lockout_s: float
) -> float | None:
    """When the lockout that ``times`` (failures, seconds) cause ends, or None if they cause none:
    every ``max_failures`` failures within ``window_s`` lock for ``lockout_s`` after the last."""
    ordered = sorted(times)
    until: float | None = None
    for last in range(max_failures - 1, len(ordered)):
        if ordered[last] - ordered[last - max_failures + 1] <= window_s:
            end = ordered[last] + lockout_s
            until = end if until is None else max(until, end)
    return until


@dataclass(frozen=True)
class Limits:
    max_failures: int
    max_per_address: int
    window_s: float
    lockout_s: float

    @property
    def horizon_s(self) -> float:
        """How far back a failure can still matter."""
        return self.window_s + self.lockout_s

    def refusal(
        self, failures: dict[str, list[float]], name: str, address: str, now: float
    ) -> tuple[str, float] | None:
        """("rate" | "locked", seconds until it ends) while the address or the name is locked out."""
        by_address = locked_until(
            failures.get(address_key(address), []),
            max_failures=self.max_per_address,
            window_s=self.window_s,
            lockout_s=self.lockout_s,
        )
        if by_address is not None and by_address > now:
            return "rate", by_address - now
        by_name = locked_until(
            failures.get(account_key(name), []),
            max_failures=self.max_failures,
            window_s=self.window_s,
            lockout_s=self.lockout_s,
        )
        if by_name is not None and by_name > now:
            return "locked", by_name - now
        return None


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def failures(db: Database[Doc], keys: Sequence[str], since: float) -> dict[str, list[float]]:
    """The times of the failures of ``keys`` since ``since``, per key."""
    found: dict[str, list[float]] = {key: [] for key in keys}
    for doc in db[FAILURES].find(
        {"key": {"$in": list(keys)}, "at": {"$gt": _at(since)}}, {"key": 1, "at": 1}
    ):
        found.setdefault(doc["key"], []).append(doc["at"].timestamp())
    return found


def record(db: Database[Doc], keys: Sequence[str], now: float) -> None:
    db[FAILURES].insert_many([{"_id": uuid.uuid4().hex, "key": key, "at": _at(now)} for key in keys])


def clear(db: Database[Doc], key: str) -> None:
    """Forget the failures of ``key`` (a name after its password was given right)."""
    db[FAILURES].delete_many({"key": key})


def prune(db: Database[Doc], before: float) -> int:
    """Delete the failures older than ``before``; how many."""
    return db[FAILURES].delete_many({"at": {"$lt": _at(before)}}).deleted_count
