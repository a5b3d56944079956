"""One-time send keys: a form that sends a message carries one, and the message id is
derived from it, so a double click, a reloaded POST or "back and send again" sends one
message (the page then shows the one already stored)."""

from __future__ import annotations

import re
import secrets

from gateway.message_ids import derived_message_id

FIELD = "send_key"
#: ``secrets.token_urlsafe(16)``: 22 characters of the URL-safe alphabet.
_KEY = re.compile(r"[A-Za-z0-9_-]{22}")


def new_send_key() -> str:
    """A fresh key for one form."""
    return secrets.token_urlsafe(16)


def message_id_for(form: str, agency_id: str, user: str, key: object) -> str | None:
    """The message id this user's key gives on this form (None for a missing or malformed key)."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return None
    return derived_message_id("workspace.send", form, agency_id, user, key)
