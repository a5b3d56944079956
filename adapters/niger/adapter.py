"""The Niger adapter: the mapping table plus the one local habit a table cannot say."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from adapters.base import MappingAdapter, normalise

# Case workers write an intended-but-not-yet-occurred exploitation as
# "exploitation sexuelle (intentionnelle)" instead of setting the flag.
_INTENDED = re.compile(r"^(?P<type>.*?)\s*\(\s*intention(?:nel|nelle)?\s*\)\s*$")


class NigerAdapter(MappingAdapter):
    """ANLTP-TIM fiche de référencement (French, JJ/MM/AAAA dates, Niamey time UTC+1)."""

    format_id = "niger"
    folder = Path(__file__).resolve().parent

    def prepare_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """Turn a ``"<type> (intentionnelle)"`` item into ``{"type": ..., "intentionnelle": true}``."""
        items = record.get("type_exploitation")
        if isinstance(items, list):
            record = {**record, "type_exploitation": [_split_intended(item) for item in items]}
        return record


def _split_intended(item: Any) -> Any:
    text = item.get("type") if isinstance(item, dict) else item
    if not isinstance(text, str) or not _INTENDED.match(normalise(text)):
        return item
    # Keep the clerk's spelling of the type (minus the suffix) so errors quote what they wrote.
    cut = text[: text.rfind("(")].strip()
    return {**(item if isinstance(item, dict) else {}), "type": cut, "intentionnelle": True}
