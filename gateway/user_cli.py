"""``cadenza user …``: listener accounts (MongoDB ``accounts``, :mod:`gateway.accounts`).

``add NAME [--admin] [--password-stdin]``, ``list``, ``passwd NAME``, ``disable NAME``,
``enable NAME``, ``delete NAME [--yes]``. Passwords are never arguments (they would land in
the shell's history and the process list): they are asked twice on a terminal, or read as
one line from standard input with ``--password-stdin``. Every gateway sees a change within
``CADENZA_ACCOUNTS_POLL_S``: a disabled or deleted account's tokens, and the tokens signed
before a new password, are refused there and its open players disconnected.
"""

from __future__ import annotations

import getpass
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.table import Table

from gateway.accounts import AccountError, Accounts
from infra.mongo import client, database, init_db, ping
from infra.settings import get_settings

console = Console()
user_app = typer.Typer(
    help="Listener accounts: sign-in with a name and password (stored in MongoDB `accounts`).",
    no_args_is_help=True,
)

NAME = typer.Argument(..., help="Listener name: 1-128 letters, digits, _ . @ or -.")
PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password as one line from standard input (for scripts)."
)


@contextmanager
def accounts() -> Iterator[Accounts]:
    """The account operations on the configured database (collections and indexes ensured)."""
    settings = get_settings()
    mongo = client(settings)
    try:
        ping(settings, mongo)
        db = database(settings, mongo)
        init_db(db)
        yield Accounts(db, time.time)
    finally:
        mongo.close()


def read_password(from_stdin: bool) -> str:
    """The new password: one line of standard input, or typed twice on the terminal."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise AccountError("no password on standard input: pipe one line, e.g. `printf %s … | cadenza …`")
        return line
    if not sys.stdin.isatty():
        raise AccountError("no terminal to ask the password on: pass --password-stdin and pipe it in")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password (again): "):
        raise AccountError("the two passwords differ: nothing changed, run the command again")
    return first


@user_app.command("add")
def add(
    name: str = NAME,
    admin: bool = typer.Option(False, "--admin", help="An administrator (default: a listener)."),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Create an account NAME that signs in with a password."""
    password = read_password(password_stdin)
    with accounts() as store:
        doc = store.add(name, password, role="admin" if admin else "listener")
    console.print(f"created {doc.role} account [bold]{doc.id}[/]: sign in at the player with its password")


@user_app.command("list")
def list_accounts() -> None:
    """Every account: name, role, disabled, created."""
    with accounts() as store:
        found = store.list()
    table = Table(title=f"{len(found)} account(s)", title_justify="left")
    for col in ("name", "role", "disabled", "created"):
        table.add_column(col)
    for doc in found:
        disabled = "[red]yes[/]" if doc.disabled else "no"
        table.add_row(doc.id, doc.role, disabled, doc.created.strftime("%Y-%m-%d %H:%M:%S UTC"))
    console.print(table)


@user_app.command("passwd")
def passwd(name: str = NAME, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Set NAME's password; their tokens signed before are refused (they sign in again)."""
    password = read_password(password_stdin)
    with accounts() as store:
        store.passwd(name, password)
    console.print(f"{name}: password changed; their earlier sessions are signed out")


@user_app.command("disable")
def disable(name: str = NAME) -> None:
    """Refuse NAME's sign-in and every token they have, and disconnect their players."""
    with accounts() as store:
        store.set_disabled(name, True)
    console.print(f"{name}: disabled; `cadenza user enable {name}` lets them sign in again")


@user_app.command("enable")
def enable(name: str = NAME) -> None:
    """Let NAME sign in again (the tokens they had when disabled stay refused)."""
    with accounts() as store:
        store.set_disabled(name, False)
    console.print(f"{name}: enabled")


@user_app.command("delete")
def delete(
    name: str = NAME,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete NAME's account and their listening data (plays history, profile, sessions);
    their tokens are refused from now on."""
    with accounts() as store:
        if store.coll.find_one({"_id": name}, {"_id": 1}) is None:
            raise AccountError(f"no account {name}: see `cadenza user list`")
        if not yes:
            if not sys.stdin.isatty():
                raise AccountError(f"deleting {name} cannot be undone: pass --yes to confirm")
            usage = store.usage(name)
            typer.confirm(
                f"Delete {name}'s account, {usage.plays} plays, their profile and {usage.sessions} "
                "sessions? This cannot be undone",
                abort=True,
            )
        removed = store.delete(name)
    console.print(
        f"{name}: account deleted and tokens revoked; removed {removed.plays} plays, "
        f"{removed.profiles} profile(s), {removed.sessions} session(s)"
    )
