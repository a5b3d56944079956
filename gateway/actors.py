"""Who caused an action: an API user or the gateway itself (a leaf: every layer may import it)."""

from __future__ import annotations

from dataclasses import dataclass

#: The name and role of the gateway itself in audit entries.
SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who caused an action: an API user (name, role) or the gateway itself."""

    name: str
    role: str = SYSTEM


SYSTEM_ACTOR = Actor(SYSTEM, SYSTEM)
