"""Shared pieces of the gateway tests: component apps (no Kafka/MongoDB) and tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.tokens import issue
from infra.settings import Settings

SECRET = "test-secret"


def token_for(user: str, settings: Settings, ttl: int = 3600) -> str:
    return issue(settings.token_secret.get_secret_value(), user, now=time.time(), ttl_s=ttl)


@pytest.fixture
def component_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, token_secret=SECRET, demo_signin=True, ws_queue_size=8)


@pytest.fixture
def component(component_settings: Settings) -> Iterator[TestClient]:
    """The gateway app without its Kafka feed, producer or MongoDB client."""
    with TestClient(create_app(component_settings, start_feed=False)) as client:
        yield client
