"""What an adapter returns, and the interface the gateway needs from a country adapter."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class DroppedField:
    """A local field that is not in the shared payload, and why (never its value)."""

    local_field: str
    shared_path: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.local_field} -> {self.shared_path or '-'}: {self.reason}"


@dataclass(frozen=True)
class AdaptResult:
    """A schema-valid ``referral.request`` payload and the local fields left out of it."""

    payload: dict[str, Any]
    dropped: tuple[DroppedField, ...] = ()


class Adapter(Protocol):
    """What the gateway needs from a country adapter."""

    format_id: str

    def to_shared(self, local_record: dict[str, Any], purposes: Iterable[str] | None = None) -> AdaptResult:
        """Map a local record to a schema-valid shared payload for these purposes."""
        ...

    def from_shared(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Map a shared ``referral.request`` payload to a local record."""
        ...
