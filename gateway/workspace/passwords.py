"""Staff passwords: argon2id hashes (argon2-cffi) and the sign-in throttle.

The settings hold only the PHC string ``$argon2id$v=19$m=...``; ``gateway users
hash-password`` writes it. Checking a password costs tens of milliseconds of CPU and
64 MiB, so it runs in a worker thread. A name that matches no user is checked against a
dummy hash all the same, so the time taken does not tell which names exist.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: argon2-cffi's defaults are RFC 9106's second recommended option (argon2id, t=3, 64 MiB, p=4).
HASHER = PasswordHasher()
_DUMMY = HASHER.hash("no user has this password")
#: Passwords longer than this are refused unchecked (argon2 would hash megabytes happily).
MAX_PASSWORD_CHARS = 1024

#: After this many failed sign-ins for one name within WINDOW, that name is refused for LOCKOUT.
MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)


def hash_password(password: str) -> str:
    """The argon2id PHC string of ``password``."""
    if not password:
        raise ValueError("the password is empty")
    return HASHER.hash(password)


def _verify(phc: str | None, password: str) -> bool:
    try:
        return HASHER.verify(phc or _DUMMY, password) and phc is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(phc: str | None, password: str) -> bool:
    """True if ``password`` matches the hash ``phc``; with no hash, the same work and False."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    return await asyncio.get_running_loop().run_in_executor(None, _verify, phc, password)


@dataclass
class Throttle:
    """Failed sign-ins per configured user name, in this process (each process of an agency
    counts its own; the limit per process still stops guessing at any useful speed).

    An attempt counts from the moment its password check starts (:meth:`begin`), not only once
    it has failed: guesses sent all at once would otherwise all pass the check while the first
    ones were still hashing."""

    failures: dict[str, deque[datetime]] = field(default_factory=dict)
    locked_until: dict[str, datetime] = field(default_factory=dict)
    #: Attempts of a name whose password is being checked right now.
    checking: dict[str, int] = field(default_factory=dict)

    def locked(self, name: str, now: datetime) -> bool:
        """True while ``name`` is refused without checking its password."""
        until = self.locked_until.get(name)
        if until is None:
            return False
        if now >= until:
            del self.locked_until[name]
            return False
        return True

    def begin(self, name: str, now: datetime) -> bool:
        """Start an attempt for ``name``: False (refuse it unchecked) while the name is locked,
        or while the failures so far and the attempts under way could reach MAX_FAILURES.
        Every True must be followed by :meth:`end`."""
        if self.locked(name, now):
            return False
        under_way = self.checking.get(name, 0)
        if len(self._recent(name, now)) + under_way >= MAX_FAILURES:
            return False
        self.checking[name] = under_way + 1
        return True

    def end(self, name: str) -> None:
        """The password check that :meth:`begin` started is over (count it with failed/succeeded)."""
        left = self.checking.get(name, 0) - 1
        if left > 0:
            self.checking[name] = left
        else:
            self.checking.pop(name, None)

    def failed(self, name: str, now: datetime) -> None:
        """Count a failed sign-in; the MAX_FAILURES-th within WINDOW locks the name."""
        recent = self._recent(name, now)
        recent.append(now)
        self.failures[name] = recent
        if len(recent) >= MAX_FAILURES:
            self.locked_until[name] = now + LOCKOUT
            recent.clear()

    def succeeded(self, name: str) -> None:
        """A successful sign-in clears the name's count."""
        self.failures.pop(name, None)

    def _recent(self, name: str, now: datetime) -> deque[datetime]:
        """The name's failures within WINDOW (older ones forgotten)."""
        recent = self.failures.get(name, deque())
        while recent and now - recent[0] > WINDOW:
            recent.popleft()
        return recent
