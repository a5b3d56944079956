"""Every error a clerk can get from a real record of each adapter reads in French, names the field, quotes no value.

The API's 422 ``detail`` for a record (``POST /referrals`` with ``format`` and ``record``) is
``adapters.errors.adapter_detail`` of each problem, translated (docs/translations.md). A reason
no template knows stays English in a French answer, and keeps the value it quoted; these
records (the samples, broken one way each) reach the reasons of the engine, the local schemas,
the transforms and the country code (HTCDS, Mali, Nigeria).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from adapters import AdapterError, get_adapter
from adapters.errors import adapter_detail
from gateway.i18n import translate

ROOT = Path(__file__).resolve().parent.parent
CANARY = "Zyxwvutsrq"


def _sample(fmt: str, name: str) -> dict[str, Any]:
    return json.loads((ROOT / "adapters" / fmt / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def _set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                record.pop(key, None)
            else:
                record[key] = value
    return change


def _consent(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                record["consent"].pop(key, None)
            else:
                record["consent"][key] = value
    return change


H, HM = "htcds_2_0_complete", "minor_assisted_return_guardian"
NG = "minor_guardian_family_tracing"
CJC = {"x_rgw_Purposes": ["CriminalJusticeCooperation"], "x_rgw_ConsentPurposes": ["CriminalJusticeCooperation"]}
BROKEN: list[tuple[str, str, Callable[[dict[str, Any]], None], bool]] = [
    ("htcds", H, _set(con_Consent=False), False),
    ("htcds", H, _set(con_Consent=CANARY), False),
    ("htcds", H, _set(prs_PrimaryLanguage="zzq"), False),
    ("htcds", H, _set(prs_Birthdate="09/04/2003"), False),
    ("htcds", H, _set(x_rgw_ConsentGivenAt="2026-02-12T25:00"), False),
    ("htcds", H, _set(cas_Status=CANARY), False),
    ("htcds", H, _set(cas_ReasonForOutgoingReferral=CANARY), False),
    ("htcds", H, _set(prs_Citizenship=[CANARY]), False),
    ("htcds", H, _set(x_rgw_CareStatus="Unaccompanied"), False),
    ("htcds", H, _set(x_rgw_MedicalCategory="Injury"), False),
    ("htcds", H, _set(x_rgw_InterpreterNeeded="Yes"), False),
    ("htcds", H, _set(x_rgw_ConsentPurposes=None), False),
    ("htcds", H, _set(x_rgw_ConsentRecipients=[{"Agency": "NG-NAPTIP", "Purposes": ["Assistance"]}]), False),
    ("htcds", H, _set(x_rgw_AccompanyingChildren=[{"AgeBand": "0-8"}]), False),
    ("htcds", H, _set(x_rgw_AccompanyingChildren=[{"AgeBand": CANARY, "Relationship": "Child"}]), False),
    ("htcds", H, _set(x_rgw_AccompanyingChildren=CANARY), False),
    ("htcds", H, _set(**CJC), False),
    ("htcds", H, _set(**CJC, x_rgw_CooperationDecision="Declines", x_rgw_CooperationDecidedOn="2026-02-01"), False),
    ("htcds", H, _set(x_rgw_Exploitation=[{"Type": "ForcedLabour"}]), False),
    ("htcds", HM, _set(x_rgw_BestInterestsStatus="Completed", x_rgw_BestInterestsOutcome=None), False),
    ("htcds", HM, _set(x_rgw_BestInterestsStatus="InProgress", x_rgw_BestInterestsOutcome=None,
                       x_rgw_BestInterestsDecidedOn="2026-01-01"), False),
    ("htcds", HM, _set(x_rgw_ConsentDecisionMaker="Self"), False),
    ("nigeria", NG, _set(minor=None, date_of_birth=None), False),
    ("nigeria", NG, _set(gender=CANARY, date_identified="2026-01-18", zonal_office=CANARY), False),
    ("nigeria", NG, _set(state_of_origin="Ontario"), False),
    ("nigeria", NG, _set(estimated_age=300, date_of_birth=None), False),
    ("mali", "fillette_recherche_retour", _set(finalites_demandees=["assistance"]), False),
    ("nigeria", NG, _consent(given_by="victim", date=None), False),
    ("nigeria", NG, _consent(recipient_countries=None, recipient_agencies=None), False),
    ("nigeria", NG, _consent(recipient_countries=["Niger"], recipient_agencies=[]), True),
    ("mali", "fillette_recherche_retour", _set(evaluation_interet_superieur={"conclusion": CANARY}), False),
    ("mali", "fillette_recherche_retour", _set(pays_origine=None), False),
    ("mali", "fillette_recherche_retour", _set(langues=[CANARY]), False),
    ("niger", "mineure_retour_tuteur", _set(contacts_famille=[{"lien": None, "telephone": "+227 12"}]), False),
]


@pytest.mark.parametrize(("fmt", "sample", "change", "v2"), BROKEN,
                         ids=[f"{fmt}-{i}" for i, (fmt, *_) in enumerate(BROKEN)])
def test_every_error_of_a_broken_record_reads_in_french(fmt: str, sample: str,
                                                        change: Callable[[dict[str, Any]], None], v2: bool) -> None:
    record = copy.deepcopy(_sample(fmt, sample))
    change(record)
    adapter = get_adapter(fmt)
    with pytest.raises(AdapterError) as info:
        if v2:
            adapter.to_shared_v2(record, None, recipient="NG-NAPTIP", recipient_country="NG")
        else:
            adapter.to_shared(record, None)
    for error in info.value.errors:
        detail = adapter_detail(error)
        english, french = translate(detail, "en"), translate(detail, "fr")
        reason = english.split(": ", 1)[-1]
        assert reason not in french, f"no French for: {english}"
        assert "accepted:" not in french and "see the code list" not in french, french
        assert CANARY not in english and CANARY not in french, english
        if error.local_field:
            assert french.startswith(error.local_field), french


@pytest.mark.parametrize("fmt", ["niger", "nigeria", "mali", "htcds"])
def test_every_code_list_label_an_error_names_reads_in_french(fmt: str) -> None:
    """'ne figure pas dans la liste de codes « sexe »', not « sex »: the labels are in the catalogues
    (babel.cfg extracts them from the mapping tables)."""
    from gateway.i18n import msg
    table = get_adapter(fmt).table  # type: ignore[attr-defined]
    for name, codes in table.code_lists.items():
        assert translate(msg(codes.label), "fr") != codes.label, f"{fmt}: no French label for code list {name}"


def test_a_code_list_error_names_the_list_in_french() -> None:
    record = _sample("nigeria", NG) | {"gender": "Q"}
    with pytest.raises(AdapterError) as info:
        get_adapter("nigeria").to_shared(record)
    assert translate(adapter_detail(info.value), "fr") == \
        "gender : ne figure pas dans la liste de codes « sexe » (valeurs acceptées : F, M, O, U)"
    assert translate(adapter_detail(info.value), "en") == "gender: is not in the code list for sex (accepted: F, M, O, U)"
