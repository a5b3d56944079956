"""Canonical JSON bytes (RFC 8785, JSON Canonicalization Scheme) for signing."""

from __future__ import annotations

import json
from typing import Any

import rfc8785


class DuplicateKeyError(ValueError):
    """A JSON object has the same member name twice."""


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value."""
    return rfc8785.dumps(value)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, val in pairs:
        if key in obj:
            # Duplicate names make "what was signed" ambiguous between parsers.
            raise DuplicateKeyError(f"duplicate member name {key!r}")
        obj[key] = val
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def strict_loads(data: bytes) -> Any:
    """Parse UTF-8 JSON, rejecting duplicate names, NaN/Infinity and invalid UTF-8."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
