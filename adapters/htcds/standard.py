"""HTCDS 2.0 as published: field names, picklist values and labels, ISO 639 language codes.

``htcds_2.0.json`` beside this module is extracted verbatim from the standard's
``HTCDS Field Standards 2.0.ods`` (UNMigration/HTCDS at 3c2f653); the adapter's field table
and code lists are checked against it (tests/test_adapter_htcds.py), so the adapter follows
the standard rather than a copy typed by hand. See docs/htcds.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pycountry

from adapters.codes import normalise

STANDARD_FILE = Path(__file__).resolve().parent / "htcds_2.0.json"

#: The prefix of every field this adapter adds for what HTCDS 2.0 does not have.
EXTENSION_PREFIX = "x_rgw_"

#: Field names of older HTCDS versions (and of this adapter before it followed 2.0) -> what to use now.
LEGACY_FIELDS: dict[str, str] = {
    "prs_LastName": "prs_SecondName",
    "prs_BirthDate": "prs_Birthdate",
    "prs_DateOfBirth": "prs_Birthdate",
    "prs_Nationality": "prs_Citizenship",
    "prs_Languages": "prs_PrimaryLanguage and prs_SecondaryLanguage (more in x_rgw_OtherLanguages)",
    "prs_Language": "prs_PrimaryLanguage",
    "vic_IdentificationStatus": "vic_TraffickingStatus",
    "vic_TypeOfLabourExploitation": "vic_ForcedLabourIndustry (an ISIC section; x_rgw_LabourSectors for begging, "
                                    "peddling, illicit activities)",
    "vic_LabourIndustry": "vic_ForcedLabourIndustry",
    "con_PurposeOfInterview": "con_Consent (HTCDS 2.0 keeps one consent checkbox)",
    "con_UseOfData": "con_Consent (HTCDS 2.0 keeps one consent checkbox)",
    "con_DataForResearch": "con_Consent (HTCDS 2.0 keeps one consent checkbox)",
    "con_RightToBeForgotten": "con_Consent (HTCDS 2.0 keeps one consent checkbox)",
    "cas_CaseId": "a local id is not sent (the gateway uses a pseudonym); leave it out",
    "cas_Notes": "cco_CaseComment",
    "cas_Urgency": "x_rgw_Urgency",
    "cas_IdentificationDate": "x_rgw_IdentificationDate",
    "cas_IdentificationCountry": "x_rgw_IdentificationCountry",
    "prs_IsMinor": "x_rgw_IsMinor",
    "prs_Age": "x_rgw_Age",
    "prs_AgeBand": "x_rgw_AgeBand",
    "prs_AgeEstimated": "x_rgw_AgeEstimated",
    "prs_Aliases": "x_rgw_Aliases",
    "prs_PlaceOfOriginCountry": "x_rgw_PlaceOfOriginCountry",
    "prs_PlaceOfOriginState": "x_rgw_PlaceOfOriginState",
    "prs_PlaceOfOriginDistrict": "x_rgw_PlaceOfOriginDistrict",
    "prs_PlaceOfOriginCity": "x_rgw_PlaceOfOriginCity",
    "prs_FamilyContacts": "x_rgw_FamilyContacts",
    "prs_IdentityDocuments": "x_rgw_IdentityDocuments",
    "prs_AccompanyingChildren": "x_rgw_AccompanyingChildren",
    "vic_Acts": "x_rgw_Acts",
    "vic_Means": "x_rgw_Means",
    "vic_Needs": "x_rgw_Needs",
    "vic_SafetyConcerns": "x_rgw_SafetyConcerns",
    "cns_DecisionMaker": "x_rgw_ConsentDecisionMaker",
    "cns_GivenAt": "x_rgw_ConsentGivenAt",
    "cns_ExpiresAt": "x_rgw_ConsentExpiresAt",
    "cns_Purposes": "x_rgw_ConsentPurposes",
    "cns_RecipientCountries": "x_rgw_ConsentRecipientAgencies (shared schema v2 consent names agencies, not countries)",
    "x_rgw_ConsentRecipientCountries": "x_rgw_ConsentRecipientAgencies (shared schema v2 consent names agencies, not countries)",
    "cns_RecipientAgencies": "x_rgw_ConsentRecipientAgencies",
    "cns_Form": "x_rgw_ConsentForm",
    "cns_ExplainedIn": "x_rgw_ConsentExplainedIn",
}


@dataclass(frozen=True)
class StandardField:
    """One HTCDS 2.0 field: name, section, type, and picklist values with their labels."""

    name: str
    section: str
    status: str
    type: str
    values: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @property
    def multiselect(self) -> bool:
        """A multiselect picklist (several values; Salesforce writes them ``A;B``)."""
        return self.type.startswith("Multiselect")

    def accepts(self, value: str) -> bool:
        """The value is one of the picklist's value names or labels (case, spaces, hyphens ignored)."""
        key = normalise(value)
        return any(normalise(v) == key for v in (*self.values, *self.labels))


@cache
def fields() -> dict[str, StandardField]:
    """Every HTCDS 2.0 field by name, in the standard's order."""
    spec = json.loads(STANDARD_FILE.read_text(encoding="utf-8"))
    return {
        f["name"]: StandardField(f["name"], f["section"], f["status"], f["type"],
                                 tuple(f.get("values", ())), tuple(f.get("value_labels", ())))
        for f in spec["fields"]
    }


def snake_case(value: str) -> str:
    """The shared schema v2 spelling of an HTCDS value: ``ForcedMilitaryByNonStateActors`` -> ``forced_military_by_non_state_actors``.

    ISIC sections lose their letter (``A_AgricultureForestryAndFishing`` -> ``agriculture_forestry_and_fishing``).
    """
    value = re.sub(r"^[A-Z]_", "", value)
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", value)
    return "_".join(w.lower() for w in words)


#: Where shared schema v2 spells an HTCDS 2.0 value otherwise than its snake_case (two ISIC
#: sections, spelled from the ISIC labels): snake_case -> the v2 code. To be emptied when v2
#: follows its own naming rule (a test fails as soon as it does).
V2_SPELLING: dict[str, str] = {
    "public_administration_and_defence": "public_administration_and_defence_compulsory_social_security",
    "activities_of_extraterritorial_organizations": "activities_of_extraterritorial_organisations_and_bodies",
}


# --- ISO 639 ---------------------------------------------------------------------------


def _iso639(value: str) -> Any:
    text = value.strip()
    low = text.lower()
    if re.fullmatch(r"[a-z]{2}", low):
        return pycountry.languages.get(alpha_2=low)
    if re.fullmatch(r"[a-z]{3}", low):
        found = pycountry.languages.get(alpha_3=low) or pycountry.languages.get(bibliographic=low)
        return found or pycountry.language_families.get(alpha_3=low)
    try:
        return pycountry.languages.lookup(text)
    except LookupError:
        return None


def language_code(value: str) -> str | None:
    """ISO 639-2 (B or T), 639-1, 639-3 or a 639-5 collective code, or an English name -> its ISO 639-3 code."""
    found = _iso639(value)
    return found.alpha_3 if found is not None else None


def language_to_v1(value: str) -> str | None:
    """The shared schema v1 spelling of a language: ISO 639-1 when it exists, else the three-letter code."""
    found = _iso639(value)
    if found is None:
        return None
    return getattr(found, "alpha_2", None) or found.alpha_3
