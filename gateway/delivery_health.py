"""Whether the delivery handler is failing persistently, for ``/readyz``.

Degraded when the last ``after_failures`` handler runs all failed (no success since) and
the latest failure is less than ``window_seconds`` old. One successful delivery, or a
window without failures, makes it healthy again. Verification verdicts (quarantine with a
reason) are not failures: the handler did its job.
"""

from __future__ import annotations

import time
from typing import Callable


class DeliveryHealth:
    """A streak of handler failures with no success since, and when the last one was."""

    def __init__(self, after_failures: int, window_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.after_failures = after_failures
        self.window_seconds = window_seconds
        self._monotonic = monotonic
        self.streak = 0
        self._last_failure: float | None = None

    def failed(self) -> None:
        """One handler run failed."""
        self.streak += 1
        self._last_failure = self._monotonic()

    def succeeded(self) -> None:
        """One handler run completed (stored, duplicate or quarantined with a verdict)."""
        self.streak = 0

    def seconds_since_failure(self) -> float | None:
        """Seconds since the latest failure (None if none yet)."""
        return None if self._last_failure is None else self._monotonic() - self._last_failure

    @property
    def degraded(self) -> bool:
        """True while failures persist: the streak is long enough and recent."""
        since = self.seconds_since_failure()
        return self.streak >= self.after_failures and since is not None and since < self.window_seconds
