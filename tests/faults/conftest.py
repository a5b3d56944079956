"""Fixtures of the fault tests: a unique broker namespace per test, and subprocess cleanup."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from gateway.bootstrap import read_directory
from testkit.gateway_pair import NIGER, delete_broker_names, settings_for

from testkit.harness import GatewayProcess


@pytest.fixture
async def run_id(amqp_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A unique exchange/queue prefix; everything under it is deleted afterwards."""
    rid = uuid.uuid4().hex[:10]
    yield rid
    directory = read_directory(settings_for(NIGER, tmp_path, transport="amqp", amqp_url=amqp_url, run_id=rid))
    await delete_broker_names(amqp_url, rid, directory.agencies)


@pytest.fixture
async def gateway_process(tmp_path: Path, run_id: str, amqp_url: str) -> AsyncIterator[Callable[..., GatewayProcess]]:
    """``gateway_process(**options)`` -> a GatewayProcess (not started); any still running
    at the end is killed -- only processes this test started."""
    made: list[GatewayProcess] = []

    def factory(**options) -> GatewayProcess:
        process = GatewayProcess(tmp_path, run_id, amqp_url, **options)
        made.append(process)
        return process

    yield factory
    for process in made:
        if process.running:
            await process.kill()
