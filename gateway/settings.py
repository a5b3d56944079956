"""One typed settings object for a gateway: a TOML file, overridden by environment variables.

Every setting has one place: ``Settings``. Nothing else in the service reads
``os.environ``. Environment variables are ``GATEWAY_<FIELD>`` (upper case), plus the
conventional ``AMQP_URL``; they override the file, which overrides the defaults.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from gateway.errors import GatewayError

ROLES = ("caseworker", "supervisor", "auditor", "admin")
#: Choices of the ``event_loop`` setting (gateway/event_loop.py).
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


class SettingsError(GatewayError):
    """The configuration is missing something or has a wrong value."""

    code = "settings_error"


@dataclass(frozen=True)
class User:
    """A user: a name for the audit log, a role, and how they prove who they are.

    ``token_sha256`` (the SHA-256 of a bearer token) is for machines and the API;
    ``password_argon2`` (an argon2 PHC string, ``gateway users hash-password``) is for
    staff signing in to the workspace. A user has at least one of the two.
    """

    name: str
    role: str
    token_sha256: str | None = None
    password_argon2: str | None = field(default=None, repr=False)

    def matches(self, token: str) -> bool:
        """True if ``token`` is this user's token (constant-time comparison)."""
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        # A user without a token still costs one comparison, so timing does not tell who has one.
        return hmac.compare_digest(digest, self.token_sha256 or _NO_TOKEN) and self.token_sha256 is not None


#: Compared against when a user has no token: no SHA-256 output is 64 "x".
_NO_TOKEN = "x" * 64


