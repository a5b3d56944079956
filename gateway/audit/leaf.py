"""The bytes an audit entry contributes to the Merkle log, and its RFC 9162 leaf hash.

Leaf data is the RFC 8785 canonical JSON of the entry's fields (``seq`` excluded: the
leaf's position in the tree is ``seq - 1``, so order is covered by the tree itself)::

    {"actor": ..., "agency": ... | null, "at": "YYYY-MM-DDTHH:MM:SS.ffffffZ",
     "case_ref": ... | null, "detail": {...}, "event_type": ..., "message_id": ... | null}

``detail`` is the parsed ``detail_json`` object, so the hash does not depend on how a
backend happens to space or order the stored JSON text. ``at`` has microseconds because
every backend keeps them. The leaf hash is ``SHA-256(0x00 || leaf data)`` (RFC 9162 §2.1.1).
See docs/audit.md.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Protocol

from gateway.canonical import canonical_bytes

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class EntryFields(Protocol):
    """What leaf data is made of: an ``AuditEntry`` before it is stored, or an ``AuditRecord`` after."""

    # Read-only properties, so frozen dataclasses (every entry type is one) match.
    @property
    def at(self) -> datetime: ...
    @property
    def event_type(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def agency(self) -> str | None: ...
    @property
    def case_ref(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def detail_json(self) -> str: ...


def format_at(moment: datetime) -> str:
    """An entry time as leaf data spells it: UTC with microseconds."""
    # isoformat is several times faster than strftime(AT_FORMAT) and gives the same text
    # for years 1000-9999 once the offset is replaced by Z (tests check the two agree).
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def leaf_object(entry: EntryFields, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object whose canonical bytes are the leaf data (``detail``: already parsed)."""
    return {
        "actor": entry.actor,
        "agency": entry.agency,
        "at": format_at(entry.at),
        "case_ref": entry.case_ref,
        "detail": json.loads(entry.detail_json) if detail is None else detail,
        "event_type": entry.event_type,
        "message_id": entry.message_id,
    }


def leaf_data(entry: EntryFields) -> bytes:
    """Canonical leaf data of one entry."""
    return canonical_bytes(leaf_object(entry))


def leaf_hash_of_data(data: bytes) -> bytes:
    """RFC 9162 leaf hash of leaf data."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def leaf_hash(entry: EntryFields, detail: dict[str, Any] | None = None) -> bytes:
    """RFC 9162 leaf hash of one entry (``detail``: its detail_json, already parsed)."""
    return leaf_hash_of_data(canonical_bytes(leaf_object(entry, detail)))
