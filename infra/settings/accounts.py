"""Settings of listener accounts: password sign-in, its limits against guessing, and how soon
every gateway sees an account disabled, deleted or given a new password."""

from __future__ import annotations

from pydantic import Field

from infra.settings.component import Component


class AccountsSettings(Component):
    """Accounts settings: see each field's description."""

    password_signin: bool = Field(
        True,
        description="Offer sign-in with a name and password (POST /api/login) for the accounts made "
        "with `cadenza user add`; the player shows a password field.",
    )
    signin_max_failures: int = Field(
        5,
        ge=1,
        description="Wrong passwords for one account name within signin_window_s before that name is "
        "locked out for signin_lockout_s (HTTP 429 with Retry-After, shared by every gateway).",
    )
    signin_max_failures_per_address: int = Field(
        20,
        ge=1,
        description="Wrong passwords from one client address (whatever the names) within "
        "signin_window_s before that address is refused for signin_lockout_s (HTTP 429).",
    )
    signin_window_s: float = Field(
        900.0, gt=0, description="Seconds over which failed sign-ins are counted for a lockout."
    )
    signin_lockout_s: float = Field(
        900.0, gt=0, description="Seconds an account name or client address stays locked out."
    )
    accounts_poll_s: float = Field(
        1.0,
        ge=0.1,
        le=2.0,
        description="Seconds between each gateway's reads of the accounts changed since its last "
        "read: a disabled or deleted account, or a changed password, is refused within this (and "
        "its open websockets closed).",
    )
