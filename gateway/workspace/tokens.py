"""The secrets a browser holds and what the gateway derives from them.

A session id is 32 random bytes (URL-safe base64 in the ``rgw_session`` cookie); the store
keeps only its SHA-256. A browser without a session gets a random ``rgw_csrf`` cookie
instead. The CSRF token of a page is derived from whichever of the two the browser holds,
so it is never stored, changes at sign-in and sign-out, and a page of another site (which
cannot read our cookies) cannot compute it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SESSION_COOKIE = "rgw_session"
ANON_COOKIE = "rgw_csrf"
LANG_COOKIE = "rgw_lang"
COOKIE_PATH = "/workspace/"

_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, URL-safe base64 without padding


def new_secret() -> str:
    """32 random bytes as cookie text."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def well_formed(value: str | None) -> bool:
    """True if ``value`` looks like a secret we issued (anything else is ignored unhashed)."""
    return value is not None and _SHAPE.fullmatch(value) is not None


def session_hash(session_id: str) -> str:
    """What the store keeps of a session id: its SHA-256 (hex)."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def csrf_token(secret: str) -> str:
    """The CSRF token for a browser holding ``secret`` (its session id or its ``rgw_csrf`` cookie)."""
    return hmac.new(secret.encode("ascii"), b"referral-gateway workspace csrf", hashlib.sha256).hexdigest()


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))
