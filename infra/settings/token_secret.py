"""The token secret and bind-address rules every gateway checks at start (secure defaults),
and the demo's generated secret file (``<data_dir>/token-secret``, mode 0600)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from infra.errors import ConfigError

#: Shortest token secret a gateway accepts (``secrets.token_urlsafe(32)`` gives 43 characters).
MIN_TOKEN_SECRET_CHARS = 32
#: Token secrets that are public (earlier defaults, examples): never accepted.
PUBLIC_TOKEN_SECRETS = frozenset({"change-me-in-production"})
#: How to make a secret, for error messages and docs.
NEW_SECRET_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
#: The demo's generated token secret, in the data dir (mode 0600).
TOKEN_SECRET_FILE = "token-secret"


def is_loopback(host: str) -> bool:
    """True if ``host`` is a loopback address or ``localhost`` (only this machine can connect);
    False for the wildcard addresses (``0.0.0.0``, ``::``, ``""``) and any other name."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def token_secret_problem(secret: str) -> str | None:
    """What is wrong with ``secret`` as a token signing key (empty, public, short), or None."""
    if not secret:
        return "is not set"
    if secret in PUBLIC_TOKEN_SECRETS:
        return "is a published example value"
    if len(secret) < MIN_TOKEN_SECRET_CHARS:
        return f"has {len(secret)} characters, fewer than {MIN_TOKEN_SECRET_CHARS}"
    return None


def gateway_refusal(secret: str, host: str, demo_signin: bool) -> str | None:
    """Why a gateway with this token secret, bind address and demo sign-in must not start
    (a one-line message saying what to set), or None when it may.

    Demo sign-in lets anyone sign in as any listener, so it is served on loopback only.
    A gateway needs a strong secret (:func:`token_secret_problem`) unless it is a demo
    gateway on loopback, where only this machine can reach it.
    """
    if demo_signin and not is_loopback(host):
        return (
            f"demo sign-in (CADENZA_DEMO_SIGNIN=true) lets anyone sign in as any listener, so it is "
            f"served on loopback only, and this gateway would listen on {host!r}: set "
            "CADENZA_DEMO_SIGNIN=false (listeners then need tokens from `cadenza token create`), "
            "or CADENZA_GATEWAY_HOST=127.0.0.1"
        )
    problem = token_secret_problem(secret)
    if problem is not None and not demo_signin:
        return (
            f"CADENZA_TOKEN_SECRET {problem}, so anyone could forge listener tokens: set it to at "
            f"least {MIN_TOKEN_SECRET_CHARS} random characters, the same on every gateway, e.g. "
            f"the output of {NEW_SECRET_COMMAND}"
        )
    return None


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable and writable by its owner only (mode 0600), atomically:
    a temporary file created 0600 (never readable by others, whatever the umask or the old
    file's mode), then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover temporary file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def read_token_secret(path: Path) -> str | None:
    """The secret in ``path`` (``cadenza demo``'s generated one), None if there is no such file;
    a :class:`ConfigError` if other users may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise ConfigError(f"{path} holds the token secret but other users may read it: run chmod 600 {path}")
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"cannot read the token secret in {path} ({err}); delete it to make a new one"
        ) from None


def ensure_token_secret(path: Path) -> str:
    """The secret in ``path``, created first (random, mode 0600) if there is none."""
    found = read_token_secret(path)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of two demos starting at once, one writes and both read its secret
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token_secret(path) or ""
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)  # whatever the umask
        fh.write(secrets.token_urlsafe(32) + "\n")
    return read_token_secret(path) or ""
