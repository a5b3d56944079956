"""One asyncio lock per case pseudonym, so that consent decisions and shredding of a case
never interleave inside one gateway process."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator


class CaseLocks:
    """Locks by case pseudonym, created on first use and dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, case_ref: str) -> AsyncIterator[None]:
        """Hold the case's lock for the block (not re-entrant: never nest two holds of one case)."""
        lock = self._locks.setdefault(case_ref, asyncio.Lock())
        self._users[case_ref] = self._users.get(case_ref, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[case_ref] -= 1
            if not self._users[case_ref]:
                del self._users[case_ref]
                del self._locks[case_ref]

    def __len__(self) -> int:
        return len(self._locks)
