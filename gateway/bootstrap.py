"""Build a running Gateway from Settings: keys, directory, store, transport."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiormq.exceptions
import structlog
from yarl import URL

from gateway.clock import utcnow
from gateway.demo_identities import demo_identity
from gateway.directory import Directory, load_directory
from gateway.directory_updates import DirectoryKeeper
from gateway.errors import DirectoryError, DirectoryRollbackError, GatewayError
from gateway.key_lifecycle import KeyDirectory
from gateway.keyfile import load_identity, parse_authority_public
from gateway.keys import AgencyIdentity
from gateway.service import Gateway
from gateway.settings import Settings, SettingsError
from gateway.store import open_store
from gateway.transport.directory_feed import AmqpDirectoryFeed, DirectoryFeed, FeedNames, MemoryDirectoryFeed
from gateway.transport import (
    AmqpTransport,
    MemoryBroker,
    MemoryTransport,
    TopologyError,
    Transport,
    TransportConfig,
    TransportUnavailableError,
)

log = structlog.get_logger("gateway.bootstrap")


class StartupError(GatewayError):
    """The gateway cannot start as configured; the message says what to fix."""

    code = "startup_error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _read(path: Path, what: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DirectoryError(f"cannot read the {what} {path} ({setting}): {exc.strerror}") from None


def read_directory_files(settings: Settings) -> tuple[bytes, bytes]:
    """(authority public key, signed directory file) named by the settings (blocking: call off-loop)."""
    _, authority_key = parse_authority_public(
        _read(settings.authority_key_path, "authority public key", "authority_key_path"),
        source=str(settings.authority_key_path))
    return authority_key, _read(settings.directory_path, "directory file", "directory_path")


def read_directory(settings: Settings) -> Directory:
    """Load and verify the directory named by the settings (blocking file I/O: call off-loop)."""
    _, authority_key = parse_authority_public(
        _read(settings.authority_key_path, "authority public key", "authority_key_path"),
        source=str(settings.authority_key_path))
    directory = load_directory(_read(settings.directory_path, "directory file", "directory_path"), [authority_key])
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


def make_directory_feed(settings: Settings, broker: MemoryBroker | None = None) -> DirectoryFeed:
    """The authority's directory feed on the same broker as the transport."""
    names = FeedNames.for_agency(settings.exchange, settings.queue_prefix, settings.agency_id,
                                 declare=settings.declare_topology)
    if settings.transport == "memory":
        if broker is None:
            raise SettingsError("transport = 'memory' needs a shared in-process broker (demo and tests only)")
        return MemoryDirectoryFeed(broker, names)
    return AmqpDirectoryFeed(settings.amqp_url, names, connection_name=f"gateway {settings.agency_id} directory")


async def open_gateway(settings: Settings, *, broker: MemoryBroker | None = None) -> Gateway:
    """Load keys and directory off the event loop, open the store, build the transport.

    The directory in force is the file's if it is newer than every directory this gateway
    accepted before, else the newest accepted one (docs/keys.md "Rollback protection")."""
    authority_key, signed = await asyncio.to_thread(read_directory_files, settings)
    identity = await asyncio.to_thread(read_identity, settings)
    store = await open_store(settings.store_url)
    keeper = DirectoryKeeper(store, (authority_key,), agency_id=settings.agency_id,
                             allow_demo=settings.allow_demo_directory, clock=utcnow)
    try:
        directory = await keeper.startup(signed)
    except DirectoryRollbackError as exc:
        await store.close()
        raise StartupError("directory_rollback", str(exc)) from None
    except BaseException:
        await store.close()
        raise
    return Gateway(settings, identity, directory, store, make_transport(settings, directory, broker),
                   directory_keeper=keeper, directory_feed=make_directory_feed(settings, broker),
                   key_source=key_source(settings))


def key_source(settings: Settings) -> KeyDirectory | None:
    """The key directory the gateway reloads keys generated ahead from (None with demo keys)."""
    if settings.demo_keys or settings.key_dir is None:
        return None
    passphrase = settings.key_passphrase.encode("utf-8") if settings.key_passphrase else None
    return KeyDirectory(Path(settings.key_dir), passphrase)


async def check_broker(transport: Transport, settings: Settings) -> None:
    """Connect once before serving: a refused login, vhost or missing topology is a configuration error.

    An unreachable broker is not: the gateway keeps accepting referrals into the outbox
    and connects when the broker is back, so that only logs a warning.
    """
    try:
        await transport.start()
    except TopologyError as exc:
        hint = ("import deploy/rabbitmq/definitions.json on the broker, or set declare_topology = true"
                if not settings.declare_topology else "check the broker user's configure permission")
        raise StartupError("broker_topology", f"{exc} ({hint})") from None
    except TransportUnavailableError as exc:
        refusal = broker_refusal(exc.__cause__, settings.amqp_url)
        if refusal is not None:
            raise StartupError(*refusal) from None
        log.warning("transport.unreachable_at_start", broker=broker_address(settings.amqp_url), error=exc.code,
                    exc_type=type(exc.__cause__).__name__)


def broker_address(url: str) -> str:
    """``host:port/vhost`` of a broker URL, never its credentials."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}{parsed.path or '/'}"


def broker_refusal(cause: BaseException | None, url: str) -> tuple[str, str] | None:
    """(code, message) if the broker answered but refused the login or the vhost; None if unreachable."""
    parsed = URL(url)
    user = parsed.user or "guest"
    vhost = parsed.path[1:] if parsed.path not in ("", "/") else "/"
    where = f"{parsed.host}:{parsed.port}"
    if isinstance(cause, (aiormq.exceptions.ProbableAuthenticationError, aiormq.exceptions.AuthenticationError)):
        return ("broker_login_refused",
                f"the broker at {where} refused the login of user {user!r}: check the user and password in "
                f"amqp_url (AMQP_URL)")
    # RabbitMQ answers connection.open for a vhost that is missing or not permitted with
    # connection.close (530 NOT_ALLOWED), which aiormq reports as an unexpected frame.
    text = str(cause) if cause is not None else ""
    if isinstance(cause, aiormq.exceptions.ConnectionNotAllowed) or (
            isinstance(cause, aiormq.exceptions.InvalidFrameError)
            and "Connection.OpenOk" in text and "Connection.Close" in text):
        return ("broker_vhost_refused",
                f"the broker at {where} refused virtual host {vhost!r} to user {user!r}: the vhost does not "
                f"exist or the user has no permission on it (amqp_url path)")
    return None
