"""The Mali adapter (DNPEF): the mapping table plus the two local habits a table cannot say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.base import AdapterError, MappingAdapter, MissingFieldError, get_path

_ORIGIN = "person.place_of_origin"


class MaliAdapter(MappingAdapter):
    """DNPEF fiche de référencement d'enfant (French, JJ/MM/AAAA dates, Bamako time UTC+0)."""

    format_id = "mali"
    folder = Path(__file__).resolve().parent

    def prepare_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """The form has one ``tuteur`` block; several are a list. The table reads a list."""
        if isinstance(record.get("tuteur"), dict) and not self.table.is_missing(record["tuteur"]):
            record = {**record, "tuteur": [record["tuteur"]]}
        return record

    def finish_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """A single guardian is written back as one block, the way the form has it."""
        if isinstance(record.get("tuteur"), list) and len(record["tuteur"]) == 1:
            record["tuteur"] = record["tuteur"][0]
        return record

    def _map_record(self, local: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, AdapterError]]:
        """The place of origin is four flat fields; its country is required once any detail is given.

        Recorded like any other failed field, so it only blocks the referral when the
        purposes keep the place of origin (otherwise it is dropped and reported).
        """
        payload, trace, failed = super()._map_record(local)
        place = get_path(payload, _ORIGIN)
        if isinstance(place, dict) and "country" not in place and not any(k.startswith(_ORIGIN) for k in failed):
            failed[_ORIGIN] = MissingFieldError("pays_origine", "is required when region_origine, cercle or commune is given")
        return payload, trace, failed
