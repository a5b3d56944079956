"""Every audit event type the gateway writes, declared once: its name, its detail fields and
what it means.

The store refuses an entry of an undeclared type (:meth:`gateway.store.base.Store.append_audit`
and the ``audit=`` arguments check :func:`require_declared`), the docs table in
``docs/audit.md`` is generated from :data:`EVENTS` (``python -m gateway.audit.events --write``),
and the FHIR ``audit-event-type`` code system (``adapters/fhir/codes.py``) is built from it.
Add a new event here first. Detail fields carry ids, counts and codes, never personal data.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class EventType:
    """One audit event type: ``name`` (``area.what``), what it means, and its detail fields."""

    name: str
    meaning: str
    #: Detail field -> what it holds. An entry carries a subset of these.
    fields: Mapping[str, str]


def _events(*events: EventType) -> Mapping[str, EventType]:
    table: dict[str, EventType] = {}
    for event in events:
        if event.name in table:
            raise ValueError(f"audit event {event.name} declared twice")
        table[event.name] = event
    return MappingProxyType(table)


_REASON = "reason code"

#: Every audit event type, in the order of the docs table and of the FHIR code system.
EVENTS: Mapping[str, EventType] = _events(
    EventType("message.created", "Message queued in the outbox",
              {"type": "message type", "recipient": "recipient agency id"}),
    EventType("message.sent", "Message published to the broker",
              {"attempts": "publish attempts it took"}),
    EventType("message.failed", "Publishing given up",
              {"reason": "`expired` or `consent_withdrawn`"}),
    EventType("message.received", "Message received and stored",
              {"type": "message type", "sender": "sender agency id"}),
    EventType("message.status", "Status of an outgoing message changed by a receipt or response",
              {"of": "id of our message", "status": "its new status"}),
    EventType("message.read", "Received message decrypted for a user",
              {"purpose": "declared purpose of the read", "role": "role of the user"}),
    EventType("message.quarantined", "Received message refused and quarantined",
              {"reason": _REASON, "verified": "whether the sender's signature was checked",
               "sender": "sender agency id (verified only)",
               "claimed_sender": "the unverified sender claim, if shaped like an agency id (else null)"}),
    EventType("receipt.failed", "Sending a receipt failed",
              {"status": "receipt status that could not be sent", "reason": _REASON}),
    EventType("auth.failed", "Authentication failed",
              {"path": "route template", "method": "HTTP method", "reason": _REASON}),
    EventType("auth.forbidden", "Authenticated user refused by the role policy",
              {"path": "route template", "method": "HTTP method", "role": "role of the user",
               "permission": "permission the route needs"}),
    EventType("message.read_refused", "Read refused: the message's data keys were destroyed",
              {"purpose": "declared purpose of the read", "role": "role of the user", "reason": _REASON}),
    EventType("message.dropped", "Received message dropped: covered by a withdrawal before it was stored",
              {"reason": "`payload_shredded`"}),
    EventType("consent.checked", "Consent checked before sending a referral",
              {"purposes": "purposes of the referral"}),
    EventType("consent.refused", "Referral or case data refused for its consent",
              {"reason": _REASON, "path": "JSON path of the refusing field", "type": "message type (case data only)"}),
    EventType("consent.withdrawn", "Consent withdrawal sent to a recipient",
              {"scope": "`all_purposes` or `some_purposes`", "purposes": "purposes withdrawn",
               "erasure_requested": "whether erasure was requested"}),
    EventType("consent.withdrawal_acknowledged", "Recipient acknowledged applying a consent withdrawal",
              {"withdrawal": "id of the withdrawal", "messages_made_unreadable": "count the recipient reported",
               "case_key_destroyed": "whether the recipient destroyed the case key"}),
    EventType("consent.withdrawal_failed", "Consent withdrawal could not be addressed to a recipient",
              {"reason": _REASON}),
    EventType("consent.withdrawal_ack_failed", "Acknowledging a consent withdrawal failed",
              {"reason": _REASON}),
    EventType("data.shredded", "Data keys destroyed (consent withdrawn, retention or quarantine retention ended)",
              {"reason": "`consent_withdrawn`, `retention` or `quarantine_expired`", "keys": "keys destroyed (withdrawal)",
               "type": "message type (retention)"}),
    EventType("audit.checkpoint_received", "Partner checkpoint received and linked",
              {"origin": "partner agency id", "tree_size": "checkpoint size",
               "linked_to": "size of the held checkpoint it is proven consistent with (or null)"}),
    EventType("audit.checkpoint_rejected", "Partner checkpoint refused (signature, origin or time)",
              {"reason": _REASON}),
    EventType("audit.checkpoint_gap", "Partner checkpoint not provably linked to the last one held",
              {"origin": "partner agency id", "tree_size": "checkpoint size",
               "latest_held": "size of the latest checkpoint held"}),
    EventType("audit.fork_detected", "Partner signed two histories that cannot both be true",
              {"origin": "partner agency id", "tree_size": "checkpoint size", "problems": "codes of what disagrees"}),
    EventType("audit.exported", "Audit log exported by an auditor",
              {"format": "`jsonl` or `csv`", "entries": "entries exported", "filtered": "whether filters were given"}),
    EventType("audit.case_viewed", "An auditor viewed a case's audit history",
              {"entries": "entries shown"}),
    EventType("messages.found",
              "A user looked up the messages sent for a local case id (by its case pseudonym)",
              {"role": "role of the user", "found": "messages found for this case",
               "recipient_given": "whether the lookup named a recipient"}),
    EventType("stats.read", "Aggregate statistics read",
              {"threshold": "small-cell threshold", "month_from": "first month", "month_to": "last month",
               "direction": "received or sent", "interval": "row unit: month, quarter or year"}),
    EventType("keys.in_use", "Key ids the gateway runs with",
              {"sig": "signing key id", "enc": "encryption key ids"}),
    EventType("key.rotated", "The gateway's keys changed since its last start",
              {"from": "key ids before (as in `keys.in_use`)", "to": "key ids now"}),
    EventType("directory.updated", "A newer signed directory was verified and is now in force",
              {"serial": "its serial", "digest": "hex SHA-256 of the signed file",
               "previous_serial": "serial in force before (null at the first start)",
               "source": "`file` (start-up) or `broker` (published by the authority)"}),
    EventType("directory.refused", "A directory was refused; the one in force stays",
              {"reason": "`bad_signature`, `malformed`, `oversize`, `rollback`, `demo_directory`, `own_agency_missing` "
                         "or `store_mismatch` (the stored row outranking it does not match its signed file)",
               "serial": "its serial (null if it could not be read)", "current_serial": "serial in force",
               "source": "`file` or `broker`"}),
    EventType("directory.stale", "The directory in force is older than `directory_max_age_hours`",
              {"serial": "serial in force", "age_hours": "hours since it was issued"}),
    EventType("keys.loaded", "Encryption keys generated ahead were picked up from the key directory (no restart)",
              {"enc": "key ids added"}),
    EventType("key.shortened", "A held encryption key's file now ends earlier (`enc-ahead --shorten-current`); "
              "the running gateway follows it",
              {"kid": "key id", "not_after": "the new end of its validity", "previous_not_after": "the end before"}),
    EventType("keys.load_failed", "A file in the key directory could not be read; the other keys still load",
              {"kid": "key id taken from the file name", "error": "error code (e.g. `key_file_error`)"}),
    EventType("key.destroyed", "A private encryption key was destroyed: no message sealed to it can still be valid",
              {"kid": "key id (never key material)", "not_after": "end of the key's validity",
               "due": "not_after + message lifetime + clock skew + grace",
               "case_keys_rewrapped": "case keys moved to the key valid now first"}),
    EventType("inbox.unrestorable", "Before an encryption key was destroyed, a stored message in the older "
              "at-rest format could not be opened to re-store it: it stays unreadable",
              {"reason": "error code (e.g. `at_rest_corrupt`, `malformed`)"}),
    EventType("workspace.signed_in", "A user signed in to the workspace (a new session)",
              {"role": "role of the user"}),
    EventType("workspace.sign_in_failed", "A workspace sign-in was refused",
              {"reason": "`unknown_user`, `wrong_password`, `no_password` (the user has only an API token) "
                         "or `throttled` (too many failures for the name)",
               "user": "the configured user's name (absent when the name matches no user)"}),
    EventType("workspace.signed_out", "A workspace session ended",
              {"reason": "`sign_out`, `idle`, `lifetime` or `user_changed` (removed from the settings, "
                         "role or password changed)"}),
    EventType("workspace.csrf_refused", "A workspace form was refused: its CSRF token was missing or wrong",
              {"path": "route template", "method": "HTTP method", "reason": "`missing` or `mismatch`"}),
    EventType("message.body_deleted", "The sealed body of an outgoing message was deleted; its SHA-256 stays",
              {"reason": "`delivered` (signed receipt or answer) or `consent_withdrawn`",
               "digest": "hex SHA-256 of the deleted envelope"}),
)


def is_declared(name: str) -> bool:
    """True if ``name`` is a declared audit event type."""
    return name in EVENTS


def require_declared(name: str) -> EventType:
    """The declaration of ``name``; KeyError (naming it: event types are code, not data) if none."""
    try:
        return EVENTS[name]
    except KeyError:
        raise KeyError(f"audit event type {name!r} is not declared in gateway/audit/events.py") from None


# --- the docs table ------------------------------------------------------------------------

DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
BEGIN = "<!-- BEGIN audit-events (generated by `python -m gateway.audit.events --write`; do not edit) -->"
END = "<!-- END audit-events -->"


def docs_table() -> str:
    """The Markdown table of every event type, as it appears in docs/audit.md."""
    rows = ["| event type | meaning | detail fields |", "|---|---|---|"]
    for event in EVENTS.values():
        fields = "; ".join(f"`{name}`: {text}" for name, text in event.fields.items()) or "-"
        rows.append(f"| `{event.name}` | {event.meaning} | {fields} |")
    return "\n".join(rows) + "\n"


def render_page(page: str) -> str:
    """``page`` with the text between the markers replaced by :func:`docs_table`."""
    pattern = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.DOTALL)
    if not pattern.search(page):
        raise ValueError(f"docs page lacks the markers {BEGIN!r} ... {END!r}")
    return pattern.sub(lambda _: f"{BEGIN}\n{docs_table()}{END}", page)


def main(argv: list[str] | None = None) -> int:
    """Print the table, or rewrite it in docs/audit.md (``--write``), or check it (``--check``)."""
    parser = argparse.ArgumentParser(prog="python -m gateway.audit.events", description=main.__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the table in docs/audit.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/audit.md is out of date")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        sys.stdout.write(docs_table())
        return 0
    page = DOCS_PAGE.read_text(encoding="utf-8")
    fresh = render_page(page)
    if args.check:
        if fresh != page:
            sys.stderr.write("docs/audit.md is out of date: run python -m gateway.audit.events --write\n")
            return 1
        return 0
    DOCS_PAGE.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
