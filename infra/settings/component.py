"""The base of every component's settings: ``CADENZA_*`` environment variables (and an
optional ``.env`` file in the working directory), frozen once read.

Each component's class (:mod:`infra.settings.kafka`, :mod:`infra.settings.gateway`, …) can be
read on its own; :class:`infra.settings.Settings` is all of them together.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Component(BaseSettings):
    """Settings of one component. Environment variable = ``CADENZA_`` + field name."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_", env_file=".env", extra="ignore", frozen=True)
