"""Shared by the two-broker fault tests: the NG node, a provisioned NE/NG pair of brokers
joined by shovels (through cuttable proxies), and counts taken from both stores."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from gateway.store import Store
from testkit.harness import db_path, received_audit_counts, statuses, table_counts
from testkit.rabbit_nodes import (
    CountryTopology,
    RabbitNode,
    RabbitNodeError,
    ShovelLink,
    SystemNode,
    provision_country,
    rabbit_available,
    start_node,
    system_node,
)

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition_missing: str | None) -> None:
    """Skip locally, fail under CI=true (a missing prerequisite is a broken CI environment)."""
    if condition_missing:
        if CI:
            pytest.fail(condition_missing + " (CI=true: the two-broker tests must run)", pytrace=False)
        pytest.skip(condition_missing)


@pytest.fixture(scope="module")
def ng_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    """A second RabbitMQ node (Nigeria's broker) for the whole module; stopped at the end."""
    require(rabbit_available())
    try:
        node = asyncio.run(start_node(tmp_path_factory.mktemp("ng-broker"), name="ng"))
    except RabbitNodeError as exc:
        require(f"cannot start a second RabbitMQ node: {exc}")
        raise
    try:
        yield node
    finally:
        asyncio.run(node.stop())


@dataclass
class TwoBrokers:
    """NE on the machine's broker, NG on ``ng_node``, shovels both ways through ``link``."""

    run_id: str
    ne_node: SystemNode
    ng_node: RabbitNode
    ne: CountryTopology
    ng: CountryTopology
    link: ShovelLink


@pytest.fixture
async def two_brokers(amqp_url: str, ng_node: RabbitNode) -> AsyncIterator[TwoBrokers]:
    system = system_node(amqp_url)
    try:
        await system.ensure_plugin("rabbitmq_shovel")
    except RabbitNodeError as exc:
        require(f"cannot enable rabbitmq_shovel on {system.node}: {exc}")
    if not ng_node.running:  # a previous test may have left it killed
        await ng_node.start()
    run_id = uuid.uuid4().hex[:10]
    ne = await provision_country(system, "NE", run_id)
    ng = await provision_country(ng_node, "NG", run_id)
    link = await ShovelLink.open(system, ng_node, a_to_b=ne.shovels("NG"), b_to_a=ng.shovels("NE"))
    try:
        yield TwoBrokers(run_id, system, ng_node, ne, ng, link)
    finally:
        await link.close()  # shovels on the system broker are always deleted
        await ne.remove()
        if ng_node.running:
            await ng.remove()


@dataclass
class Tally:
    """Counted from the stores: what NE sent, what NG stored, what came back."""

    submitted: int
    sent: int          # NE outbox: broker confirmed (status sent or later)
    receipted: int     # NE outbox: status delivered (NG's receipt came back across the link)
    stored: int        # NG inbox rows among the submitted ids
    extra_rows: int    # NG inbox rows that are not among the submitted ids (must be 0)
    duplicated: int    # application-level second deliveries (NG ``message.received`` audit > 1)
    lost: int          # submitted ids NG never stored

    def line(self) -> str:
        return (f"submitted={self.submitted} sent={self.sent} receipted={self.receipted} stored={self.stored} "
                f"duplicated={self.duplicated} lost={self.lost} extra_rows={self.extra_rows}")


async def tally(tmp: Path, ne_store: Store, ng_store: Store, ids: list[str]) -> Tally:
    from testkit.gateway_pair import NIGERIA

    status = await statuses(ne_store, ids)
    stored = {i for i in ids if await ng_store.get_incoming(i) is not None}
    received = await received_audit_counts(ng_store)
    inbox_rows = sum(table_counts(db_path(tmp, NIGERIA))["inbox"].values())
    return Tally(
        submitted=len(ids),
        sent=sum(s in {"sent", "delivered"} for s in status.values()),
        receipted=sum(s == "delivered" for s in status.values()),
        stored=len(stored),
        extra_rows=inbox_rows - len(stored),
        duplicated=sum(n - 1 for i, n in received.items() if i in set(ids) and n > 1),
        lost=len(set(ids) - stored),
    )
