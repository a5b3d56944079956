"""Local formats through the API: a Niger fiche in, a NAPTIP record out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import MappingProxyType

from adapters import get_adapter
from gateway.schema import load_example
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
        # Both gateways take schema v2: the fiche travels as the v2 form of what the adapter makes.
        assert shared["payload"] == get_adapter("niger").to_shared_v2(FICHE, None, recipient=NIGERIA,
                                                                      recipient_country="NG").payload

        status, local = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing", "format": "nigeria"})
        assert status == 200 and local["format"] == "nigeria"
        assert_conforms(doc, "/inbox/{id}", "GET", 200, local)
        # The NAPTIP record carries the same person through the shared schema.
        assert get_adapter("nigeria").to_shared_v2(local["record"], None, recipient=NIGERIA,
                                                   recipient_country="NG").payload == shared["payload"]
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
        # every problem of the fiche in one answer, each named by its local field, no value quoted
        bad = dict(FICHE, sexe="Q", date_identification="2026-03-04", nom="Zyxwvuta", langues=["haoussa", "Zyxwvuta"])
        status, body = await ne.call("POST", "/referrals", json={
            "recipient": NIGERIA, "case_ref": "ne-ng-apiadapt00005", "format": "niger", "record": bad})
        assert status == 422, body
        assert body["detail"].split("; ") == [
            "date_identification: is written year first: write the date as JJ/MM/AAAA",
            "sexe: is not in the code list for sex (accepted: F, M, autre, inconnu)",
            "langues[1]: is not in the code list for language (see the code list 'langue' in docs/adapters.md)",
        ], body
        assert "Zyxwvuta" not in json.dumps(body) and "'Q'" not in body["detail"]
        status, body = await ne.call("POST", "/referrals", json={
            "recipient": NIGERIA, "case_ref": "ne-ng-apiadapt00004", "format": "niger", "record": FICHE,
            "payload": {}})
        assert (status, body["error"]) == (422, "invalid_request")
        status, body = await ne.call("GET", "/inbox/5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4",
                                     params={"purpose": "family_tracing", "format": "klingon"})
        assert (status, body["error"]) == (400, "invalid_query")


async def test_a_mali_record_to_a_v2_recipient_keeps_the_child_protection_block(tmp_path: Path) -> None:
    """The adapter's v2 path, not a v1 payload upgraded: the guardian's role survives."""
    from .support.adapter_checks import handwritten
    record, _ = handwritten("mali_03_garcon_orpaillage")
    assert record["tuteur"]["lien"] == "service social"
    record["consentement"]["agences_destinataires"] = [NIGERIA]  # the consent names this recipient
    async with api_pair(tmp_path) as (ne, ng):
        body = {"recipient": NIGERIA, "local_case_id": "ML-2026-0003", "format": "mali", "record": record}
        status, queued = await ne.call("POST", "/referrals", json=body)
        assert status == 202, queued
        mid = queued["message_id"]
        purpose = get_adapter("mali").to_shared_v2(record, None, recipient=NIGERIA,
                                                   recipient_country="NG").payload["purposes"][0]

        async def arrived() -> bool:
            return (await ng.call("GET", f"/inbox/{mid}", params={"purpose": purpose}))[0] == 200
        await eventually(arrived)
        status, shared = await ng.call("GET", f"/inbox/{mid}", params={"purpose": purpose})
        assert shared["payload"]["schema_version"] == "2"
        assert shared["payload"]["child_protection"]["guardian"]["role"] == "child_protection_social_worker"


async def test_a_v1_referral_consented_by_country_reads_in_a_v2_local_format(tmp_path: Path) -> None:
    """A referral that arrived as v1 (its sender's directory says the recipient takes v1)
    with a consent naming the recipient's country: a local format that reads v2 (HTCDS)
    gets the v2 form, whose consent names this agency (the country covered it), instead of
    a v2 payload without recipients that fails its own schema."""
    async with api_pair(tmp_path) as (ne, ng):
        directory = ne.gateway.directory
        v1_only = dataclasses.replace(directory.agency(NIGERIA), schema_versions=frozenset({"1"}))
        ne.gateway.directory = dataclasses.replace(
            directory, agencies=MappingProxyType({**directory.agencies, NIGERIA: v1_only}))
        payload = load_example("referral.request")
        assert payload["consent"]["recipient_countries"] == ["NG"] and "recipient_agencies" not in payload["consent"]
        status, queued = await ne.call("POST", "/referrals", json={
            "recipient": NIGERIA, "case_ref": "ne-ng-apiadapt00009", "payload": payload})
        assert status == 202 and queued["schema_version"] == "1", queued
        mid = queued["message_id"]

        async def arrived() -> bool:
            return (await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing"}))[0] == 200
        await eventually(arrived)
        status, local = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing", "format": "htcds"})
        assert status == 200, local
        assert local["format"] == "htcds"


async def test_a_v2_referral_reads_in_a_v1_form_with_what_the_form_can_say(tmp_path: Path) -> None:
    """A v2 child referral (child protection, needs beyond services, a juvenile judge as source) read
    in the NAPTIP and DNPEF forms: the v1 downgrade would refuse it whole (422
    not_representable_in_v1); the form gets what it has fields for, in its own words."""
    async with api_pair(tmp_path) as (ne, ng):
        payload = load_example("referral.request", "minor_guardian", "2")
        assert "child_protection" in payload and payload["identification"]["referral_source"] == "juvenile_judge"
        status, queued = await ne.call("POST", "/referrals", json={
            "recipient": NIGERIA, "case_ref": "ne-ng-apiadapt00010", "payload": payload})
        assert status == 202 and queued["schema_version"] == "2", queued
        mid = queued["message_id"]

        async def arrived() -> bool:
            return (await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing"}))[0] == 200
        await eventually(arrived)
        status, naptip = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing", "format": "nigeria"})
        assert status == 200, naptip
        assert naptip["record"]["referral_source"] == "juvenile judge"
        assert naptip["record"]["consent"]["recipient_agencies"] == [NIGERIA]  # the consent as NAPTIP holds it
        status, dnpef = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing", "format": "mali"})
        assert status == 200, dnpef
        record = dnpef["record"]
        assert record["situation_enfant"] == "non accompagné"
        assert record["tuteur"]["lien"] == "service social"
        assert record["evaluation_interet_superieur"]["conclusion"] == "retour recommandé"
