"""The Nigeria adapter: the mapping table plus the one local habit a table cannot say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.base import AdapterError, MappingAdapter, MissingFieldError, get_path

_ORIGIN = ("state_of_origin", "lga", "town_of_origin")
_SHARED_ORIGIN = "person.place_of_origin"


class NigeriaAdapter(MappingAdapter):
    """NAPTIP victim referral record (English, DD/MM/YYYY dates, West Africa Time UTC+1)."""

    format_id = "nigeria"
    folder = Path(__file__).resolve().parent
    local_schema_file = "naptip.schema.json"

    def prepare_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """Take Nigeria as the country of a Nigerian state of origin.

        NAPTIP forms record the state of origin and LGA without a country: a state that is one
        of the 36 states or the FCT means Nigeria. (The zonal office is checked against its
        code list by the table's ``local_checks``.)
        """
        if not self.table.is_missing(record.get("country_of_origin")):
            return record
        state = record.get("state_of_origin")
        if isinstance(state, str) and not self.table.is_missing(state):
            try:
                self.table.code_lists["nigerian_state"].to_shared(state)
                return {**record, "country_of_origin": "NG"}
            except KeyError:
                pass
        return record

    def _map_record(self, local: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, AdapterError]]:
        """Any other place of origin needs a country; recorded like any failed field, so it blocks
        only when the purposes keep the place of origin (otherwise it is dropped and reported)."""
        payload, trace, failed = super()._map_record(local)
        place = get_path(payload, _SHARED_ORIGIN)
        given = [f for f in _ORIGIN if not self.table.is_missing(local.get(f)) and f in local]
        if given and not (isinstance(place, dict) and "country" in place) \
                and not any(k.startswith(_SHARED_ORIGIN) and k.endswith("country") for k in failed):
            failed[_SHARED_ORIGIN] = MissingFieldError(
                "country_of_origin", f"is required when {given[0]} is given (unless the state of origin is a Nigerian state)",
                reason_code="required_with", params={"with": given[0]})
        return payload, trace, failed
