"""Per-message attempt counts kept by this gateway process (never taken from message headers).

A publisher can set ``x-delivery-count`` (or any header) to whatever it likes, so the
gateway counts failed handler runs itself, keyed by the message id *and* a digest of the
body: two different messages that share an id are counted apart, and a forged id cannot
reset another message's count. The table is bounded (least recently failed forgotten
first) so a flood of distinct messages cannot grow memory without limit.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict


def delivery_key(message_id: str, body: bytes) -> str:
    """The key a delivery is counted under: message id + SHA-256 of the body."""
    return f"{message_id}\x1f{hashlib.sha256(body).hexdigest()}"


class AttemptCounter:
    """A bounded ``key -> count`` table, least recently bumped forgotten first."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._counts: OrderedDict[str, int] = OrderedDict()

    def get(self, key: str) -> int:
        """How many times ``key`` was bumped (0 if never, or forgotten)."""
        return self._counts.get(key, 0)

    def bump(self, key: str) -> int:
        """Count one more attempt of ``key``; the new count."""
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        while len(self._counts) > self.capacity:
            self._counts.popitem(last=False)
        return count

    def forget(self, key: str) -> None:
        """Drop ``key`` (it succeeded, or reached its final disposition)."""
        self._counts.pop(key, None)

    def forget_delivery(self, message_id: str, body: bytes) -> None:
        """Drop a delivery's count, if any; the body is hashed only when something is counted."""
        # Called on every successful delivery, when the table is almost always empty.
        if self._counts:
            self.forget(delivery_key(message_id, body))

    def __len__(self) -> int:
        return len(self._counts)
