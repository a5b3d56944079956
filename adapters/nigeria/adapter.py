"""The Nigeria adapter: the mapping table plus two local habits a table cannot say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.base import MappingAdapter, MissingFieldError, UnmappableValueError, _echo

_ORIGIN = ("state_of_origin", "lga", "town_of_origin")


class NigeriaAdapter(MappingAdapter):
    """NAPTIP victim referral record (English, DD/MM/YYYY dates, West Africa Time UTC+1)."""

    format_id = "nigeria"
    folder = Path(__file__).resolve().parent
    local_schema_file = "naptip.schema.json"

    def prepare_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """Check the zonal office against its code list; take Nigeria as the country of a Nigerian state of origin.

        NAPTIP forms record the state of origin and LGA without a country: a state that is one
        of the 36 states or the FCT means Nigeria. Any other place of origin needs a country.
        """
        office = record.get("zonal_office")
        if not self.table.is_missing(office):
            try:
                self.table.code_lists["zonal_office"].to_shared(office)
            except KeyError:
                raise UnmappableValueError("zonal_office", f"{_echo(office)} is not in the code list for "
                                                           "NAPTIP zonal command") from None
        if not self.table.is_missing(record.get("country_of_origin")):
            return record
        given = [f for f in _ORIGIN if not self.table.is_missing(record.get(f))]
        if not given:
            return record
        state = record.get("state_of_origin")
        if isinstance(state, str) and not self.table.is_missing(state):
            try:
                self.table.code_lists["nigerian_state"].to_shared(state)
                return {**record, "country_of_origin": "NG"}
            except KeyError:
                pass
        raise MissingFieldError("country_of_origin", f"is required when {given[0]} is given "
                                                     "(unless the state of origin is a Nigerian state)")