@dataclass(frozen=True)
class Settings:
    """Everything one agency's gateway needs to run."""

    agency_id: str
    #: Folder of this agency's private key files (``gateway keys generate``).
    key_dir: Path | None = None
    #: Passphrase of the key files, if they are encrypted. Set it with the environment
    #: variable GATEWAY_KEY_PASSPHRASE rather than in the file; it is never printed.
    key_passphrase: str | None = field(default=None, repr=False)
    #: Use the public demo identity of ``agency_id`` instead of key files (demo only).
    demo_keys: bool = False
    directory_path: Path = Path("keys/demo/directory.json")
    authority_key_path: Path = Path("keys/demo/authority.pub.json")
    #: A demo directory (``"demo": true``) is refused unless this is set.
    allow_demo_directory: bool = False
    #: Warn (log, audit, /readyz, /metrics) when the directory in force was issued longer ago; 0: never.
    directory_max_age_hours: float = 168.0
    #: How often the gateway checks the store for a directory another process accepted, and freshness.
    directory_check_seconds: float = 10.0
    #: May carry the broker password: never printed.
    amqp_url: str = field(default="amqp://guest:guest@127.0.0.1:5672/", repr=False)
    #: ``amqp`` for RabbitMQ; ``memory`` only inside one process (demo, tests).
    transport: str = "amqp"
    #: Declare exchanges and queues at start-up (needs configure permission); production
    #: brokers import deploy/rabbitmq/definitions.json and set this false.
    declare_topology: bool = True
    exchange: str = "referrals"
    #: Prepended to queue names (``inbox.<ID>``, ``quarantine.<ID>``); tests use a unique one.
    queue_prefix: str = ""
    prefetch: int = 32
    store_url: str = "sqlite:///var/gateway.db"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    #: HMAC secret for case pseudonyms (32+ bytes, hex). Keep it as secret as the keys.
    pseudonym_secret_hex: str | None = field(default=None, repr=False)
    message_lifetime_days: int = 7
    #: Outbox retry backoff: first delay and cap, in seconds.
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    #: How often the outbox looks for due messages when nothing wakes it.
    outbox_poll_seconds: float = 1.0
    outbox_batch: int = 64
    #: A received message whose handling fails this many times (not counting transient
    #: failures: store unavailable, broker away) is quarantined as ``handler_failed``.
    #: Counted by each gateway process in memory, never from message headers.
    delivery_max_attempts: int = 3
    #: ``/readyz`` reports ``degraded`` after this many handler failures in a row (no
    #: success since), until a delivery succeeds or ``degraded_window_seconds`` pass
    #: without a failure.
    degraded_after_failures: int = 5
    degraded_window_seconds: float = 60.0
    users: tuple[User, ...] = ()
    log_level: str = "info"
    #: Event loop of ``gateway serve``: ``auto`` (uvloop where installed), ``uvloop`` or ``asyncio``.
    event_loop: str = "auto"
    #: Days a received message stays readable, by message type (TOML table
    #: ``[retention_days]``; env ``GATEWAY_RETENTION_DAYS="referral.request=365,case.followup=180"``).
    #: Types not listed keep ``retention_default_days``. Past it, the message key is destroyed.
    retention_days: Mapping[str, int] = field(default_factory=dict)
    retention_default_days: int = 365
    #: How often the retention task looks for expired messages.
    retention_poll_seconds: float = 3600.0
    #: Short-lived encryption keys (docs/keys.md): the period each key is valid, and how
    #: long after "no message sealed to it can still be valid" its private key is destroyed.
    enc_key_period_days: int = 7
    enc_key_grace_days: int = 1
    #: Days a quarantined body stays readable (re-drivable) before its quarantine key is destroyed.
    quarantine_retention_days: int = 30
    #: How often the audit log is checkpointed (signed) if it grew; 0 turns it off.
    checkpoint_interval_seconds: float = 60.0
    #: Partner agencies that receive our signed checkpoints (``audit.checkpoint``).
    audit_partners: tuple[str, ...] = ()
    #: Smallest count published in aggregate statistics (small-cell suppression).
    stats_min_cell: int = 11
    #: Workspace sessions (docs/workspace.md): signed out after this many idle minutes, and
    #: at the latest this many hours after signing in.
    workspace_idle_minutes: int = 30
    workspace_session_hours: float = 10.0
    #: Mark the session cookie Secure even when the request reached us over plain HTTP (a
    #: TLS-terminating proxy in front); HTTPS requests always get Secure.
    workspace_secure_cookies: bool = False

    def __post_init__(self) -> None:
        for user in self.users:
            if user.role not in ROLES:
                raise SettingsError(f"users: role {user.role!r} of {user.name!r} must be one of {list(ROLES)}")
            if user.token_sha256 is None and user.password_argon2 is None:
                raise SettingsError(f"users: {user.name!r} needs token_sha256 or password_argon2 (or both)")
            if user.token_sha256 is not None and (len(user.token_sha256) != 64
                                                  or any(c not in "0123456789abcdef" for c in user.token_sha256)):
                raise SettingsError(f"users: token_sha256 of {user.name!r} must be 64 hex digits")
            if user.password_argon2 is not None and not user.password_argon2.startswith("$argon2"):
                raise SettingsError(f"users: password_argon2 of {user.name!r} must be an argon2 hash "
                                    "(gateway users hash-password)")
        if len({user.name for user in self.users}) != len(self.users):
            raise SettingsError("users: each name may appear once")
        if self.workspace_idle_minutes < 1 or self.workspace_session_hours <= 0:
            raise SettingsError("workspace_idle_minutes must be at least 1 and workspace_session_hours positive")
        if self.workspace_idle_minutes > self.workspace_session_hours * 60:
            raise SettingsError("workspace_idle_minutes must not be longer than workspace_session_hours")
        if self.event_loop not in EVENT_LOOPS:
            raise SettingsError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}")
        if self.transport not in ("amqp", "memory"):
            raise SettingsError("transport must be 'amqp' or 'memory'")
        if not 1 <= self.message_lifetime_days <= 30:
            # Receivers refuse envelopes living longer than 30 days (docs/wire-format.md, check 10).
            raise SettingsError("message_lifetime_days must be between 1 and 30")
        if self.prefetch < 1 or self.outbox_batch < 1:
            raise SettingsError("prefetch and outbox_batch must be at least 1")
        if self.delivery_max_attempts < 1 or self.degraded_after_failures < 1 or self.degraded_window_seconds <= 0:
            raise SettingsError("delivery_max_attempts and degraded_after_failures must be at least 1, "
                                "degraded_window_seconds positive")
        if not 0 < self.retry_initial_seconds <= self.retry_max_seconds:
            raise SettingsError("retry_initial_seconds must be positive and at most retry_max_seconds")
        for message_type, days in self.retention_days.items():
            if not isinstance(days, int) or isinstance(days, bool) or days < 1:
                raise SettingsError(f"retention_days.{message_type} must be a whole number of days, at least 1")
        if self.retention_default_days < 1 or self.retention_poll_seconds <= 0:
            raise SettingsError("retention_default_days must be at least 1 and retention_poll_seconds positive")
        if self.directory_max_age_hours < 0 or self.directory_check_seconds <= 0:
            raise SettingsError("directory_max_age_hours must be 0 (never warn) or positive, "
                                "directory_check_seconds positive")
        if not 1 <= self.enc_key_period_days <= 365:
            raise SettingsError("enc_key_period_days must be between 1 and 365")
        if not 0 <= self.enc_key_grace_days <= 30:
            raise SettingsError("enc_key_grace_days must be between 0 and 30")
        if self.quarantine_retention_days < 1:
            raise SettingsError("quarantine_retention_days must be at least 1")
        if self.checkpoint_interval_seconds < 0:
            raise SettingsError("checkpoint_interval_seconds must be 0 (off) or positive")
        if not 0 <= self.http_port <= 65535:
            raise SettingsError("http_port must be between 0 (any free port) and 65535")
        if self.stats_min_cell < 1:
            raise SettingsError("stats_min_cell must be at least 1")
        if not self.demo_keys and self.key_dir is None:
            raise SettingsError("key_dir is required (or demo_keys = true for the demo)")
        if self.pseudonym_secret_hex is not None:
            _check_pseudonym_secret(self.pseudonym_secret_hex)

    def retention_for(self, message_type: str) -> int:
        """Days a received message of ``message_type`` stays readable."""
        return self.retention_days.get(message_type, self.retention_default_days)

    @property
    def pseudonym_secret(self) -> bytes:
        """The pseudonym HMAC secret as bytes."""
        if not self.pseudonym_secret_hex:
            raise SettingsError("pseudonym_secret_hex is not set")
        return _check_pseudonym_secret(self.pseudonym_secret_hex)


