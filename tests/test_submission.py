"""The submission path shared by POST /referrals and the workspace (gateway/api/submission.py):
a preview shows what would leave without storing anything; sending it is a submission."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from adapters.registry import get_adapter
from gateway.actors import Actor
from gateway.api.submission import leaving, preview, shared_payload, submit
from gateway.i18n import translate

from testkit.gateway_pair import NIGERIA, ROOT, gateway_pair

FICHE = json.loads((ROOT / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json")
                   .read_text(encoding="utf-8"))
ACTOR = Actor("test-caseworker", "caseworker")


async def test_preview_shows_what_leaves_and_what_is_dropped_and_stores_nothing(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, _ng):
        audit_before = await ne.store.audit_size()
        found = await preview(ne, recipient=NIGERIA, local_format="niger", record=FICHE,
                              purposes=["family_tracing"])
        assert found.problems == () and found.outgoing is not None
        outgoing = found.outgoing
        # Both demo gateways take schema v2: the adapter's v2 payload is what would leave.
        assert outgoing.schema_version == "2" and outgoing.payload["schema_version"] == "2"
        expected = get_adapter("niger").to_shared_v2(FICHE, ["family_tracing"], recipient=NIGERIA,
                                                     recipient_country="NG")
        assert outgoing.payload == expected.payload
        dropped = {d.local_field: d.reason for d in outgoing.dropped or ()}
        assert dropped["numero_dossier"].startswith("local only")
        assert "not allowed for purposes" in dropped["besoins"]  # needs: not for family tracing
        assert outgoing.payload["purposes"] == ["family_tracing"]
        assert await ne.store.list_outgoing(10) == []
        assert await ne.store.audit_size() == audit_before


async def test_a_previewed_message_is_the_one_submitted(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, _ng):
        found = await preview(ne, recipient=NIGERIA, local_format="niger", record=FICHE)
        assert found.outgoing is not None
        payload, dropped = await shared_payload(ne, recipient=NIGERIA, payload=None, local_format="niger",
                                                record=FICHE)
        outgoing = leaving(ne, "referral.request", payload, NIGERIA, dropped)
        assert outgoing == found.outgoing
        header = await submit(ne, outgoing, case_ref="ne-ng-qgfqyk3q6bwq5ydzn3ctmcck", actor=ACTOR)
        record = await ne.store.get_outgoing(header.id)
        assert record is not None and record.recipient == NIGERIA and record.message_type == "referral.request"


async def test_preview_problems_name_the_local_field_with_a_translatable_reason(tmp_path: Path) -> None:
    record = copy.deepcopy(FICHE)
    record["date_identification"] = "2026-03-04"  # year first
    record["sexe"] = "peut-être"
    record["contacts_famille"][0]["telephone"] = "appeler le chef"
    async with gateway_pair(tmp_path) as (ne, _ng):
        found = await preview(ne, recipient=NIGERIA, local_format="niger", record=record)
    assert found.outgoing is None
    by_field = {p.local_field: p for p in found.problems}
    assert by_field["date_identification"].reason_code == "date_year_first"
    assert by_field["date_identification"].params == {"hint": "JJ/MM/AAAA"}
    assert translate(by_field["date_identification"].reason, "fr") != by_field["date_identification"].reason
    assert by_field["sexe"].reason_code == "not_in_code_list"
    assert "peut-être" not in str(by_field["sexe"].reason) and "peut-être" not in json.dumps(by_field["sexe"].params)
    assert "contacts_famille[0].telephone" in by_field
    # Never the submitted free text, in any language.
    for problem in found.problems:
        for lang in ("en", "fr"):
            assert "appeler le chef" not in translate(problem.reason, lang)


async def test_preview_refuses_a_consent_that_does_not_cover_the_recipient(tmp_path: Path) -> None:
    record = copy.deepcopy(FICHE)
    record["consentement"]["pays_destinataires"] = ["Mali"]
    async with gateway_pair(tmp_path) as (ne, _ng):
        found = await preview(ne, recipient=NIGERIA, local_format="niger", record=record)
    assert found.outgoing is None
    assert [p.reason_code for p in found.problems] in (["consent_not_covering_recipient"],
                                                       ["consent_recipient_not_covered"])
    assert found.problems[0].local_field is not None and found.problems[0].local_field.startswith("consentement")
    assert translate(found.problems[0].reason, "fr") != str(found.problems[0].reason)


async def test_a_date_ahead_of_today_is_a_problem_of_its_local_field(tmp_path: Path) -> None:
    record = copy.deepcopy(FICHE)
    record["date_identification"] = "01/01/2099"
    async with gateway_pair(tmp_path) as (ne, _ng):
        found = await preview(ne, recipient=NIGERIA, local_format="niger", record=record)
    assert found.outgoing is None
    (problem,) = found.problems
    assert problem.reason_code == "invalid_request" and problem.local_field == "date_identification"
    assert problem.params == {"shared_path": "identification.identified_on"}
    assert "date" in translate(problem.reason, "fr")
