"""Password sign-in: a name and password checked against ``accounts``, within the lockouts.

Source: ``POST /api/login`` (:mod:`gateway.routes.login`) with the client's address;
MongoDB ``accounts`` (:mod:`gateway.accounts`) and ``signin_failures``
(:mod:`gateway.lockout`), read in worker threads. Destinations: an :class:`Outcome` for the
route, ``signin_failures`` (a wrong password; cleared for the name on success), the
account's re-hashed password when argon2's parameters changed, and
:class:`gateway.signin_metrics.SigninMetrics`.

A wrong name and a wrong password cost the same: with no account, a stand-in hash is
checked (:func:`gateway.passwords.verify`), and failures are recorded for names without
accounts too. The argon2 checks run off the event loop, at most :data:`HASHING_AT_ONCE`
at a time (each takes 64 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final

import anyio

from gateway import lockout, passwords
from gateway.accounts import ACCOUNTS, Accounts
from gateway.state import Gateway

log = logging.getLogger("cadenza.gateway.signin")

HASHING_AT_ONCE: Final = 2
#: Seconds between deletions of failures too old to matter.
PRUNE_EVERY_S: Final = 60.0


@dataclass(frozen=True)
class Outcome:
    """``result`` (see :data:`gateway.signin_metrics.RESULTS`), the role when ``ok``, and the
    seconds to wait when ``locked`` or ``rate``."""

    result: str
    role: str | None = None
    retry_after_s: float = 0.0


def read_account(db: Any, name: str) -> dict[str, Any] | None:
    return db[ACCOUNTS].find_one({"_id": name}, {"password_hash": 1, "disabled": 1, "deleted": 1, "role": 1})


class Signin:
    """The password checks of one gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        s = gw.settings
        self.limits = lockout.Limits(
            s.signin_max_failures, s.signin_max_failures_per_address, s.signin_window_s, s.signin_lockout_s
        )
        self.hashing = anyio.CapacityLimiter(HASHING_AT_ONCE)

    async def attempt(self, name: str, password: str, address: str) -> Outcome:
        outcome = await self._attempt(name, password, address)
        self.gw.signins.count(outcome.result)
        return outcome

    async def _attempt(self, name: str, password: str, address: str) -> Outcome:
        gw = self.gw
        now = gw.clock()
        keys = (lockout.account_key(name), lockout.address_key(address))
        failures = await gw.query(lockout.failures, gw.db, keys, now - self.limits.horizon_s)
        refused = self.limits.refusal(failures, name, address, now)
        if refused is not None:
            return Outcome(refused[0], retry_after_s=refused[1])
        doc = await gw.query(read_account, gw.db, name)
        stored = doc.get("password_hash") if doc is not None and not doc.get("deleted") else None
        async with self.hashing:
            # Read the failures again once a hashing slot is ours: concurrent attempts queue
            # here, and each sees the failures recorded by those before it, so a burst cannot
            # all be checked against the same empty record.
            now = gw.clock()
            failures = await gw.query(lockout.failures, gw.db, keys, now - self.limits.horizon_s)
            refused = self.limits.refusal(failures, name, address, now)
            if refused is not None:
                return Outcome(refused[0], retry_after_s=refused[1])
            matched = await anyio.to_thread.run_sync(passwords.verify, stored, password)
            if not matched or doc is None or stored is None:
                await gw.query(lockout.record, gw.db, keys, now)
                return Outcome("bad_credentials")
        if doc.get("disabled"):
            return Outcome("disabled")
        await gw.query(lockout.clear, gw.db, keys[0])
        if passwords.needs_rehash(stored):
            await self._rehash(name, stored, password)
        return Outcome("ok", role=str(doc.get("role") or "listener"))

    async def _rehash(self, name: str, old: str, password: str) -> None:
        try:
            new = await anyio.to_thread.run_sync(passwords.hash_password, password, limiter=self.hashing)
            await self.gw.query(lambda: Accounts(self.gw.db, self.gw.clock).rehash(name, old, new))
        except Exception as err:  # the old hash still works: never fail a sign-in for this
            log.warning("could not re-hash %s's password: %s", name, err)

    async def prune_forever(self) -> None:
        """Every :data:`PRUNE_EVERY_S`: delete the failures too old to matter (runs for the
        life of the gateway; every gateway does it, which is harmless)."""
        while True:
            with contextlib.suppress(Exception):
                before = self.gw.clock() - self.limits.horizon_s
                await self.gw.query(lockout.prune, self.gw.db, before)
            await asyncio.sleep(PRUNE_EVERY_S)
