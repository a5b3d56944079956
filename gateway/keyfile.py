"""Private key files: generate, write (mode 0600), read, export public entries.

A key file holds one private key of one agency with its validity period. The secret is
either stored as-is (the file's permissions are its only protection) or encrypted under
a passphrase with Argon2id + XSalsa20-Poly1305. The rest of the file (agency, use, kid,
validity) is stored in clear: it is not secret, and the directory, not the key file, is
authoritative for validity.

This module does file I/O; it is operator tooling, not part of the message path.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from gateway.b64 import b64url_decode, b64url_encode
from gateway.canonical import strict_loads
from gateway.clock import format_ts, parse_ts
from gateway.errors import KeyFileError
from gateway.keys import AgencyIdentity, key_id

FORMAT = "rgw-private-key/1"
PUBLIC_FORMAT = "rgw-public-keys/1"
KEY_SUFFIX = ".key"
PUBLIC_FILE = "public.json"

KeyUse = Literal["sig", "enc"]
ALG_FOR_USE: dict[str, str] = {"sig": "Ed25519", "enc": "X25519"}

_KDF = "argon2id13"
_CIPHER = "xsalsa20poly1305"
#: Upper bounds on the KDF cost read from a file, so a crafted file cannot make us
#: allocate gigabytes or spin for minutes.
_MAX_OPSLIMIT = 64
_MAX_MEMLIMIT = 1 << 30


@dataclass(frozen=True)
class KdfLimits:
    """Argon2id cost parameters (libsodium opslimit/memlimit)."""

    opslimit: int
    memlimit: int


#: libsodium's "moderate" limits (3 passes, 256 MiB): the default for real key files.
MODERATE = KdfLimits(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
#: libsodium's "interactive" limits (2 passes, 64 MiB): for tests that must stay fast.
INTERACTIVE = KdfLimits(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)
#: What the CLI uses when it writes an encrypted key file (tests lower it to INTERACTIVE).
DEFAULT_LIMITS = MODERATE


@dataclass(frozen=True)
class KeyPair:
    """One private key of an agency (32-byte secret) with its use and validity period."""

    agency_id: str
    use: KeyUse
    secret: bytes
    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        if self.use not in ALG_FOR_USE:
            raise ValueError("use must be 'sig' or 'enc'")
        if len(self.secret) != 32:
            raise ValueError("secret must be 32 bytes")
        if self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")

    def __repr__(self) -> str:
        # Never let the secret reach a log or a traceback through repr().
        return f"KeyPair(agency_id={self.agency_id!r}, use={self.use!r}, kid={self.kid!r})"

    @property
    def alg(self) -> str:
        """``Ed25519`` for a signing key, ``X25519`` for an encryption key."""
        return ALG_FOR_USE[self.use]

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        if self.use == "sig":
            return bytes(SigningKey(self.secret).verify_key)
        return bytes(PrivateKey(self.secret).public_key)

    @property
    def kid(self) -> str:
        """Key id of the public key (see ``gateway.keys.key_id``)."""
        return key_id(self.public_key)

    def signing_key(self) -> SigningKey:
        """The Ed25519 signing key (only for ``use == 'sig'``)."""
        if self.use != "sig":
            raise KeyFileError(f"key {self.kid} is an encryption key, not a signing key")
        return SigningKey(self.secret)

    def private_key(self) -> PrivateKey:
        """The X25519 private key (only for ``use == 'enc'``)."""
        if self.use != "enc":
            raise KeyFileError(f"key {self.kid} is a signing key, not an encryption key")
        return PrivateKey(self.secret)

    def valid_at(self, moment: datetime) -> bool:
        """True if ``moment`` lies within [not_before, not_after]."""
        return self.not_before <= moment <= self.not_after


# --- generation and export (pure) -------------------------------------------------------


def generate_key(agency_id: str, use: KeyUse, *, not_before: datetime, not_after: datetime) -> KeyPair:
    """Generate a fresh random key of the given use."""
    return KeyPair(agency_id, use, nacl.utils.random(32), not_before, not_after)


def generate_agency_keys(agency_id: str, *, not_before: datetime, valid_days: int) -> tuple[KeyPair, KeyPair]:
    """Generate a signing and an encryption key for an agency, valid ``valid_days`` from ``not_before``."""
    if valid_days < 1:
        raise KeyFileError("validity must be at least one day")
    not_after = not_before + timedelta(days=valid_days)
    return (
        generate_key(agency_id, "sig", not_before=not_before, not_after=not_after),
        generate_key(agency_id, "enc", not_before=not_before, not_after=not_after),
    )


def public_entry(pair: KeyPair) -> dict[str, str]:
    """The public half in exactly the shape of a directory ``keys[]`` entry."""
    return {
        "kid": pair.kid,
        "use": pair.use,
        "alg": pair.alg,
        "public_key": b64url_encode(pair.public_key),
        "not_before": format_ts(pair.not_before),
        "not_after": format_ts(pair.not_after),
    }


def public_document(agency_id: str, pairs: list[KeyPair]) -> dict[str, Any]:
    """The ``public.json`` document: an agency id and its public entries (oldest first)."""
    ordered = sorted(pairs, key=lambda p: (p.use, p.not_before, p.kid))
    return {"format": PUBLIC_FORMAT, "agency": agency_id, "keys": [public_entry(p) for p in ordered]}


def identity_from_keys(pairs: list[KeyPair], *, at: datetime, agency_id: str | None = None) -> AgencyIdentity:
    """Build an identity: the newest signing key valid at ``at``, and every encryption key on disk.

    Validity dates choose what we sign with. For decryption every encryption private key
    we still hold is kept, expired ones included: messages stored in the inbox were sealed
    to the key of their day, and rotating must not make them unreadable. An agency that
    wants old messages unreadable deletes the old key file (or shreds the messages).
    """
    agencies = {p.agency_id for p in pairs}
    if agency_id is None:
        if len(agencies) != 1:
            raise KeyFileError(f"keys of {len(agencies)} agencies found; say which agency to load")
        (agency_id,) = agencies
    mine = [p for p in pairs if p.agency_id == agency_id]
    sig = [p for p in mine if p.use == "sig" and p.valid_at(at)]
    enc = [p for p in mine if p.use == "enc"]
    if not sig:
        raise KeyFileError(f"no signing key of {agency_id} is valid at {format_ts(at)}")
    if not any(p.valid_at(at) for p in enc):
        raise KeyFileError(f"no encryption key of {agency_id} is valid at {format_ts(at)}")
    newest = max(sig, key=lambda p: (p.not_before, p.kid))
    identity = AgencyIdentity.create(agency_id, newest.signing_key(), *(p.private_key() for p in enc))
    identity.encryption_validity.update({p.kid: (p.not_before, p.not_after) for p in enc})
    return identity


# --- file encoding (pure) ---------------------------------------------------------------


def encode_key_file(pair: KeyPair, passphrase: bytes | None = None, *, limits: KdfLimits = MODERATE) -> bytes:
    """Serialise a key to key-file bytes, encrypting the secret if a passphrase is given."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "agency": pair.agency_id,
        "use": pair.use,
        "alg": pair.alg,
        "kid": pair.kid,
        "not_before": format_ts(pair.not_before),
        "not_after": format_ts(pair.not_after),
    }
    if passphrase is None:
        doc["private_key"] = b64url_encode(pair.secret)
    else:
        _check_passphrase(passphrase)
        salt = nacl.utils.random(argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(_derive(passphrase, salt, limits))
        doc["encrypted"] = {
            "kdf": _KDF,
            "opslimit": limits.opslimit,
            "memlimit": limits.memlimit,
            "salt": b64url_encode(salt),
            "cipher": _CIPHER,
            # The nonce is random and stored as the first 24 bytes of the ciphertext.
            "ciphertext": b64url_encode(bytes(box.encrypt(pair.secret))),
        }
    return (json.dumps(doc, indent=2) + "\n").encode("ascii")


def decode_key_file(data: bytes, passphrase: bytes | None = None, *, source: str = "key file") -> KeyPair:
    """Parse key-file bytes, decrypting with the passphrase if the secret is encrypted."""
    try:
        doc = strict_loads(data)
    except ValueError:
        raise KeyFileError(f"{source}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{source}: must be a JSON object")
    common = {"format", "agency", "use", "alg", "kid", "not_before", "not_after"}
    secret_member = ({"private_key", "encrypted"} & doc.keys())
    if len(secret_member) != 1:
        raise KeyFileError(f"{source}: must have exactly one of 'private_key' or 'encrypted'")
    _exact(doc, common | secret_member, source)
    if doc["format"] != FORMAT:
        raise KeyFileError(f"{source}: format must be {FORMAT!r}")
    use = doc["use"]
    if use not in ALG_FOR_USE:
        raise KeyFileError(f"{source}: use must be 'sig' or 'enc'")
    if doc["alg"] != ALG_FOR_USE[use]:
        raise KeyFileError(f"{source}: a {use!r} key must have alg {ALG_FOR_USE[use]}")
    if not isinstance(doc["agency"], str) or not doc["agency"]:
        raise KeyFileError(f"{source}: agency must be a non-empty string")
    try:
        not_before, not_after = parse_ts(doc["not_before"]), parse_ts(doc["not_after"])
    except ValueError as exc:
        raise KeyFileError(f"{source}: {exc}") from None
    if "private_key" in doc:
        secret = _b64(doc["private_key"], source, "private_key")
    else:
        if passphrase is None:
            raise KeyFileError(f"{source}: key is passphrase-protected; give a passphrase")
        secret = _decrypt(doc["encrypted"], passphrase, source)
    try:
        pair = KeyPair(doc["agency"], use, secret, not_before, not_after)
    except ValueError as exc:
        raise KeyFileError(f"{source}: {exc}") from None
    if pair.kid != doc["kid"]:
        raise KeyFileError(f"{source}: kid does not match the private key")
    return pair


def _decrypt(enc: Any, passphrase: bytes, source: str) -> bytes:
    _exact(enc, {"kdf", "opslimit", "memlimit", "salt", "cipher", "ciphertext"}, f"{source}: encrypted")
    if enc["kdf"] != _KDF or enc["cipher"] != _CIPHER:
        raise KeyFileError(f"{source}: unsupported kdf or cipher (expected {_KDF}, {_CIPHER})")
    ops, mem = enc["opslimit"], enc["memlimit"]
    for name, value, low, high in (
        ("opslimit", ops, argon2id.OPSLIMIT_MIN, _MAX_OPSLIMIT),
        ("memlimit", mem, argon2id.MEMLIMIT_MIN, _MAX_MEMLIMIT),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise KeyFileError(f"{source}: encrypted.{name} must be an integer in [{low}, {high}]")
    salt = _b64(enc["salt"], source, "encrypted.salt")
    if len(salt) != argon2id.SALTBYTES:
        raise KeyFileError(f"{source}: encrypted.salt must be {argon2id.SALTBYTES} bytes")
    ciphertext = _b64(enc["ciphertext"], source, "encrypted.ciphertext")
    _check_passphrase(passphrase)
    try:
        return nacl.secret.SecretBox(_derive(passphrase, salt, KdfLimits(ops, mem))).decrypt(ciphertext)
    except CryptoError:
        raise KeyFileError(f"{source}: wrong passphrase or corrupted key file") from None


def _derive(passphrase: bytes, salt: bytes, limits: KdfLimits) -> bytes:
    return argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=limits.opslimit, memlimit=limits.memlimit
    )


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes) or not passphrase:
        raise KeyFileError("passphrase must be non-empty")


