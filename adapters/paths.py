"""Dotted paths (``a.b.c``) into nested dicts."""

from __future__ import annotations

from typing import Any

_MISSING: Any = object()


def get_path(data: Any, dotted: str) -> Any:
    """The value at a dotted path in nested dicts, or a private MISSING sentinel."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted path, creating objects; two objects at the same path are merged."""
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    if isinstance(value, dict) and isinstance(data.get(last), dict):
        data[last].update(value)
    else:
        data[last] = value


def delete_path(data: dict[str, Any], dotted: str) -> Any:
    """Remove a dotted path; return the removed value or MISSING. Empty parents stay."""
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    if isinstance(data, dict) and last in data:
        return data.pop(last)
    return _MISSING


def _join(base: str, part: str) -> str:
    return f"{base}.{part}" if base else part
