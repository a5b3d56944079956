"""Two gateways (NE-ANLTP-TIM and NG-NAPTIP) for service, API and end-to-end tests."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from gateway.bootstrap import open_gateway
from gateway.envelope import Header, seal
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.transport import Delivery, MemoryBroker, TransportConfig, delete_topology

ROOT = Path(__file__).resolve().parent.parent
NIGER, NIGERIA = "NE-ANLTP-TIM", "NG-NAPTIP"


def settings_for(agency_id: str, tmp: Path, *, transport: str, amqp_url: str = "", run_id: str = "", **extra) -> Settings:
    """Demo-key settings with a private store and unique broker names per test run."""
    return Settings(
        agency_id=agency_id,
        demo_keys=True,
        directory_path=ROOT / "keys" / "demo" / "directory.json",
        authority_key_path=ROOT / "keys" / "demo" / "authority.pub.json",
        allow_demo_directory=True,
        transport=transport,
        amqp_url=amqp_url or Settings.amqp_url,
        exchange=f"test-{run_id}" if run_id else "referrals",
        queue_prefix=f"test-{run_id}." if run_id else "",
        store_url=f"sqlite:///{tmp / (agency_id + '.db')}",
        **{"retry_initial_seconds": 0.2, "retry_max_seconds": 2.0, "outbox_poll_seconds": 0.2, **extra},
    )


@asynccontextmanager
async def gateway_pair(tmp: Path, *, transport: str = "memory", amqp_url: str = "", **extra) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Start NE and NG gateways on one broker; stop them and clean up broker names afterwards."""
    async with gateway_group(tmp, (NIGER, NIGERIA), transport=transport, amqp_url=amqp_url, **extra) as (ne, ng):
        yield ne, ng


@asynccontextmanager
async def gateway_group(
    tmp: Path, agencies: tuple[str, ...], *, transport: str = "memory", amqp_url: str = "",
    per_agency: dict[str, dict] | None = None, **extra,
) -> AsyncIterator[list[Gateway]]:
    """Start one gateway per agency on one broker (``per_agency`` adds settings for one of them)."""
    run_id = uuid.uuid4().hex[:10]
    broker = MemoryBroker() if transport == "memory" else None
    gateways = []
    for agency in agencies:
        own = {**extra, **(per_agency or {}).get(agency, {})}
        settings = settings_for(agency, tmp, transport=transport, amqp_url=amqp_url, run_id=run_id, **own)
        gateways.append(await open_gateway(settings, broker=broker))
    try:
        for gw in gateways:
            await gw.start()
        for gw in gateways:
            await gw.wait_ready(30)
        yield gateways
    finally:
        for gw in gateways:
            await gw.stop()
            await gw.store.close()
        if transport == "amqp":
            await delete_topology(amqp_url, gateways[0].transport.config)


async def delete_broker_names(amqp_url: str, run_id: str, agencies) -> None:
    """Remove the exchanges and queues a test run declared."""
    await delete_topology(amqp_url, TransportConfig(
        exchange=f"test-{run_id}", dead_letter_exchange=f"test-{run_id}.dlx",
        inbox_prefix=f"test-{run_id}.inbox.", quarantine_prefix=f"test-{run_id}.quarantine.",
        agencies=tuple(agencies),
    ))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, interval: float = 0.05) -> None:
    """Wait until ``check()`` is true, or fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def deliver_sealed(sender: Gateway, recipient: Gateway, message_type: str, payload: dict, *,
                         case_ref: str) -> tuple[Header, bytes]:
    """What a non-conforming sender could do: seal ``payload`` by hand (skipping every check
    its own gateway would make) and hand it straight to the recipient's consumer."""
    header, envelope = seal(payload, message_type=message_type, sender=sender.identity,
                            recipient=recipient.agency_id, directory=sender.directory, case_ref=case_ref,
                            now=sender.clock())
    await recipient.handle_delivery(Delivery(header.id, sender.agency_id, recipient.agency_id, envelope, {}, False))
    return header, envelope
