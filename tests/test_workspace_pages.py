"""The workspace's inbox, read, answer and follow-up pages, against two gateways: what each
role may reach, that personal data appears only in the authorised read, and that the forms
send the messages they say (docs/workspace.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.store import AuditQuery
from gateway.actors import Actor
from gateway.clock import format_ts
from gateway.schema import load_example, load_schema
from gateway.workspace.fields import FIELD_LABELS
from gateway.workspace.security import CSP

from testkit.gateway_pair import NIGERIA, eventually
from tests.support.workspace import Browser, Site, workspace_pair

CASE = "ne-ng-wspages0001"
#: Personal data of the example referral (synthetic): no page but the authorised read may show them.
CANARIES = ("Amaka", "Testfixture", "Ngozi", "+2348000000001", "2348000000001", "Benin City", "Oredo")
NE_WORKER = Actor("caseworker.ne-anltp-tim", "caseworker")
FOLLOW_UP_TYPES = ("safety_assessment.result", "family_tracing.result", "return.plan", "return.arrival",
                   "case.followup", "case.closure")


async def _referral(ne: Site, ng: Site) -> str:
    """NE sends the example referral (v2) to NG; returns its id once NG has stored it."""
    header = await ne.gateway.submit("referral.request", load_example("referral.request", version="2"),
                                     recipient=NIGERIA, case_ref=CASE, actor=NE_WORKER)

    async def arrived() -> bool:
        return await ng.gateway.store.get_incoming(header.id) is not None
    await eventually(arrived)
    return header.id


def _canaries_in(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


def _title(page: str) -> str:
    found = re.search(r"<title>(.*?)</title>", page, re.S)
    return found.group(1) if found else ""


async def _audit(site: Site, event: str) -> list[dict]:
    return [{"actor": e.actor, "message_id": e.message_id, **json.loads(e.detail_json)}
            for e in await site.gateway.store.read_audit(1, 100_000) if e.event_type == event]


def _row(page: str, mid: str) -> str:
    found = re.search(rf'<tr data-message-id="{mid}" data-status="(\w+)">(.*?)</tr>', page, re.S)
    assert found, "no inbox row for the message"
    return found.group(1)


async def test_inbox_read_answer_and_no_personal_data_outside_the_read(tmp_path) -> None:
    with capture_logs() as logs:
        async with workspace_pair(tmp_path) as (ne, ng):
            mid = await _referral(ne, ng)
            worker = await ng.browser("caseworker")
            status, page, headers = await worker.get("/workspace/inbox")
            assert status == 200 and headers["Content-Security-Policy"] == CSP
            assert _row(page, mid) == "received"
            assert "Safety assessment, Family tracing" in page and "NE-ANLTP-TIM" in page
            assert f'<a class="open" href="/workspace/inbox/{mid}">' in page
            # Filters: by type, sender and status (and the htmx attributes enhance the same form).
            assert mid not in (await worker.get("/workspace/inbox?type=referral.response"))[1]
            assert mid not in (await worker.get("/workspace/inbox?sender=ML-DNPEF"))[1]
            assert mid in (await worker.get("/workspace/inbox?status=received&type=referral.request"))[1]
            assert mid not in (await worker.get("/workspace/inbox?status=read"))[1]
            assert (await worker.get("/workspace/inbox?type=<script>"))[0] == 400
            # The message page: metadata and a purpose, no payload.
            status, page, _ = await worker.get(f"/workspace/inbox/{mid}")
            assert status == 200 and 'id="read-purpose"' in page and 'name="purpose"' in page
            assert 'value="safety_assessment"' in page and 'value="family_tracing"' in page
            assert 'value="case_followup"' in page and 'value="assistance"' not in page
            assert 'id="payload"' not in page
            # Reading it: the purpose is audited, the payload shown with labels, the consent beside it.
            status, page, headers = await worker.post(f"/workspace/inbox/{mid}/read", {"purpose": "family_tracing"})
            assert status == 200 and headers["Cache-Control"] == "no-store"
            payload = page[page.index('<section id="payload"'):page.index('<section id="consent"')]
            assert "Amaka" in payload and "Benin City" in payload and "Female" in payload and "Mother" in payload
            consent = page[page.index('<section id="consent"'):page.index('<section id="answer-section"')]
            assert "NG-NAPTIP" in consent and "Written" in consent and "The person themself" in consent
            assert "Amaka" not in _title(page)
            reads = await _audit(ng, "message.read")
            assert reads == [{"actor": "caseworker.ng-naptip", "message_id": mid, "purpose": "family_tracing",
                              "role": "caseworker"}]

            async def read_receipt() -> bool:
                return (await ne.gateway.store.get_outgoing(mid)).status == "read"
            await eventually(read_receipt)
            assert _row((await worker.get("/workspace/inbox"))[1], mid) == "read"
            # The answer form carries the schema's codes and only the request's purposes.
            assert 'id="answer"' in page and 'name="decision"' in page and 'value="no_capacity"' in page
            assert 'name="accepted_purposes" value="family_tracing"' in page
            assert 'name="information_needed" value="family_contacts"' in page
            status, page, _ = await worker.post(f"/workspace/inbox/{mid}/answer",
                                                [("decision", "accepted"), ("accepted_purposes", "assistance")])
            assert status == 422 and 'role="alert"' in page  # a purpose the referral did not ask for
            status, page, _ = await worker.post(f"/workspace/inbox/{mid}/answer",
                                                [("decision", "accepted"), ("accepted_purposes", "family_tracing")])
            assert status == 200 and 'id="queued"' in page
            response_id = re.search(r'id="sent-message-id">([0-9a-f-]{36})<', page).group(1)

            async def answered_at_ne() -> bool:
                return await ne.gateway.store.get_incoming(response_id) is not None
            await eventually(answered_at_ne)
            opened = await ne.gateway.read_incoming(response_id, actor=NE_WORKER, purpose="case_followup")
            assert opened.header.type == "referral.response" and opened.header.in_reply_to == mid
            assert opened.payload["decision"] == "accepted"
            assert opened.payload["accepted_purposes"] == ["family_tracing"]
            assert _row((await worker.get("/workspace/inbox"))[1], mid) == "responded"
            # Answered: the read page says so instead of offering the form again.
            _, page, _ = await worker.post(f"/workspace/inbox/{mid}/read", {"purpose": "case_followup"})
            assert 'id="answered"' in page and 'id="answer"' not in page
            status, _, _ = await worker.post(f"/workspace/inbox/{mid}/answer",
                                             {"decision": "declined", "decline_reason": "no_capacity"})
            assert status == 409
            # French: the same pages, labels translated.
            french = await ng.browser(headers={"Accept-Language": "fr"})
            await french.sign_in("caseworker.ng-naptip", "pw-caseworker-ng-naptip-long-enough")
            _, page, _ = await french.get("/workspace/inbox")
            assert '<html lang="fr">' in page and "Réponse envoyée" in page and "Évaluation de la sécurité" in page
            _, page, _ = await french.post(f"/workspace/inbox/{mid}/read", {"purpose": "family_tracing"})
            assert "Féminin" in page and "Mère" in page and "Lieu d’origine" in page and "Écrit" in page
            browsers: list[Browser] = [*ng.browsers, *ne.browsers]
            pages = [(path, status, page) for b in browsers for path, status, _, page in b.seen]
            assert all(h.get("Content-Security-Policy") == CSP and h.get("Cache-Control") == "no-store"
                       for b in browsers for _, _, h, _ in b.seen)
    # Only the answers to POST .../read may hold the canaries; no URL, no title, no log line.
    for path, status, page in pages:
        assert not _canaries_in(path), path
        assert not _canaries_in(_title(page)), path
        if not re.fullmatch(r"/workspace/inbox/[0-9a-f-]{36}/read", path):
            assert not _canaries_in(page), path
    assert any(_canaries_in(page) for path, _, page in pages if path.endswith("/read"))
    assert not _canaries_in(repr(logs))


async def test_auditor_sees_the_list_but_no_payload_page_and_admin_no_case_page(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        mid = await _referral(ne, ng)
        auditor = await ng.browser("auditor")
        status, page, _ = await auditor.get("/workspace/inbox")
        assert status == 200 and _row(page, mid) == "received" and 'class="open"' not in page
        assert not _canaries_in(page)
        admin = await ng.browser("admin")
        _, admin_home, _ = await admin.get("/workspace/admin")
        assert "/workspace/inbox" not in admin_home and "/workspace/admin" in admin_home
        payload_pages = [("GET", f"/workspace/inbox/{mid}", None),
                         ("POST", f"/workspace/inbox/{mid}/read", {"purpose": "family_tracing"}),
                         ("POST", f"/workspace/inbox/{mid}/answer", {"decision": "declined",
                                                                     "decline_reason": "no_capacity"}),
                         *[("GET", f"/workspace/cases/{CASE}/send/{t}", None) for t in FOLLOW_UP_TYPES],
                         ("POST", f"/workspace/cases/{CASE}/send/case.closure", {"status": "closed"})]
        for browser, role in ((auditor, "auditor"), (admin, "admin")):
            for method, path, fields in payload_pages:
                if method == "GET":
                    status, page, _ = await browser.get(path)
                else:
                    status, page, _ = await browser.post(path, fields)
                assert status == 403, (role, path)
                assert not _canaries_in(page) and 'id="payload"' not in page
        status, _, _ = await admin.get("/workspace/inbox")
        assert status == 403
        refused = await _audit(ng, "auth.forbidden")
        assert {(r["actor"], r["path"]) for r in refused} >= {
            ("auditor.ng-naptip", "/workspace/inbox/{id}/read"), ("admin.ng-naptip", "/workspace/inbox"),
            ("admin.ng-naptip", "/workspace/inbox/{id}/read")}
        assert await _audit(ng, "message.read") == []  # nobody read anything
        assert (await ne.gateway.store.get_outgoing(mid)).status != "read"


async def test_follow_up_forms_send_their_message_types(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        mid = await _referral(ne, ng)
        worker = await ng.browser("caseworker")
        _, page, _ = await worker.post(f"/workspace/inbox/{mid}/read", {"purpose": "safety_assessment"})
        for message_type in FOLLOW_UP_TYPES:
            assert f'href="/workspace/cases/{CASE}/send/{message_type}"' in page
        # The form is generated from the schema: every enumeration's codes, and the case's referral.
        status, page, _ = await worker.get(f"/workspace/cases/{CASE}/send/safety_assessment.result")
        assert status == 200 and 'id="follow-up"' in page
        for code in load_schema("safety_assessment.result", "2")["properties"]["recommendation"]["enum"]:
            assert f'value="{code}"' in page
        assert f'<option value="{mid}">' in page
        # Refused by the schema: the errors stand next to their fields, the values stay.
        status, page, _ = await worker.post(f"/workspace/cases/{CASE}/send/safety_assessment.result",
                                            {"request_message_id": mid, "risk_level": "low",
                                             "recommendation": "return_with_conditions"})
        assert status == 422 and 'id="f-assessed_on-error"' in page and 'id="f-conditions-error"' in page
        assert re.search(r'<option value="low" selected>', page)
        sent = {}
        forms = {
            "safety_assessment.result": [("request_message_id", mid), ("assessed_on", "2026-03-10"),
                                         ("risk_level", "medium"), ("recommendation", "return_with_conditions"),
                                         ("conditions", "escort_required"), ("conditions", "family_mediation")],
            "family_tracing.result": [("request_message_id", mid), ("outcome", "family_found"),
                                      ("relatives_found.0.relationship", "mother"),
                                      ("relatives_found.0.willing_to_receive", "true"),
                                      ("family_location.country", "NG")],
            "case.followup": [("followed_up_on", "2026-04-01"), ("method", "phone"), ("case_status", "follow_up"),
                              ("services_received", "psychosocial")],
            "case.closure": [("closed_on", "2026-06-01"), ("status", "closed"), ("reason", "reintegration_completed")],
        }
        for message_type, fields in forms.items():
            status, page, _ = await worker.post(f"/workspace/cases/{CASE}/send/{message_type}", fields)
            assert status == 200 and 'id="queued"' in page, (message_type, re.findall(r'class="error"[^>]*>([^<]*)', page))
            sent[message_type] = re.search(r'id="sent-message-id">([0-9a-f-]{36})<', page).group(1)

        async def all_arrived() -> bool:
            return all([await ne.gateway.store.get_incoming(i) is not None for i in sent.values()])
        await eventually(all_arrived)
        for message_type, message_id in sent.items():
            opened = await ne.gateway.read_incoming(message_id, actor=NE_WORKER, purpose="case_followup")
            assert opened.header.type == message_type and opened.header.case == CASE
        tracing = await ne.gateway.read_incoming(sent["family_tracing.result"], actor=NE_WORKER,
                                                 purpose="case_followup")
        assert tracing.payload["relatives_found"] == [{"relationship": "mother", "willing_to_receive": True}]
        assert tracing.header.in_reply_to == mid
        safety = await ne.gateway.read_incoming(sent["safety_assessment.result"], actor=NE_WORKER,
                                                purpose="case_followup")
        assert safety.payload["conditions"] == ["escort_required", "family_mediation"]
        # A case the gateway does not know, and a type that is not a follow-up: not found.
        assert (await worker.get("/workspace/cases/ne-ng-unknown0001/send/case.closure"))[0] == 404
        assert (await worker.get(f"/workspace/cases/{CASE}/send/referral.request"))[0] == 404


async def test_erased_after_consent_withdrawal(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        mid = await _referral(ne, ng)
        await ne.gateway.withdraw_consent(CASE, {"withdrawn_at": format_ts(ne.gateway.clock()),
                                                 "decision_maker": "self", "scope": "all_purposes",
                                                 "erasure_requested": True}, actor=NE_WORKER)
        worker = await ng.browser("caseworker", headers={"Accept-Language": "fr"})

        async def erased() -> bool:
            return _row((await worker.get("/workspace/inbox"))[1], mid) == "erased"
        await eventually(erased)
        _, page, _ = await worker.get("/workspace/inbox?status=erased")
        assert mid in page and "Effacé" in page
        status, page, _ = await worker.get(f"/workspace/inbox/{mid}")
        assert status == 200 and 'id="erased"' in page and 'id="read-purpose"' not in page
        status, page, _ = await worker.post(f"/workspace/inbox/{mid}/read", {"purpose": "family_tracing"})
        assert status == 410 and 'id="erased"' in page and not _canaries_in(page)
        assert [r["reason"] for r in await _audit(ng, "message.read_refused")] == ["payload_shredded"]


def test_every_field_of_the_case_messages_has_a_label() -> None:
    """A field added to a schema needs a label (and its French) in gateway/workspace/fields.py."""
    types = ("referral.request", "referral.response", "consent.withdrawal", *FOLLOW_UP_TYPES)
    names: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    root = Path(__file__).resolve().parent.parent / "schemas"
    for version in ("1", "2"):
        for message_type in types:
            walk(load_schema(message_type, version))
        walk(json.loads((root / f"v{version}" / "common.schema.json").read_text(encoding="utf-8")))
    assert sorted(names - set(FIELD_LABELS)) == []


@pytest.mark.parametrize("lang, expected", [("en", "This is required."), ("fr", "obligatoire")])
async def test_follow_up_errors_speak_the_page_language(tmp_path, lang: str, expected: str) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        await _referral(ne, ng)
        worker = await ng.browser("caseworker", headers={"Accept-Language": lang})
        await worker.get(f"/workspace/cases/{CASE}/send/case.closure")
        status, page, _ = await worker.post(f"/workspace/cases/{CASE}/send/case.closure", {"status": "closed"})
        assert status == 422
        errors = re.findall(r'class="error" id="f-[a-z_]+-error">([^<]*)<', page)
        assert errors and all(expected in e for e in errors), errors


async def test_inbox_shows_the_newest_first_across_store_pages(tmp_path, monkeypatch) -> None:
    from gateway.workspace.pages import inbox

    monkeypatch.setattr(inbox, "SCAN_PAGE", 2)
    monkeypatch.setattr(inbox, "MAX_ROWS", 3)
    async with workspace_pair(tmp_path) as (ne, ng):
        ids = []
        for n in range(5):
            header = await ne.gateway.submit("referral.request", load_example("referral.request", version="2"),
                                             recipient=NIGERIA, case_ref=f"ne-ng-wsorder000{n}", actor=NE_WORKER)
            ids.append(header.id)

            async def arrived() -> bool:
                return await ng.gateway.store.get_incoming(header.id) is not None
            await eventually(arrived)
        worker = await ng.browser("caseworker")
        _, page, _ = await worker.get("/workspace/inbox")
        shown = re.findall(r'<tr data-message-id="([0-9a-f-]{36})"', page)
        assert shown == ids[::-1][:3] and "Only the newest 3 are shown" in page


def _flatten(rows) -> list[tuple[str, str | None]]:
    out = []
    for row in rows:
        out.append((row.name, row.value))
        out += _flatten(row.rows)
        for group in row.groups:
            out += _flatten(group)
    return out


@pytest.mark.parametrize("version", ["1", "2"])
def test_every_example_is_shown_with_labels_in_both_languages(version: str) -> None:
    from gateway import schema
    from gateway.code_lists import code_lists
    from gateway.workspace.fields import describe

    codes = {c for values in code_lists().values() for c in values if c not in ("other", "unknown")}
    for name in schema.example_names(version):
        message_type = schema.example_message_type(name)
        payload = load_example(message_type, name[len(message_type) + 1:] or None, version=version)
        for lang in ("en", "fr"):
            shown = _flatten(describe(payload, message_type, version, lang))
            assert {field for field, _ in shown} - {"schema_version"}, name
            # A code is shown by its label, never as the bare code (labels exist for every code).
            raw = [v for _, v in shown if v in codes and v not in {"NG", "NE", "ML"} and "-" not in v]
            assert raw == [], (name, lang, raw)


async def test_a_follow_up_posted_twice_with_its_form_key_is_sent_once(tmp_path) -> None:
    # A reloaded POST or a second click on the same form: one message, the same queued page.
    async with workspace_pair(tmp_path) as (ne, ng):
        await _referral(ne, ng)
        worker = await ng.browser("caseworker")
        _, page, _ = await worker.get(f"/workspace/cases/{CASE}/send/case.closure")
        key = re.search(r'name="send_key" value="([^"]+)"', page).group(1)
        fields = [("closed_on", "2026-06-01"), ("status", "closed"), ("reason", "reintegration_completed"),
                  ("send_key", key)]
        ids = []
        for _ in range(2):
            status, page, _ = await worker.post(f"/workspace/cases/{CASE}/send/case.closure", fields)
            assert status == 200 and 'id="queued"' in page
            ids.append(re.search(r'id="sent-message-id">([0-9a-f-]{36})<', page).group(1))
        assert ids[0] == ids[1]
        created = await ng.gateway.store.query_audit(AuditQuery(event_types=("message.created",)), 50)
        assert [e.message_id for e in created if e.message_id == ids[0]] == [ids[0]]
        # A fresh form is a fresh message.
        _, page, _ = await worker.get(f"/workspace/cases/{CASE}/send/case.closure")
        fields[-1] = ("send_key", re.search(r'name="send_key" value="([^"]+)"', page).group(1))
        _, page, _ = await worker.post(f"/workspace/cases/{CASE}/send/case.closure", fields)
        assert re.search(r'id="sent-message-id">([0-9a-f-]{36})<', page).group(1) != ids[0]
