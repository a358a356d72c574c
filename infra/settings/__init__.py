"""Typed settings for every Cadenza deployable, read from ``CADENZA_*`` environment variables.

Source: the process environment (and an optional ``.env`` file in the working directory).
Each component's settings are a class of their own, in the module named after it
(:mod:`~infra.settings.local`, :mod:`~infra.settings.kafka`, :mod:`~infra.settings.mongo`,
:mod:`~infra.settings.spark`, :mod:`~infra.settings.model`, :mod:`~infra.settings.streams`,
:mod:`~infra.settings.recommender`, :mod:`~infra.settings.gateway`,
:mod:`~infra.settings.accounts`); :class:`Settings` is all
of them together, what every process reads with :func:`get_settings`, and what the settings
that span components (the cluster profile's defaults, paths under the data dir) live on.
``cadenza config`` prints them all and the README's configuration table, grouped by component,
is generated from these classes (``cadenza config --markdown``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError, model_validator

from infra.errors import ConfigError
from infra.settings.accounts import AccountsSettings
from infra.settings.etl import EtlSettings
from infra.settings.gateway import GatewaySettings
from infra.settings.kafka import KafkaSettings
from infra.settings.local import LocalSettings
from infra.settings.model import ModelSettings
from infra.settings.mongo import MongoSettings
from infra.settings.recommender import RECOMMENDER_TABLE, RecommenderSettings
from infra.settings.spark import SparkSettings
from infra.settings.streams import StreamSettings, duration_s
from infra.settings.token_secret import (
    MIN_TOKEN_SECRET_CHARS,
    NEW_SECRET_COMMAND,
    PUBLIC_TOKEN_SECRETS,
    TOKEN_SECRET_FILE,
    ensure_token_secret,
    gateway_refusal,
    is_loopback,
    read_token_secret,
    token_secret_problem,
    write_private,
)

#: Every component's settings class, in the order ``cadenza config`` and the README show them.
COMPONENTS: tuple[type, ...] = (
    LocalSettings,
    KafkaSettings,
    MongoSettings,
    SparkSettings,
    ModelSettings,
    StreamSettings,
    RecommenderSettings,
    GatewaySettings,
    AccountsSettings,
    EtlSettings,
)


class Settings(
    EtlSettings,
    AccountsSettings,
    GatewaySettings,
    RecommenderSettings,
    StreamSettings,
    ModelSettings,
    SparkSettings,
    MongoSettings,
    KafkaSettings,
    LocalSettings,
):
    """All of Cadenza's configuration: every component's settings in one object."""

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: object) -> object:
        """The cluster profile changes defaults only: anything set explicitly wins."""
        if not isinstance(data, dict) or data.get("stack_profile") != "cluster":
            return data
        port = data.get("spark_master_port", 7077)
        defaults = {
            "kafka_replication_factor": 3,
            "spark_master": f"spark://127.0.0.1:{port}",
            "faust_workers": 2,
            "gateways": 2,
        }
        return {**defaults, **data}

    # --- derived: settings that span components ------------------------------------------
    @property
    def models_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def checkpoints_path(self) -> Path:
        return self.checkpoint_dir or self.data_dir / "checkpoints"

    def broker_ports(self) -> list[tuple[int, int]]:
        """(listener, controller) port of each local broker: one, or ``kafka_brokers`` in a cluster."""
        count = self.kafka_brokers if self.clustered else 1
        return [(self.kafka_port + 100 * i, self.kafka_controller_port + 100 * i) for i in range(count)]

    @property
    def bootstrap_servers(self) -> str:
        """Where Kafka clients connect."""
        return self.kafka_bootstrap or ",".join(f"127.0.0.1:{port}" for port, _ in self.broker_ports())

    @property
    def audio_root(self) -> Path:
        """Where stored ``audio_path``s are relative to: the FMA root, else the demo's sample."""
        return self.fma_dir or self.data_dir / "sample-fma"

    @property
    def token_secret_path(self) -> Path:
        """The demo's generated token secret (``cadenza demo`` writes it, mode 0600)."""
        return self.data_dir / TOKEN_SECRET_FILE

    @property
    def recommender_group(self) -> str:
        """The recommender workers' Faust app id: their consumer group and table prefix."""
        return f"{self.topic_prefix}recommender"

    @property
    def recommender_changelog(self) -> str:
        """The changelog topic of the recommender's table (Faust's ``<app>-<table>-changelog``)."""
        return f"{self.recommender_group}-{RECOMMENDER_TABLE}-changelog"


def child_env(settings: Settings, **extra: object) -> dict[str, str]:
    """Environment for a child Cadenza process that talks to the same stack as ``settings``:
    this process's environment without its ``CADENZA_*`` variables, then the stack's
    addresses, topic prefix, database and data dir, then ``extra`` (``faust_port=6067``
    becomes ``CADENZA_FAUST_PORT=6067``)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    values: dict[str, object] = {
        "kafka_bootstrap": settings.bootstrap_servers,
        "mongodb_uri": settings.mongo_uri,
        "mongodb_db": settings.mongodb_db,
        "topic_prefix": settings.topic_prefix,
        "data_dir": settings.data_dir,
        **extra,
    }
    env.update({f"CADENZA_{name.upper()}": str(value) for name, value in values.items()})
    return env


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, CLI flags).

    Without a token secret (``CADENZA_TOKEN_SECRET`` unset or empty), the data dir's
    ``token-secret`` file is used if there is one, so ``cadenza token create`` and
    ``cadenza simulate`` sign tokens the demo's gateways accept.
    An invalid value raises a one-line :class:`ConfigError` naming the variable.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        if not settings.token_secret.get_secret_value():
            secret = read_token_secret(settings.token_secret_path)
            if secret is not None:
                settings = Settings(**{**overrides, "token_secret": secret})  # type: ignore[arg-type]
        return settings
    except ValidationError as err:
        problems = []
        for e in err.errors()[:3]:
            if not e["loc"]:  # a rule across several settings: the message names them
                problems.append(e["msg"].removeprefix("Value error, "))
                continue
            name = "CADENZA_" + "_".join(str(p) for p in e["loc"]).upper()
            problems.append(f"{name}={e.get('input')!r}: {e['msg']}")
        raise ConfigError("invalid setting " + "; ".join(problems) + " (see `cadenza config`)") from None


__all__ = [
    "COMPONENTS",
    "MIN_TOKEN_SECRET_CHARS",
    "NEW_SECRET_COMMAND",
    "PUBLIC_TOKEN_SECRETS",
    "RECOMMENDER_TABLE",
    "TOKEN_SECRET_FILE",
    "AccountsSettings",
    "EtlSettings",
    "GatewaySettings",
    "KafkaSettings",
    "LocalSettings",
    "ModelSettings",
    "MongoSettings",
    "RecommenderSettings",
    "Settings",
    "SparkSettings",
    "StreamSettings",
    "child_env",
    "duration_s",
    "ensure_token_secret",
    "gateway_refusal",
    "get_settings",
    "is_loopback",
    "read_token_secret",
    "token_secret_problem",
    "write_private",
]
