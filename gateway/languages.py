"""Language codes: ISO 639-1 (v1 payloads) and ISO 639-3 (v2 payloads), and their English names.

The tables come from pycountry's copy of the ISO 639-3 code set and are built once at
import (startup), so lookups never read files on the event loop.
"""

from __future__ import annotations

import re
from typing import Any

import pycountry

#: ISO 639-3 code of a language without a code of its own (v2: ``{"code": "mis", "name": ...}``).
UNCODED = "mis"
_ISO_639_3 = re.compile(r"^[a-z]{3}$")

_NAMES: dict[str, str] = {lang.alpha_3: lang.name for lang in pycountry.languages}
_TO_639_3: dict[str, str] = {
    lang.alpha_2: lang.alpha_3 for lang in pycountry.languages if getattr(lang, "alpha_2", None)
}
_TO_639_1: dict[str, str] = {three: two for two, three in _TO_639_3.items()}


def is_known_code(code: str) -> bool:
    """True if ``code`` is an ISO 639-3 code (individual, macro- or special language)."""
    return code in _NAMES


def language_name(language: Any) -> str | None:
    """The English name of a v2 language (a code, or the name an uncoded language carries)."""
    if isinstance(language, dict):
        name = language.get("name")
        return name if isinstance(name, str) else None
    if isinstance(language, str):
        return _NAMES.get(language)
    return None


def to_iso_639_3(code: str) -> str | None:
    """The ISO 639-3 code for a v1 code (two letters become three; three stay); None if unknown."""
    if len(code) == 2:
        return _TO_639_3.get(code)
    return code if _ISO_639_3.fullmatch(code) else None


def to_v1_code(code: str) -> str:
    """The v1 form of an ISO 639-3 code: its ISO 639-1 code when one exists, else the code itself."""
    return _TO_639_1.get(code, code)
