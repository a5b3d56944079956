"""Shared fixtures. Broker and database fixtures fail (not skip) under CI=true."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest
import structlog

from testkit.lifeline import reap_orphans
from tests.support.hypothesis_profiles import register_profiles

# Before any test module is imported: their ``scaled(...)`` settings read the loaded profile.
register_profiles()  # pytest's header names the loaded one

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_DSN = os.environ.get("POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Kill what earlier runs left behind (their watchdog was killed too; testkit/lifeline.py)."""
    reap_orphans()


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _require(service: str, url: str, default_port: int) -> str:
    if _reachable(url, default_port):
        return url
    message = f"{service} is not reachable at {urlparse(url).hostname}:{urlparse(url).port or default_port}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        # In CI a missing service is a broken environment, never a reason to pass.
        pytest.fail(message + " (CI=true: broker/database tests must run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """URL of the real RabbitMQ; fails under CI=true if unreachable, skips otherwise."""
    return _require("RabbitMQ", AMQP_URL, 5672)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the real PostgreSQL; fails under CI=true if unreachable, skips otherwise."""
    return _require("PostgreSQL", POSTGRES_DSN, 5432)


@pytest.fixture(autouse=True)
def _fresh_logging_config():
    """Undo any structlog configuration a test made (the CLI configures logging globally)."""
    yield
    structlog.reset_defaults()
