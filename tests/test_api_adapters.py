"""Local formats through the API: a Niger fiche in, a NAPTIP record out."""

from __future__ import annotations

import json
from pathlib import Path

from adapters import get_adapter
from gateway.schema_versions import downgrade_to_v1, upgrade_to_v2

from testkit.gateway_pair import NIGERIA, ROOT, eventually
from .test_api_world import api_pair, assert_conforms

FICHE = json.loads((ROOT / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json")
                   .read_text(encoding="utf-8"))


async def _document(agency) -> dict:
    return (await agency.call("GET", "/openapi.json", role=None))[1]


async def test_niger_fiche_in_naptip_record_out(tmp_path: Path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        doc = await _document(ne)
        body = {"recipient": NIGERIA, "local_case_id": "NE-ZINDER-2026-0142", "format": "niger", "record": FICHE}
        status, queued = await ne.call("POST", "/referrals", json=body)
        assert status == 202, queued
        assert_conforms(doc, "/referrals", "POST", 202, queued)
        # The fiche's local-only fields (case number, notes) are reported, never silently lost.
        assert {"numero_dossier", "observations"} <= {d["local_field"] for d in queued["dropped"]}
        mid = queued["message_id"]

        async def arrived() -> bool:
            return (await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing"}))[0] == 200
        await eventually(arrived)
        status, shared = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing"})
        # Both demo agencies take schema version 2: the fiche's v1 payload travelled upgraded.
        sent = get_adapter("niger").to_shared(FICHE, None).payload
        assert shared["header"]["schema"] == "2"
        assert shared["payload"] == upgrade_to_v2(sent, "referral.request", recipient=NIGERIA,
                                                  recipient_country="NG").payload

        status, local = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing", "format": "nigeria"})
        assert status == 200 and local["format"] == "nigeria"
        assert_conforms(doc, "/inbox/{id}", "GET", 200, local)
        # The NAPTIP record carries the same person through the shared schema.
        # (the NAPTIP adapter reads v1: the gateway hands it the v1 form of the stored v2 payload)
        assert get_adapter("nigeria").to_shared(local["record"], None).payload == downgrade_to_v1(
            shared["payload"], "referral.request", recipient=NIGERIA)
        assert local["record"]["nationality"] and local["record"]["gender"] == "F"


async def test_purposes_restrict_what_leaves_and_the_drop_is_reported(tmp_path: Path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        body = {"recipient": NIGERIA, "case_ref": "ne-ng-apiadapt00001", "format": "niger", "record": FICHE,
                "purposes": ["safety_assessment"]}
        status, queued = await ne.call("POST", "/referrals", json=body)
        assert status == 202, queued
        dropped = {d["local_field"]: d for d in queued["dropped"]}
        assert {"nom", "prenom"} <= set(dropped)
        assert "safety_assessment" in dropped["nom"]["reason"]
        record = await ne.gateway.store.get_outgoing(queued["message_id"])
        assert FICHE["nom"].encode() not in record.envelope  # encrypted anyway; and not sent at all


async def test_bad_local_submissions_are_422_naming_the_field(tmp_path: Path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        status, body = await ne.call("POST", "/referrals", json={
            "recipient": NIGERIA, "case_ref": "ne-ng-apiadapt00002", "format": "klingon", "record": FICHE})
        assert (status, body["error"]) == (422, "invalid_request")
        assert [v["path"] for v in body["violations"]] == ["$.format"]
        bad = dict(FICHE, sexe="Q", nom="Zyxwvuta")
        status, body = await ne.call("POST", "/referrals", json={
            "recipient": NIGERIA, "case_ref": "ne-ng-apiadapt00003", "format": "niger", "record": bad})
        assert status == 422 and "sexe" in body["detail"], body
        assert "Zyxwvuta" not in json.dumps(body)
        status, body = await ne.call("POST", "/referrals", json={
            "recipient": NIGERIA, "case_ref": "ne-ng-apiadapt00004", "format": "niger", "record": FICHE,
            "payload": {}})
        assert (status, body["error"]) == (422, "invalid_request")
        status, body = await ne.call("GET", "/inbox/5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4",
                                     params={"purpose": "family_tracing", "format": "klingon"})
        assert (status, body["error"]) == (400, "invalid_query")