def _check_pseudonym_secret(text: str) -> bytes:
    """The secret's bytes; a SettingsError naming the rule (never the value) if it is empty, not hex or short."""
    if not isinstance(text, str) or not text.strip():
        raise SettingsError("pseudonym_secret_hex is empty: set it to 64 or more hex digits (openssl rand -hex 32)")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise SettingsError("pseudonym_secret_hex is not hexadecimal: use only 0-9 and a-f, an even number "
                            "of digits (openssl rand -hex 32)") from None
    if len(secret) < 32:
        raise SettingsError("pseudonym_secret_hex must be at least 32 bytes (64 hex digits)")
    return secret


_PATH_FIELDS = {"key_dir", "directory_path", "authority_key_path"}


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an optional TOML file and the environment (env wins)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read settings file {path}: {exc}") from None
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    known = {f.name: f for f in fields(Settings)}
    unknown = set(raw) - set(known)
    if unknown:
        raise SettingsError(f"unknown setting(s) {sorted(unknown)} in {path}")
    values: dict[str, Any] = dict(raw)
    for name in known:
        env_name = "AMQP_URL" if name == "amqp_url" and "AMQP_URL" in environ else f"GATEWAY_{name.upper()}"
        if env_name in environ and name != "users":
            values[name] = environ[env_name]
    if "agency_id" not in values:
        raise SettingsError("agency_id is required (settings file or GATEWAY_AGENCY_ID)")
    values["users"] = tuple(_user(u) for u in values.get("users", ()))
    for name, value in list(values.items()):
        values[name] = _coerce(name, value, base)
    return Settings(**values)


