"""Listener accounts in MongoDB ``accounts``: create, list, change password, disable, enable, delete.

Source: ``cadenza user …`` (:mod:`gateway.user_cli`) and the gateway's password sign-in
(:mod:`gateway.signin`, which reads an account and may store a re-hash). Destination: the
``accounts`` collection (:class:`schemas.documents.AccountDoc`), and on delete the
listener's ``plays`` history, ``users`` profile and ``sessions``. Every change sets
``updated``, which is what each gateway polls (:mod:`gateway.revocations`); disable, delete
and a new password also move ``tokens_valid_after`` to now, so the tokens signed before are
refused by every gateway within ``CADENZA_ACCOUNTS_POLL_S``.

A deleted account leaves a revocation record (``deleted: true``, no password): the name's
older tokens stay refused, and ``cadenza user add`` may create the name again. Blocking
pymongo calls: the gateway runs them in worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from gateway.errors import GatewayError
from gateway.passwords import hash_password
from schemas.documents import AccountDoc, AccountRole
from schemas.tokens import check_user

Doc = dict[str, Any]
ACCOUNTS: Final = "accounts"
#: What each gateway keeps of an account (no password hash).
STANDING_FIELDS: Final = {"role": 1, "disabled": 1, "deleted": 1, "tokens_valid_after": 1, "updated": 1}


class AccountError(GatewayError):
    """A ``cadenza user`` command that cannot be carried out (the message says what to do)."""


@dataclass(frozen=True)
class Removed:
    """What deleting a listener removed: documents per collection."""

    plays: int
    profiles: int
    sessions: int


def now_utc(clock: Callable[[], float]) -> datetime:
    """``clock()`` as an aware UTC datetime, to the millisecond (what BSON keeps)."""
    ms = int(clock() * 1000)
    return datetime.fromtimestamp(ms / 1000, UTC)


class Accounts:
    """The account operations on one database (``clock``: seconds since the epoch)."""

    def __init__(self, db: Database[Doc], clock: Callable[[], float]) -> None:
        self.db, self.clock = db, clock
        self.coll = db[ACCOUNTS]

    def _name(self, name: str) -> str:
        try:
            return check_user(name)
        except ValueError as err:
            raise AccountError(f"{name!r}: {err}") from None

    def get(self, name: str) -> AccountDoc | None:
        """The account ``name`` (None if there is none, or it was deleted)."""
        doc = self.coll.find_one({"_id": name})
        if doc is None or doc.get("deleted"):
            return None
        return AccountDoc.model_validate(doc)

    def add(self, name: str, password: str, *, role: AccountRole = "listener") -> AccountDoc:
        """A new account; :class:`AccountError` if ``name`` has one already."""
        name = self._name(name)
        try:
            hashed = hash_password(password)
        except ValueError as err:
            raise AccountError(f"{err}: nothing changed, choose another") from None
        now = now_utc(self.clock)
        doc = AccountDoc(
            id=name, password_hash=hashed, role=role, created=now, updated=now, tokens_valid_after=now
        )
        try:  # over a deleted account's revocation record, never over a live account
            self.coll.update_one({"_id": name, "deleted": True}, {"$set": doc.to_mongo()}, upsert=True)
        except DuplicateKeyError:
            raise AccountError(
                f"{name} already has an account: change its password with `cadenza user passwd {name}`"
            ) from None
        return doc

    def list(self) -> list[AccountDoc]:
        """Every account (not the deleted ones), by name."""
        found = self.coll.find({"deleted": {"$ne": True}}, {"password_hash": 0}).sort("_id", 1)
        return [AccountDoc.model_validate(d) for d in found]

    def _change(self, name: str, values: Doc, *, revoke: bool) -> None:
        now = now_utc(self.clock)
        update = {**values, "updated": now, **({"tokens_valid_after": now} if revoke else {})}
        result = self.coll.update_one({"_id": self._name(name), "deleted": {"$ne": True}}, {"$set": update})
        if result.matched_count == 0:
            raise AccountError(
                f"no account {name}: see `cadenza user list`, or create it with `cadenza user add`"
            )

    def passwd(self, name: str, password: str) -> None:
        """A new password; every token signed before it is refused."""
        try:
            hashed = hash_password(password)
        except ValueError as err:
            raise AccountError(f"{err}: nothing changed, choose another") from None
        self._change(name, {"password_hash": hashed}, revoke=True)

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (every token refused, sign-in refused) or enable again (sign-in works; the
        tokens signed before the account was disabled stay refused)."""
        self._change(name, {"disabled": disabled}, revoke=disabled)

    def rehash(self, name: str, old: str, new: str) -> None:
        """Store ``new`` in place of ``old`` (same password, today's parameters), unless the
        password changed meanwhile."""
        self.coll.update_one({"_id": name, "password_hash": old}, {"$set": {"password_hash": new}})

    def usage(self, name: str) -> Removed:
        """What deleting ``name`` would remove."""
        return Removed(
            plays=self.db.plays.count_documents({"user_id": name}),
            profiles=self.db.users.count_documents({"_id": name}),
            sessions=self.db.sessions.count_documents({"user_id": name}),
        )

    def delete(self, name: str) -> Removed:
        """Delete the account and the listener's data; their tokens are refused from now on.
        Run again on a deleted account, it removes whatever data is left."""
        name = self._name(name)
        found = self.coll.find_one({"_id": name}, {"deleted": 1})
        if found is None:
            raise AccountError(f"no account {name}: see `cadenza user list`")
        if not found.get("deleted"):
            now = now_utc(self.clock)
            self.coll.update_one(
                {"_id": name},
                {
                    "$set": {"deleted": True, "disabled": True, "updated": now, "tokens_valid_after": now},
                    "$unset": {"password_hash": ""},
                },
            )
        try:
            return Removed(
                plays=self.db.plays.delete_many({"user_id": name}).deleted_count,
                profiles=self.db.users.delete_many({"_id": name}).deleted_count,
                sessions=self.db.sessions.delete_many({"user_id": name}).deleted_count,
            )
        except PyMongoError as err:
            raise AccountError(
                f"{name}'s account is deleted and their tokens revoked, but removing their data failed "
                f"({type(err).__name__}); run `cadenza user delete {name}` again once MongoDB answers"
            ) from None


def changed_since(db: Database[Doc], since: datetime | None, overlap_s: float) -> list[Doc]:
    """Every account's standing (no password hash) changed since ``since`` minus ``overlap_s``
    (clocks of writers differ a little), or all of them when ``since`` is None."""
    query: Doc = {} if since is None else {"updated": {"$gte": since - timedelta(seconds=overlap_s)}}
    return list(db[ACCOUNTS].find(query, STANDING_FIELDS))
