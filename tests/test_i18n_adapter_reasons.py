"""Adapter errors raised by the transforms and the engine read in French for a French request."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.errors import LocalRecordInvalidError, MissingFieldError, adapter_detail, reason_text
from adapters.transforms import TRANSFORMS, TransformFailed
from gateway.i18n import translate

CANARY = "Zyxwvutsrq"


@pytest.mark.parametrize(
    ("name", "args", "value"),
    [
        ("date_dmy", {"date_hint": "JJ/MM/AAAA"}, "2026-03-04"),  # year first
        ("date_dmy", {"date_hint": "JJ/MM/AAAA"}, f"le 4 mars {CANARY}"),  # not a date
        ("datetime_dmy", {"date_hint": "JJ/MM/AAAA"}, "2026-03-04 10:00"),
        ("phone_e164", {"region": "NE"}, "+227 12"),  # too short
        ("phone_e164", {"region": "NE"}, "+227 9000 0000 0000 0000"),  # too long
        ("phone_e164", {"region": "NE"}, "+999 123 456 789"),  # no country code
        ("phone_e164", {"region": "NG"}, "+234 100 000 0000"),  # not in the plan
        ("phone_e164", {"region": "NE"}, CANARY),  # not a number
    ],
)
def test_transform_reasons_read_in_french(name: str, args: dict[str, Any], value: str) -> None:
    with pytest.raises(TransformFailed) as info:
        TRANSFORMS[name].to_shared(value, args)
    english = str(info.value)
    french = translate(reason_text(english), "fr")
    assert french != english, f"no French for {info.value.reason_code}: {english}"
    assert CANARY not in french and CANARY not in english


@pytest.mark.parametrize(
    "error",
    [
        MissingFieldError("consentement.agences_destinataires",
                          "does not name the recipient agency, nor does the consent name its country: the consent "
                          "does not cover this recipient", reason_code="consent_not_covering_recipient"),
        MissingFieldError("recipient_agencies", "is required for a schema v2 referral (v2 consent names the recipient "
                          "agencies) unless the recipient agency is given", reason_code="required_for_v2"),
        LocalRecordInvalidError("prs_LastName", "is not an HTCDS 2.0 field: use prs_SecondName",
                                reason_code="legacy_field"),
    ],
)
def test_engine_reasons_read_in_french(error: Any) -> None:
    detail = adapter_detail(error)
    french = translate(detail, "fr")
    assert french != str(detail)
    assert french.startswith(error.local_field)
