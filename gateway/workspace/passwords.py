"""Staff passwords: argon2id hashes (argon2-cffi) and the sign-in throttle.

The settings hold only the PHC string ``$argon2id$v=19$m=...``; ``gateway users
hash-password`` writes it. Checking a password costs tens of milliseconds of CPU and
64 MiB, so it runs in a worker thread. A name that matches no user is checked against a
dummy hash all the same, so the time taken does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
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
#: Names that are no user's, tracked at most (a few hundred bytes each); at argon2's cost a
#: process checks far fewer guesses than this within WINDOW.
MAX_OTHER_NAMES = 20_000


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
class _Attempts:
    """What the throttle knows of one name."""

    failures: list[datetime] = field(default_factory=list)  # within WINDOW, oldest first
    locked_until: datetime | None = None
    checking: int = 0  # attempts whose password is being checked right now


@dataclass
class Throttle:
    """Failed sign-ins per name, in this process (each process of an agency counts its own;
    the limit per process still stops guessing at any useful speed).

    Every name is counted, configured or not: were only users' names ever locked, the sixth
    wrong password would tell an outsider which names exist. Names that are no user's are
    counted in their own throttle, bounded by ``max_names`` and keyed by :meth:`key` (a
    keyed digest: what was typed, perhaps a password in the wrong field, is not kept).

    An attempt counts from the moment its password check starts (:meth:`begin`), not only once
    it has failed: guesses sent all at once would otherwise all pass the check while the first
    ones were still hashing."""

    #: Names tracked at most (None: unbounded, for the configured users); the oldest go first.
    max_names: int | None = None
    #: The key of :meth:`key`'s digests (None: names are kept as they are).
    secret: bytes | None = None
    names: dict[str, _Attempts] = field(default_factory=dict)

    def key(self, name: str) -> str:
        """What the throttle keeps of ``name``: an HMAC of it when the throttle has a secret."""
        if self.secret is None:
            return name
        return hmac.new(self.secret, name.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:32]

    def locked(self, name: str, now: datetime) -> bool:
        """True while ``name`` is refused without checking its password."""
        found = self.names.get(name)
        if found is None or found.locked_until is None:
            return False
        if now >= found.locked_until:
            found.locked_until = None
            return False
        return True

    def begin(self, name: str, now: datetime) -> bool:
        """Start an attempt for ``name``: False (refuse it unchecked) while the name is locked,
        or while the failures so far and the attempts under way could reach MAX_FAILURES.
        Every True must be followed by :meth:`end`."""
        if self.locked(name, now):
            return False
        state = self._state(name, now)
        if len(state.failures) + state.checking >= MAX_FAILURES:
            return False
        state.checking += 1
        return True

    def end(self, name: str) -> None:
        """The password check that :meth:`begin` started is over (count it with failed/succeeded)."""
        found = self.names.get(name)
        if found is not None and found.checking > 0:
            found.checking -= 1

    def failed(self, name: str, now: datetime) -> None:
        """Count a failed sign-in; the MAX_FAILURES-th within WINDOW locks the name."""
        state = self._state(name, now)
        state.failures.append(now)
        if len(state.failures) >= MAX_FAILURES:
            state.locked_until = now + LOCKOUT
            state.failures.clear()

    def succeeded(self, name: str) -> None:
        """A successful sign-in clears the name's count."""
        found = self.names.get(name)
        if found is not None:
            found.failures.clear()

    def _state(self, name: str, now: datetime) -> _Attempts:
        """The name's record (created if new), its failures older than WINDOW forgotten."""
        state = self.names.get(name)
        if state is None:
            self._make_room(now)
            state = self.names[name] = _Attempts()
        state.failures = [t for t in state.failures if now - t <= WINDOW]
        return state

    def _make_room(self, now: datetime) -> None:
        """Below max_names: forget names with nothing left to remember, then the oldest ones."""
        if self.max_names is None or len(self.names) < self.max_names:
            return
        for name in [n for n, s in self.names.items()
                     if s.checking == 0 and (s.locked_until is None or s.locked_until <= now)
                     and all(now - t > WINDOW for t in s.failures)]:
            del self.names[name]
        while len(self.names) >= self.max_names:
            del self.names[next(iter(self.names))]