def _exact(value: Any, expected: set[str], where: str) -> None:
    if not isinstance(value, dict):
        raise KeyFileError(f"{where}: must be an object")
    missing, extra = expected - value.keys(), value.keys() - expected
    if missing or extra:
        raise KeyFileError(f"{where}: missing {sorted(missing)} / unexpected {sorted(extra)} member(s)")


def _b64(value: Any, source: str, member: str) -> bytes:
    try:
        return b64url_decode(value)
    except ValueError:
        raise KeyFileError(f"{source}: {member} is not unpadded base64url") from None


# --- files ------------------------------------------------------------------------------


def write_private_file(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` atomically, created with mode 0600 from the start.

    The file is created with ``os.open(..., 0o600)`` so the secret is never, even
    briefly, readable by others; a later chmod would leave a window.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private_file(path: Path) -> bytes:
    """Read a secret file (key or passphrase), refusing one that group or others may access or another user owns."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        # fstat on the open descriptor: the file we check is the file we read.
        status = os.fstat(handle.fileno())
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{path} holds a secret but is accessible by group or others (mode {mode:04o}); "
                f"it must be 0600: run chmod 600 on it and check who may have copied it"
            )
        if status.st_uid != os.geteuid():
            # Another owner can read it (and change its mode) whatever the mode says.
            raise KeyFileError(
                f"{path} holds a secret but is owned by uid {status.st_uid}, not by the user running the "
                f"gateway (uid {os.geteuid()}): chown it to the service user, mode 0600"
            )
        return handle.read()


def write_key_file(
    path: Path, pair: KeyPair, passphrase: bytes | None = None, *, limits: KdfLimits = MODERATE
) -> None:
    """Write a key file with mode 0600 (replacing any file at ``path``)."""
    write_private_file(path, encode_key_file(pair, passphrase, limits=limits))


def read_key_file(path: Path, passphrase: bytes | None = None) -> KeyPair:
    """Read a key file: check its permissions, parse it, decrypt it if needed."""
    return decode_key_file(read_private_file(path), passphrase, source=str(path))


def key_path(key_dir: Path, pair: KeyPair) -> Path:
    """Where a key lives in a key directory: ``<kid>.key``."""
    return Path(key_dir) / f"{pair.kid}{KEY_SUFFIX}"


def read_key_dir(key_dir: Path, passphrase: bytes | None = None) -> list[KeyPair]:
    """Read every ``*.key`` file in a key directory (sorted by file name)."""
    key_dir = Path(key_dir)
    if not key_dir.is_dir():
        raise KeyFileError(f"key directory {key_dir} does not exist")
    pairs = []
    for path in sorted(key_dir.glob(f"*{KEY_SUFFIX}")):
        pair = read_key_file(path, passphrase)
        if path.name != f"{pair.kid}{KEY_SUFFIX}":
            raise KeyFileError(f"key file {path} holds key {pair.kid}; the file name must be its kid")
        pairs.append(pair)
    if not pairs:
        raise KeyFileError(f"no *{KEY_SUFFIX} files in {key_dir}")
    return pairs


def load_identity(
    key_dir: Path, *, at: datetime, agency_id: str | None = None, passphrase: bytes | None = None
) -> AgencyIdentity:
    """Load an agency's identity from a key directory: keys valid at ``at`` (see ``identity_from_keys``)."""
    return identity_from_keys(read_key_dir(key_dir, passphrase), at=at, agency_id=agency_id)


def shorten(pair: KeyPair, not_after: datetime) -> KeyPair:
    """The same key with its validity cut to end at ``not_after`` (never extended)."""
    if not_after >= pair.not_after:
        return pair
    if not_after <= pair.not_before:
        raise KeyFileError(f"key {pair.kid} would end before it starts; revoke it instead")
    return replace(pair, not_after=not_after)


# --- directory authority public key -----------------------------------------------------


def authority_public_document(authority: str, public_key: bytes) -> dict[str, str]:
    """The ``authority.pub.json`` document that relying gateways pin as their trust anchor."""
    return {"authority": authority, "kid": key_id(public_key), "public_key": b64url_encode(public_key)}


def parse_authority_public(data: bytes, *, source: str = "authority public key") -> tuple[str, bytes]:
    """Parse ``authority.pub.json``; return the authority name and raw public key."""
    try:
        doc = strict_loads(data)
    except ValueError:
        raise KeyFileError(f"{source}: not valid JSON") from None
    _exact(doc, {"authority", "kid", "public_key"}, source)
    public_key = _b64(doc["public_key"], source, "public_key")
    if len(public_key) != 32:
        raise KeyFileError(f"{source}: public_key must be 32 bytes")
    if doc["kid"] != key_id(public_key):
        raise KeyFileError(f"{source}: kid does not match the public key")
    if not isinstance(doc["authority"], str) or not doc["authority"]:
        raise KeyFileError(f"{source}: authority must be a non-empty string")
    return doc["authority"], public_key
