"""Build a running Gateway from Settings: keys, directory, store, transport."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.clock import utcnow
from gateway.demo_identities import demo_identity
from gateway.directory import Directory, load_directory
from gateway.errors import DirectoryError
from gateway.keyfile import load_identity, parse_authority_public
from gateway.keys import AgencyIdentity
from gateway.service import Gateway
from gateway.settings import Settings, SettingsError
from gateway.store import open_store
from gateway.transport import AmqpTransport, MemoryBroker, MemoryTransport, Transport, TransportConfig


def read_directory(settings: Settings) -> Directory:
    """Load and verify the directory named by the settings (blocking file I/O: call off-loop)."""
    _, authority_key = parse_authority_public(Path(settings.authority_key_path).read_bytes(),
                                              source=str(settings.authority_key_path))
    directory = load_directory(Path(settings.directory_path).read_bytes(), [authority_key])
    if directory.demo and not settings.allow_demo_directory:
        raise DirectoryError("the directory is a demo directory; set allow_demo_directory = true to use it")
    directory.agency(settings.agency_id)  # our own agency must be listed
    return directory


def read_identity(settings: Settings) -> AgencyIdentity:
    """Load this agency's private keys (blocking file I/O: call off-loop)."""
    if settings.demo_keys:
        return demo_identity(settings.agency_id)
    passphrase = settings.key_passphrase.encode("utf-8") if settings.key_passphrase else None
    assert settings.key_dir is not None
    return load_identity(settings.key_dir, at=utcnow(), agency_id=settings.agency_id, passphrase=passphrase)


def transport_config(settings: Settings, directory: Directory) -> TransportConfig:
    """Transport names and limits from the settings."""
    return TransportConfig(
        exchange=settings.exchange,
        dead_letter_exchange=settings.exchange + ".dlx",
        inbox_prefix=settings.queue_prefix + "inbox.",
        quarantine_prefix=settings.queue_prefix + "quarantine.",
        agency_id=settings.agency_id,
        # Declaring every directory agency's inbox lets a fresh broker route to all of them;
        # a production broker imports deploy/rabbitmq/definitions.json instead.
        agencies=tuple(sorted(directory.agencies)) if settings.declare_topology else (),
        declare_topology=settings.declare_topology,
        prefetch=settings.prefetch,
    )


def make_transport(settings: Settings, directory: Directory, broker: MemoryBroker | None = None) -> Transport:
    """The transport the settings ask for (a memory broker must be shared by the caller)."""
    config = transport_config(settings, directory)
    if settings.transport == "memory":
        if broker is None:
            raise SettingsError("transport = 'memory' needs a shared in-process broker (demo and tests only)")
        return MemoryTransport(broker, config)
    return AmqpTransport(settings.amqp_url, config, connection_name=f"gateway {settings.agency_id}")


async def open_gateway(settings: Settings, *, broker: MemoryBroker | None = None) -> Gateway:
    """Load keys and directory off the event loop, open the store, build the transport."""
    directory = await asyncio.to_thread(read_directory, settings)
    identity = await asyncio.to_thread(read_identity, settings)
    store = await open_store(settings.store_url)
    return Gateway(settings, identity, directory, store, make_transport(settings, directory, broker))
