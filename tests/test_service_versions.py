"""The send path negotiates the payload schema version with the recipient's directory entry."""

from __future__ import annotations

from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from gateway import errors, schema
from gateway.consent import ConsentRecipientError, ConsentRefusedError
from gateway.schema_versions import DowngradeError, downgrade_to_v1
from gateway.service import Actor
from gateway.store import AuditQuery

from testkit.gateway_pair import NIGERIA, eventually, gateway_pair

WORKER = Actor("amina.caseworker", "caseworker")
OFFICER = Actor("officer.ng", "caseworker")
CANARY = "Zebulon Quarantinovic"


def _v1_only(gateway, agency_id: str) -> None:
    """Make the sender's directory say ``agency_id`` takes version 1 only (as an older entry would)."""
    directory = gateway.directory
    agency = directory.agency(agency_id)
    gateway.directory = replace(directory, agencies={**directory.agencies,
                                                     agency_id: replace(agency, schema_versions=frozenset({"1"}))})


async def _received(ng):
    async def arrived():
        return bool(await ng.list_inbox())
    await eventually(arrived)
    (record,) = await ng.list_inbox()
    return await ng.read_incoming(record.message_id, actor=OFFICER, purpose="assistance")


async def test_demo_agencies_negotiate_v2(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        assert ne.schema_version_for(NIGERIA) == "2"
        assert ne.schema_version_for("ML-DNPEF") == "1"
        payload = schema.load_example("referral.request", "all_purposes", "2")
        header = await ne.submit("referral.request", payload, recipient=NIGERIA, case_ref="ne-ng-versions-01",
                                 actor=WORKER)
        assert header.schema == "2"
        opened = await _received(ng)
        assert opened.header.schema == "2" and opened.payload == payload


async def test_v2_payload_is_downgraded_for_a_v1_only_recipient(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        _v1_only(ne, NIGERIA)
        payload = schema.load_example("referral.request", None, "2")
        header = await ne.submit("referral.request", payload, recipient=NIGERIA, case_ref="ne-ng-versions-02",
                                 actor=WORKER)
        assert header.schema == "1"
        opened = await _received(ng)
        assert opened.header.schema == "1"
        assert opened.payload == downgrade_to_v1(payload, "referral.request", recipient=NIGERIA)
        assert "schema_version" not in opened.payload


async def test_v2_payload_v1_cannot_carry_is_refused_naming_the_fields(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, _):
        _v1_only(ne, NIGERIA)
        payload = schema.load_example("referral.request", "minor_guardian", "2")
        payload["child_protection"]["guardian"]["names"]["given"] = CANARY
        with capture_logs() as logs, pytest.raises(DowngradeError) as info:
            await ne.submit("referral.request", payload, recipient=NIGERIA, case_ref="ne-ng-versions-03",
                            actor=WORKER)
        paths = {f.path for f in info.value.fields}
        assert {"$.child_protection", "$.needs.medical_urgency", "$.identification.referral_source"} <= paths
        assert CANARY not in str(info.value) and CANARY not in str(logs)
        assert await ne.store.due_outgoing(ne.clock(), 10) == []


async def test_v2_consent_for_another_agency_of_the_country_is_refused_on_sending(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, _):
        payload = schema.load_example("referral.request", None, "2")
        payload["consent"]["recipients"] = [{"agency": "NG-IOM", "purposes": payload["purposes"]}]
        with pytest.raises(ConsentRecipientError):
            await ne.submit("referral.request", payload, recipient=NIGERIA, case_ref="ne-ng-versions-04",
                            actor=WORKER)


async def test_submitted_payload_is_validated_in_its_own_version(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, _):
        payload = schema.load_example("referral.request", "interpreter_uncoded_language", "2")
        payload["narrative"] = f"{CANARY} said so."
        with pytest.raises(errors.SchemaInvalidError) as info:
            await ne.submit("referral.request", payload, recipient=NIGERIA, case_ref="ne-ng-versions-05",
                            actor=WORKER)
        assert [(v.path, v.rule) for v in info.value.violations] == [("$.narrative", "false")]
        assert CANARY not in str(info.value)


async def test_v1_submission_to_a_v2_recipient_drops_what_v2_forbids(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        payload = schema.load_example("referral.request", "all_purposes")  # v1: narrative with assistance
        header = await ne.submit("referral.request", payload, recipient=NIGERIA, case_ref="ne-ng-versions-06",
                                 actor=WORKER)
        assert header.schema == "2"
        opened = await _received(ng)
        assert not {"narrative", "acts", "means", "methods_of_control"} & set(opened.payload)
        assert opened.payload["needs"] == {"services": payload["needs"]}


def _v2_only(gateway, agency_id: str) -> None:
    """Make the sender's directory say ``agency_id`` takes version 2 only."""
    directory = gateway.directory
    agency = directory.agency(agency_id)
    gateway.directory = replace(directory, agencies={**directory.agencies,
                                                     agency_id: replace(agency, schema_versions=frozenset({"2"}))})


async def test_v1_consent_not_covering_a_v2_only_recipient_is_refused_as_consent_and_audited(tmp_path) -> None:
    # The refusal names its cause (consent) and is audited, not "convert the payload first".
    async with gateway_pair(tmp_path) as (ne, _):
        _v2_only(ne, NIGERIA)
        payload = schema.load_example("referral.request")
        payload["consent"]["recipient_countries"] = ["ML"]
        with pytest.raises(ConsentRefusedError):
            await ne.submit("referral.request", payload, recipient=NIGERIA, case_ref="ne-ng-versions-v2only",
                            actor=WORKER)
        refused = await ne.store.query_audit(AuditQuery(event_types=("consent.refused",)), 10)
        assert [r.case_ref for r in refused] == ["ne-ng-versions-v2only"]
        assert await ne.store.query_audit(AuditQuery(event_types=("message.created",)), 10) == []