def _user(entry: Any) -> User:
    if (not isinstance(entry, Mapping) or not {"name", "role"} <= set(entry)
            or not set(entry) <= {"name", "role", "token_sha256", "password_argon2"}
            or not {"token_sha256", "password_argon2"} & set(entry)):
        raise SettingsError("each [[users]] entry needs name, role, and token_sha256 or password_argon2 (or both)")
    token = entry.get("token_sha256")
    password = entry.get("password_argon2")
    return User(str(entry["name"]), str(entry["role"]), None if token is None else str(token).lower(),
                None if password is None else str(password))


def _coerce(name: str, value: Any, base: Path) -> Any:
    default = next(f for f in fields(Settings) if f.name == name).default
    if name == "retention_days":
        return _retention(value)
    if name == "audit_partners":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise SettingsError("audit_partners must be a list of agency ids")
        return tuple(i.strip() for i in items if i.strip())
    if name in _PATH_FIELDS:
        if value is None:
            return None
        p = Path(value)
        return p if p.is_absolute() else base / p
    if isinstance(default, bool) or name in {"demo_keys", "allow_demo_directory", "declare_topology"}:
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"1", "true", "yes"}:
            return True
        if str(value).lower() in {"0", "false", "no"}:
            return False
        raise SettingsError(f"{name} must be true or false")
    if isinstance(default, int) and not isinstance(default, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be an integer") from None
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a number") from None
    return value


def load_amqp_url(environ: Mapping[str, str] | None = None) -> str:
    """The broker URL from AMQP_URL (or GATEWAY_AMQP_URL), else the default local broker."""
    environ = os.environ if environ is None else environ
    return environ.get("AMQP_URL") or environ.get("GATEWAY_AMQP_URL") or Settings.amqp_url


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """Return a copy of ``settings`` with some fields changed (tests, demo)."""
    return replace(settings, **changes)


__all__ = ["ROLES", "Settings", "SettingsError", "User", "load_amqp_url", "load_settings", "with_overrides"]


def _retention(value: Any) -> dict[str, int]:
    if isinstance(value, str):  # from the environment: "type=days,type=days"
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise SettingsError("retention_days must look like 'referral.request=365,receipt=30'")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, Mapping):
        raise SettingsError("retention_days must be a table of message type = days")
    try:
        return {str(k): int(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise SettingsError("retention_days values must be whole numbers of days") from None


#: What each Settings field means, for operators. ``python -m gateway.settings_doc`` renders
#: this into docs/settings.md (with name, environment variable, type and default taken from the
#: dataclass itself); tests/test_settings_doc.py fails if a field has no entry here or the page
#: is stale. A new setting needs a line here. Markdown; one or two sentences each.
SETTING_DOCS: dict[str, str] = {
    "agency_id": "This agency's id as listed in the signed directory, e.g. `NE-ANLTP-TIM` (country code first). "
                 "Required. The gateway consumes `inbox.<agency_id>` and signs as this agency.",
    "key_dir": "Folder of this agency's private key files, written by `gateway keys generate`. Required unless "
               "`demo_keys` is true. Files must be mode 0600 and owned by the service user; the gateway refuses "
               "group- or world-readable key files.",
    "key_passphrase": "Passphrase of the key files, if they were generated with one. Set it through "
                      "`GATEWAY_KEY_PASSPHRASE` in the service environment rather than in the file.",
    "demo_keys": "Use the public demo identity of `agency_id` (keys anyone can derive) instead of `key_dir`. "
                 "Demo and tests only.",
    "directory_path": "The signed agency directory (`gateway keys sign-directory`), the trust list of every "
                      "agency's public keys. The agency itself must be listed in it.",
    "authority_key_path": "The directory authority's public key (`authority.pub.json`): the trust anchor the "
                          "directory's signature is checked against.",
    "allow_demo_directory": "Accept a directory marked `\"demo\": true` (such as `keys/demo/directory.json`). "
                            "Refused otherwise; never set it in production.",
    "directory_max_age_hours": "The gateway warns when the directory in force was issued longer ago than this: "
                               "a `directory.stale` log line (at most hourly), one `directory.stale` audit entry "
                               "per serial and start, `stale: true` in `/readyz` (which stays 200) and "
                               "`gateway_directory_stale 1` in `/metrics`. The authority re-signs and publishes well "
                               "within it (docs/keys.md). "
                               "0 turns the warning off.",
    "directory_check_seconds": "How often the gateway looks in the store for a newer directory accepted by another "
                               "process of the same agency (one process takes each broker publication) and checks "
                               "freshness.",
    "amqp_url": "RabbitMQ URL of this country's broker with the agency's own user, e.g. "
                "`amqps://NE-ANLTP-TIM:<password>@rabbit.ne.example:5671/referrals`. `AMQP_URL` in the "
                "environment takes precedence over `GATEWAY_AMQP_URL` and the file.",
    "transport": "`amqp` (RabbitMQ at `amqp_url`) or `memory` (an in-process stand-in that only works inside "
                 "one process: demo and tests). `gateway serve` needs `amqp`.",
    "declare_topology": "Declare exchanges and queues at start-up; needs the broker's `configure` permission. "
                        "Production brokers import `deploy/rabbitmq/definitions.json` (or a country file) and "
                        "the gateway runs with `false`: it then only checks the queues and exchanges exist.",
    "exchange": "Name of the topic exchange messages are published to; the dead-letter (quarantine) exchange "
                "is this name plus `.dlx`. Must match the broker definitions (`referrals`).",
    "queue_prefix": "Prepended to the queue names `inbox.<agency_id>` and `quarantine.<agency_id>`. Leave "
                    "empty with the shipped broker definitions; tests use a unique prefix per run.",
    "delivery_max_attempts": "How many times the gateway itself runs a delivery whose handling fails with an "
                             "unexpected error (not a verification verdict, not a store or broker outage) before "
                             "it quarantines it as `handler_failed`. Counted per process by message id and body "
                             "digest, never from broker headers (deploy/rabbitmq/README.md#poison-messages).",
    "degraded_after_failures": "`/readyz` answers 503 `degraded` after this many handler failures in a row with no "
                               "successful delivery since.",
    "degraded_window_seconds": "`/readyz` stops saying `degraded` once a delivery succeeds or this many seconds "
                               "pass without a handler failure.",
    "prefetch": "How many deliveries the consumer holds unacknowledged at once, i.e. how many incoming "
                "messages are verified and stored concurrently (AMQP `basic.qos`). At least 1.",
    "store_url": "The durable store: `sqlite:////absolute/path.db` (one process) or "
                 "`postgresql://user@host/db?...` (several processes of one agency). Options and backups: "
                 "docs/store.md, deploy/postgres.md. Put a database password in `GATEWAY_STORE_URL`, not "
                 "in the file. The default (`var/gateway.db` under the working directory) is for the demo.",
    "http_host": "Address the HTTP API listens on. Keep `127.0.0.1` behind a TLS-terminating reverse proxy; "
                 "`0.0.0.0` only inside a container.",
    "http_port": "TCP port of the HTTP API (also `/healthz`, `/readyz`, `/metrics`).",
    "pseudonym_secret_hex": "HMAC secret (at least 32 bytes, as hex) that turns a local case id into the "
                            "case pseudonym; needed to submit by `local_case_id` (docs/api.md). Every process "
                            "of one agency needs the same value; losing or changing it breaks case continuity. "
                            "Set it through `GATEWAY_PSEUDONYM_SECRET_HEX`.",
    "message_lifetime_days": "Days an outgoing envelope stays valid (its `expires`); the outbox gives up on a "
                             "message it could not publish by then (status `failed`, reason `expired`). "
                             "1 to 30 (receivers refuse longer).",
    "retry_initial_seconds": "Outbox back-off after a failed publish: the first delay, doubled at every "
                             "further failure up to `retry_max_seconds`.",
    "retry_max_seconds": "Upper bound of the outbox back-off delay. At least `retry_initial_seconds`.",
    "outbox_poll_seconds": "How often the outbox looks for due messages when no new submission wakes it "
                           "(retries that came due, messages left by another process).",
    "outbox_batch": "Most outbox messages being published at once (each waits for its broker confirm); a message "
    "queued while that many are in flight waits for one of them to end. At least 1.",
    "users": "Users: `[[users]]` tables with `name` (recorded in the audit log), `role` (`caseworker`, "
             "`supervisor`, `auditor`, `admin`; see docs/api.md) and at least one of `token_sha256`, the SHA-256 "
             "hex of an API bearer token (never the token), and `password_argon2`, the argon2 hash of a "
             "workspace password written by `gateway users hash-password` (docs/workspace.md). Settings file "
             "only, not from the environment.",
    "event_loop": "Event loop `gateway serve` runs on: `auto` (uvloop where it is installed, which it is by "
    "default on Linux and macOS; else Python's asyncio loop), `uvloop` (refuses to start without it) or `asyncio`. "
    "uvloop takes about a tenth less CPU per referral (bench/README.md, issue 14).",
    "log_level": "Level of the gateway's own JSON log lines on stderr: `debug`, `info`, `warning`, `error`. "
                 "Libraries log warnings and up whatever this says.",
    "retention_days": "Days a received message stays readable, per message type (TOML table "
                      "`[retention_days]`; environment `referral.request=365,case.followup=180`). Past it the "
                      "message key is destroyed (docs/consent.md). Types not listed use "
                      "`retention_default_days`.",
    "retention_default_days": "Retention in days of received message types not listed in `retention_days`. "
                              "At least 1.",
    "retention_poll_seconds": "How often the retention task looks for expired messages to shred.",
    "enc_key_period_days": "Days each short-lived encryption key is valid; `gateway keys enc-ahead` generates "
                           "keys of this period ahead, and the gateway warns when it holds none starting later, "
                           "or when the key valid now ends more than this many days from now "
                           "(docs/keys.md, \"Short-lived encryption keys\"). 1 to 365.",
    "enc_key_grace_days": "Days after the last moment a message sealed to an encryption key can be valid "
                          "(its `not_after` + 30 days lifetime + 5 minutes skew) before the retention task "
                          "destroys the private key. 0 to 30.",
    "quarantine_retention_days": "Days a quarantined body stays readable (re-drivable); then the retention "
                                 "task destroys the key of that day's quarantine and the body is gone "
                                 "(docs/consent.md). At least 1.",
    "checkpoint_interval_seconds": "How often the audit log is checkpointed (signed) if it grew, and the "
                                   "checkpoint sent to `audit_partners`; 0 turns the periodic task off "
                                   "(docs/audit.md).",
    "audit_partners": "Partner agency ids that receive our signed audit checkpoints (`audit.checkpoint` "
                      "messages); environment: comma-separated. Empty: checkpoints are signed and kept only.",
    "stats_min_cell": "Smallest count published by `/stats` (small-cell suppression, docs/stats.md); a caller "
                      "may ask for more, never less. At least 1.",
    "workspace_idle_minutes": "A workspace session ends after this many minutes without a page request; the "
                              "user signs in again (docs/workspace.md). At least 1.",
    "workspace_session_hours": "A workspace session ends this many hours after signing in, however active "
                               "(a shared office computer left signed in). At least the idle timeout.",
    "workspace_secure_cookies": "Mark the workspace session cookie `Secure` on every answer. Set it when a "
                                "TLS-terminating proxy forwards plain HTTP to the gateway; requests that "
                                "arrive over HTTPS always get a `Secure` cookie.",
}
