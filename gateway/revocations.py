"""Which listener tokens this gateway refuses: each account's standing, polled from MongoDB.

Source: ``accounts`` (:mod:`gateway.accounts`), read in full at start and then every
``CADENZA_ACCOUNTS_POLL_S`` (1-2 s) for the documents whose ``updated`` is newer than the
newest seen (less a few seconds, for writers whose clocks differ), plus a full read every
few minutes. A poll, not a change stream: the local FerretDB has none. Destinations: an
in-memory map name -> :class:`Standing`, so checking a token (:meth:`Revocations.refusal`,
called by :class:`gateway.routes.access.Guard` on every request and websocket) is a dict
lookup; and the hub, whose sockets of a listener are closed (4401) as soon as a poll shows
their tokens revoked.

Rules: a name with no account (tokens from ``cadenza token create``, the simulator's) is
accepted; a disabled account's tokens are all refused; otherwise a token issued before the
account's ``tokens_valid_after`` (set on creation, disable, delete, new password) is refused.
A deleted account is kept as its revocation record, so this holds for it too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from gateway.hub import Hub
from gateway.tokens import Claims

log = logging.getLogger("cadenza.gateway.accounts")

#: Each poll re-reads the changes of this many seconds before the newest it saw.
OVERLAP_S: Final = 10.0
#: Seconds between full reads of ``accounts`` (heals anything a poll could have missed).
FULL_READ_S: Final = 300.0

Fetch = Callable[[datetime | None, float], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class Standing:
    """What a gateway keeps of one account: no password, nothing personal."""

    valid_after: float
    disabled: bool = False
    deleted: bool = False
    role: str = "listener"

    @property
    def active(self) -> bool:
        """An account that can sign in (not a deleted one's revocation record)."""
        return not self.deleted


def standing_of(doc: Mapping[str, Any]) -> Standing:
    valid_after = doc.get("tokens_valid_after")
    return Standing(
        valid_after=valid_after.timestamp() if isinstance(valid_after, datetime) else 0.0,
        disabled=bool(doc.get("disabled")),
        deleted=bool(doc.get("deleted")),
        role=str(doc.get("role") or "listener"),
    )


def newly_refused(old: Standing | None, new: Standing) -> tuple[bool, float | None]:
    """Whether ``new`` refuses tokens ``old`` accepted, and which: (True, None) all of them,
    (True, t) those issued before t; (False, None) nothing changed for open sockets."""
    if new.disabled and (old is None or not old.disabled):
        return True, None
    if old is None or new.valid_after > old.valid_after:
        return True, new.valid_after
    return False, None


class Revocations:
    """The standing of every account, as this gateway last read it."""

    def __init__(self, hub: Hub, poll_s: float) -> None:
        self.hub, self.poll_s = hub, poll_s
        self.standing: dict[str, Standing] = {}
        self.loaded = False
        self.newest: datetime | None = None
        self.closed = 0  # sockets closed because their token was revoked

    def refusal(self, claims: Claims) -> str | None:
        """Why the token of ``claims`` is refused, or None if it is accepted."""
        found = self.standing.get(claims.user_id)
        if found is None:
            return None
        if found.disabled and not found.deleted:
            return "this account is disabled: ask your operator"
        if claims.issued_at < found.valid_after:
            return "this token was revoked (new password, or account disabled or deleted): sign in again"
        return None

    def has_account(self, name: str) -> bool:
        found = self.standing.get(name)
        return found is not None and found.active

    def role(self, name: str) -> str | None:
        found = self.standing.get(name)
        return found.role if found is not None and found.active else None

    def apply(self, docs: Iterable[Mapping[str, Any]], *, full: bool = False) -> int:
        """Take the standing of ``docs`` (all accounts when ``full``: names missing from them are
        forgotten) and close the sockets they revoke; how many sockets were closed."""
        closed = 0
        seen: set[str] = set()
        for doc in docs:
            name = str(doc["_id"])
            seen.add(name)
            new = standing_of(doc)
            refused, before = newly_refused(self.standing.get(name), new)
            self.standing[name] = new
            if refused:
                closed += self.hub.revoke(name, before)
            updated = doc.get("updated")
            if isinstance(updated, datetime) and (self.newest is None or updated > self.newest):
                self.newest = updated
        if full:
            for name in set(self.standing) - seen:  # removed by hand from the collection
                del self.standing[name]
        self.closed += closed
        return closed

    async def read(self, fetch: Fetch, *, full: bool) -> None:
        docs = await fetch(None if full else self.newest, OVERLAP_S)
        closed = self.apply(docs, full=full)
        self.loaded = True
        if closed:
            log.info("closed %d websocket(s) whose tokens were revoked", closed)

    async def run(self, fetch: Fetch) -> None:
        """Read every account, then poll the changes every ``poll_s`` (forever); a failed read
        keeps what is known and is logged once until reads work again."""
        failing = False
        last_full = float("-inf")
        while True:
            full = not self.loaded or time.monotonic() - last_full >= FULL_READ_S
            try:
                await self.read(fetch, full=full)
                if full:
                    last_full = time.monotonic()
                if failing:
                    log.info("accounts readable again")
                failing = False
            except Exception as err:  # MongoDB away: keep the standing known so far
                if not failing:
                    log.warning("cannot read accounts (%s: %s); retrying", type(err).__name__, err)
                failing = True
            await asyncio.sleep(self.poll_s)
