"""Flat ``x_rgw_`` fields grouped into the objects the HTCDS table maps, and errors named back by flat field."""

from __future__ import annotations

import re

from adapters.base import AdapterError
from adapters.errors import FieldError
from adapters.htcds.standard import EXTENSION_PREFIX as X

#: Flat extension fields -> where they sit in the objects the table maps (and back).
GROUPS: dict[str, dict[str, str]] = {
    X + "PlaceOfOrigin": {X + "PlaceOfOriginCountry": "Country", X + "PlaceOfOriginState": "State",
                          X + "PlaceOfOriginDistrict": "District", X + "PlaceOfOriginCity": "City"},
    X + "Interpreter": {X + "InterpreterNeeded": "Needed", X + "InterpreterLanguage": "Language"},
    X + "ChildProtection": {X + "CareStatus": "CareStatus", X + "GuardianRole": "Guardian.Role",
                            X + "GuardianAgency": "Guardian.Agency", X + "GuardianOrganisationType": "Guardian.OrganisationType",
                            X + "GuardianFirstName": "Guardian.FirstName", X + "GuardianSecondName": "Guardian.SecondName",
                            X + "BestInterestsStatus": "BestInterests.Status", X + "BestInterestsOutcome": "BestInterests.Outcome",
                            X + "BestInterestsDecidedOn": "BestInterests.DecidedOn",
                            X + "BestInterestsDecidedBy": "BestInterests.DecidedBy"},
    X + "CriminalJustice": {X + "CooperationDecision": "CooperationDecision", X + "CooperationDecidedOn": "DecidedOn",
                            X + "ReflectionPeriodUntil": "ReflectionPeriodUntil",
                            X + "ProtectionMeasuresRequested": "ProtectionMeasuresRequested"},
}


def renamed(error: AdapterError) -> AdapterError:
    """The same error naming the flat field the clerk filled in, not the adapter's grouping object."""
    flat = flat_name(error.local_field or "")
    if flat is None or not isinstance(error, FieldError):
        return error
    return type(error)(flat, flat_reason(error.reason, flat), reason_code=error.reason_code, params=error.params,
                       quoted=error.quoted)


_GIVEN = re.compile(r"when (?P<object>\S+) is given")


def flat_reason(reason: str, flat: str) -> str:
    """``... when x_rgw_ChildProtection is given`` -> ``... when any of x_rgw_BestInterestsStatus, ... is given``.

    The fields named are those of the smallest object holding ``flat`` (the guardian's, the
    determination's), not every field of the group.
    """
    match = _GIVEN.search(reason)
    group = next((g for g, members in GROUPS.items() if flat in members), None)
    if not match or group is None:
        return reason
    parent = GROUPS[group][flat].rpartition(".")[0]
    members = [f for f, path in GROUPS[group].items() if not parent or path.startswith(parent + ".")]
    return reason[:match.start()] + f"when any of {', '.join(members)} is given" + reason[match.end():]


def flat_name(local_field: str) -> str | None:
    """``x_rgw_ChildProtection.Guardian.Role`` -> ``x_rgw_GuardianRole`` (None if not in a group)."""
    for group, members in GROUPS.items():
        if local_field.startswith(group + "."):
            inner = local_field[len(group) + 1:]
            for flat, path in members.items():
                if inner == path or inner.startswith(path + "."):
                    return flat
    return None
