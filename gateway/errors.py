"""One exception hierarchy for the gateway.

Catch at the level you care about: ``GatewayError`` for anything, ``EnvelopeError``
for any reason an incoming message was rejected, or a leaf class for one reason.
Messages name *what* and *where* (a field path, a key id, an agency id) and never
carry personal data or plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    #: Stable machine-readable code, used in audit entries, quarantine records and API errors.
    code = "gateway_error"


# --- JSON ----------------------------------------------------------------------------


class DuplicateKeyError(GatewayError, ValueError):
    """A JSON object has the same member name twice (``gateway.canonical.strict_loads``).

    Also a ValueError: every JSON parse failure is one, and callers catch them together."""

    code = "duplicate_member"


class NestingTooDeepError(GatewayError, ValueError):
    """A JSON document nests arrays/objects deeper than ``gateway.canonical.MAX_JSON_DEPTH``.

    Also a ValueError, like every other JSON parse failure."""

    code = "json_too_deep"


# --- envelope rejections -------------------------------------------------------------


class EnvelopeError(GatewayError):
    """An envelope was rejected; the subclass says why."""

    code = "envelope_rejected"


class MalformedEnvelopeError(EnvelopeError):
    """The bytes are not a well-formed envelope (JSON, fields, types, encodings)."""

    code = "malformed"


class OversizeEnvelopeError(EnvelopeError):
    """The envelope or its payload is larger than the configured limit."""

    code = "oversize"


class BadSignatureError(EnvelopeError):
    """A signature does not verify (outer: header+ciphertext, inner: header+plaintext)."""

    code = "bad_signature"


class UnknownSenderError(EnvelopeError):
    """The sender agency or its signing key id is not in the trusted directory."""

    code = "unknown_sender"


class KeyNotValidError(EnvelopeError):
    """A key exists but may not be used now."""

    code = "key_not_valid"


class KeyRevokedError(KeyNotValidError):
    """The key was revoked by the directory authority."""

    code = "key_revoked"


class KeyExpiredError(KeyNotValidError):
    """The key is outside its validity period (not yet valid or expired)."""

    code = "key_expired"


class WrongRecipientError(EnvelopeError):
    """The envelope is addressed to another agency or to an encryption key we do not hold."""

    code = "wrong_recipient"


class EncryptionKeyDestroyedError(WrongRecipientError):
    """The envelope is sealed to one of our encryption keys that was destroyed: every message
    sealed to it has expired, so nobody can (or should) open it any more."""

    code = "enc_key_destroyed"


class EncryptionKeyExpiredError(EnvelopeError):
    """The envelope was created after the end of the encryption key it is sealed to (plus
    the allowed clock skew): the sender used an outdated directory. Refused, so that no
    message sealed to a key outlives the key's destruction date."""

    code = "enc_key_expired"


class ExpiredMessageError(EnvelopeError):
    """The message's ``expires`` time has passed."""

    code = "expired_message"


class ClockSkewError(EnvelopeError):
    """The message claims to be created further in the future than the allowed skew."""

    code = "clock_skew"


class ReplayedMessageError(EnvelopeError):
    """A message with this id was already accepted."""

    code = "replayed_message"


class DecryptionError(EnvelopeError):
    """The ciphertext does not decrypt with our key (tampered, or sealed to another key)."""

    code = "decryption_failed"


@dataclass(frozen=True)
class Violation:
    """One schema rule broken: where (JSON path), which rule (keyword) and why."""

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.rule}]"


class SchemaInvalidError(EnvelopeError):
    """The payload does not validate against the shared schema for its message type."""

    code = "schema_invalid"

    def __init__(self, message_type: str, violations: list[Violation]) -> None:
        self.message_type = message_type
        self.violations = list(violations)
        shown = "; ".join(str(v) for v in self.violations[:5])
        more = f" (+{len(self.violations) - 5} more)" if len(self.violations) > 5 else ""
        super().__init__(f"{message_type} payload invalid: {shown}{more}")


# --- service operations ---------------------------------------------------------------


class ReferenceMismatchError(GatewayError):
    """A receipt, response or acknowledgement refers to a message we did not send to its sender."""

    code = "reference_mismatch"


class NotFoundError(GatewayError):
    """No message with this id exists here (or not in the requested direction)."""

    code = "not_found"


class ConflictError(GatewayError):
    """The request conflicts with the message's state (e.g. responding to a receipt)."""

    code = "conflict"


class HandlerFailedError(GatewayError):
    """The delivery handler failed on this message every time it was tried (a bug or a
    stored value it cannot handle): quarantined instead of retried forever."""

    code = "handler_failed"


class InvalidPurposeError(GatewayError):
    """A read names no purpose, or one outside the list (the purpose is audited, so it is a code)."""

    code = "invalid_purpose"


# --- directory and keys --------------------------------------------------------------


class DirectoryError(GatewayError):
    """The agency directory could not be loaded or used."""

    code = "directory_error"


class DirectorySignatureError(DirectoryError):
    """The directory's signature does not verify against the trusted authority key."""

    code = "directory_bad_signature"


class MalformedDirectoryError(DirectoryError):
    """The directory document does not have the required structure."""

    code = "directory_malformed"


class UnknownAgencyError(DirectoryError):
    """No agency with this id is in the directory."""

    code = "unknown_agency"


class NoValidKeyError(DirectoryError):
    """The agency has no key of the requested use that is valid at the requested time."""

    code = "no_valid_key"


class DirectoryRollbackError(DirectoryError):
    """A directory's serial is not greater than the serial this gateway already holds."""

    code = "directory_rollback"


class KeyFileError(GatewayError):
    """A private key file is unreadable, has loose permissions, or the passphrase is wrong."""

    code = "key_file_error"
