"""Case pseudonyms: the only case reference that leaves an agency."""

from __future__ import annotations

import base64
import hashlib
import hmac


def case_pseudonym(secret: bytes, local_case_id: str, sender_country: str, recipient_country: str) -> str:
    """Return a stable pseudonym for a local case id, different for every country pair.

    HMAC-SHA256 under an agency secret, so the pseudonym cannot be reversed or linked
    across country pairs without the secret; the same case sent to the same country
    always gets the same pseudonym, so replies and follow-ups line up.
    """
    if len(secret) < 32:
        raise ValueError("pseudonym secret must be at least 32 bytes")
    pair = f"{sender_country.upper()}|{recipient_country.upper()}"
    mac = hmac.new(secret, f"rgw-case-v1|{pair}|{local_case_id}".encode("utf-8"), hashlib.sha256).digest()
    tag = base64.b32encode(mac[:15]).decode("ascii").lower()
    return f"{sender_country.lower()}-{recipient_country.lower()}-{tag}"
