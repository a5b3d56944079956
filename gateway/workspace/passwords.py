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
    counts its own; the limit per process still stops guessing at any useful speed)."""

    failures: dict[str, deque[datetime]] = field(default_factory=dict)
    locked_until: dict[str, datetime] = field(default_factory=dict)

    def locked(self, name: str, now: datetime) -> bool:
        """True while ``name`` is refused without checking its password."""
        until = self.locked_until.get(name)
        if until is None:
            return False
        if now >= until:
            del self.locked_until[name]
            return False
        return True

    def failed(self, name: str, now: datetime) -> None:
        """Count a failed sign-in; the MAX_FAILURES-th within WINDOW locks the name."""
        recent = self.failures.setdefault(name, deque())
        recent.append(now)
        while recent and now - recent[0] > WINDOW:
            recent.popleft()
        if len(recent) >= MAX_FAILURES:
            self.locked_until[name] = now + LOCKOUT
            recent.clear()

    def succeeded(self, name: str) -> None:
        """A successful sign-in clears the name's count."""
        self.failures.pop(name, None)
