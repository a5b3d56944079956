"""Compose, preview, send, status trail and withdrawal in the workspace (gateway/workspace/compose.py,
gateway/workspace/sent.py), on two in-process gateways: NE composes from the Niger fiche, NG answers."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path
from typing import Any

from gateway.store import AuditQuery
from gateway.workspace.local_form import build_form

from testkit.gateway_pair import NIGERIA, ROOT, eventually
from .support.workspace import Browser, Site, workspace_pair

FICHE = json.loads((ROOT / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json")
                   .read_text(encoding="utf-8"))
FR = {"Accept-Language": "fr"}
EN = {"Accept-Language": "en"}
#: Values of the fiche that are personal data: never in a URL or a page title.
CANARIES = ("Amaka", "Testfixture", "Ngozi", "+234 800", "ANLTP-2026-TEST-0001", "Fiche de test")
_RECORD = re.compile(r'name="record" value="([^"]*)"')
_SEND_KEY = re.compile(r'name="send_key" value="([^"]+)"')
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def form_fields(record: dict[str, Any]) -> list[tuple[str, str]]:
    """What a browser posts for the Niger form filled with ``record``."""
    form = build_form("niger").fit(record)
    return [(name, v) for name, vs in form.values(record).items() for v in vs]


def element(page: str, tag: str, ident: str) -> str:
    """The HTML of ``<tag id="ident">…</tag>`` in a page, nested elements of the same tag included."""
    start = re.search(rf'<{tag}\b[^>]*\bid="{re.escape(ident)}"[^>]*>', page)
    assert start, f"no {tag}#{ident} in the page"
    depth = 0
    for found in re.finditer(rf"<(/?){tag}\b[^>]*>", page[start.start():]):
        depth += -1 if found.group(1) else 1
        if depth == 0:
            return page[start.start():start.start() + found.end()]
    raise AssertionError(f"{tag}#{ident} is not closed")


def title(page: str) -> str:
    found = re.search(r"<title>(.*?)</title>", page, re.S)
    return found.group(1) if found else ""


def assert_no_canary_in_urls_or_titles(browser: Browser) -> None:
    for url, _status, headers, text in browser.seen:
        for canary in CANARIES:
            assert canary not in url, url
            assert canary not in headers.get("Location", ""), url
            assert canary not in title(text), (url, title(text))


async def preview(browser: Browser, record: dict[str, Any], recipient: str = NIGERIA) -> tuple[int, str]:
    await browser.get(f"/workspace/compose/niger?recipient={recipient}")
    status, text, _ = await browser.post("/workspace/compose/niger/preview",
                                         [("recipient", recipient), *form_fields(record)])
    return status, text


async def send(browser: Browser, page: str, recipient: str = NIGERIA) -> str:
    """Send what a preview page carries; the sent message's id."""
    record = html.unescape(_RECORD.search(page).group(1))
    key = _SEND_KEY.search(page).group(1)
    status, _, headers = await browser.post("/workspace/compose/niger/send",
                                            {"record": record, "recipient": recipient, "send_key": key})
    assert status == 303, status
    found = re.fullmatch(rf"/workspace/sent/({_UUID})", headers["Location"])
    assert found, headers["Location"]
    return found.group(1)


async def answer_as_ng(ng: Site, message_id: str) -> None:
    """NAPTIP reads the referral with a purpose and accepts it, through the API."""
    client = (await ng.browser()).client
    auth = ng.auth("caseworker")

    async def arrived() -> bool:
        async with client.get(f"/inbox/{message_id}", params={"purpose": "family_tracing"}, headers=auth) as resp:
            return resp.status == 200
    await eventually(arrived)
    async with client.post(f"/inbox/{message_id}/response", headers=auth,
                           json={"decision": "accepted", "accepted_purposes": ["family_tracing"]}) as resp:
        assert resp.status == 202, await resp.text()


async def test_compose_the_niger_fiche_in_french_preview_send_and_follow_the_trail(tmp_path: Path) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        browser = await ne.browser("caseworker", headers=FR)
        status, page, _ = await browser.get("/workspace/compose")
        assert status == 200 and 'name="recipient"' in page and f'value="{NIGERIA}"' in page
        assert '<option value="niger" selected>' in page  # NE's own form by default
        status, _, headers = await browser.get(f"/workspace/compose?format=niger&recipient={NIGERIA}")
        assert status == 303 and headers["Location"] == f"/workspace/compose/niger?recipient={NIGERIA}"

        status, page, _ = await browser.get(f"/workspace/compose/niger?recipient={NIGERIA}")
        assert status == 200 and 'id="compose"' in page
        consent = element(page, "fieldset", "consent")
        for name in ("consentement.donne_par", "consentement.forme", "consentement.finalites",
                     "consentement.agences_destinataires"):
            assert f'name="{name}"' in consent
        # The chosen recipient is ticked among the consent's recipient agencies.
        assert re.search(rf'name="consentement.agences_destinataires" value="{NIGERIA}" checked', consent)
        assert "Prénom(s)" in page and 'name="lieu_origine.ville"' in page and 'name="contacts_famille.0.prenom"' in page
        assert re.search(r'type="checkbox" name="besoins" value="médical"', page)

        status, page = await preview(browser, FICHE)
        assert status == 200, page
        section = element(page, "section", "preview")
        leaving = element(section, "table", "leaving")
        dropped = element(section, "table", "dropped")
        assert "person.names.given" in leaving and "Amaka" in leaving  # what leaves, field by field
        assert "Personne › Noms › Prénom" in leaving and "4 mars 2026" in leaving  # labelled, dates readable
        assert "consent.recipients[0].agency" in leaving and NIGERIA in leaving
        assert 'data-local-field="numero_dossier"' in dropped and "reste ici" in dropped
        assert 'data-local-field="besoins"' in dropped and "ne le permettent pas" in dropped
        assert "Recherche familiale" in dropped  # the purposes named by their French labels
        assert "ANLTP-2026-TEST-0001" not in leaving  # the local case number stays in Niger
        assert 'data-schema-version="2"' in section and 'id="send"' in section and 'id="send-button"' in section

        message_id = await send(browser, page)
        status, page, _ = await browser.get(f"/workspace/sent/{message_id}")
        assert status == 200
        trail = element(page, "ol", "trail")
        assert 'data-status="queued"' in trail and "En attente d’envoi" in trail
        status, listing, _ = await browser.get("/workspace/sent")
        assert f'data-message-id="{message_id}"' in element(listing, "table", "sent")
        assert "Amaka" not in listing  # metadata only

        await answer_as_ng(ng, message_id)

        async def accepted() -> bool:
            _, text, _ = await browser.get(f"/workspace/sent/{message_id}/trail")
            return 'data-status="accepted"' in text
        await eventually(accepted)
        _, page, _ = await browser.get(f"/workspace/sent/{message_id}")
        trail = element(page, "ol", "trail")
        statuses = re.findall(r'data-status="([a-z_]+)"', trail)
        assert statuses[0] == "queued" and statuses[-1] == "accepted" and "delivered" in statuses
        assert re.search(r'data-status="accepted"><span class="status status-accepted">Acceptée</span>', trail)
        assert_no_canary_in_urls_or_titles(browser)


async def test_errors_are_shown_next_to_their_field_in_french_and_in_english(tmp_path: Path) -> None:
    record = copy.deepcopy(FICHE)
    record["date_identification"] = "2026-03-04"  # written year first
    record["contacts_famille"][0]["telephone"] = "appeler le chef"
    record["consentement"]["donne_par"] = ""
    async with workspace_pair(tmp_path) as (ne, _ng):
        for headers, date_text, required_text in (
                (FR, "année en premier", "obligatoire"),
                (EN, "is written year first", "required")):
            browser = await ne.browser("caseworker", headers=headers)
            status, page = await preview(browser, record)
            assert status == 422
            assert 'role="alert"' in page and 'id="preview"' not in page
            date_field = re.search(r'id="f-date_identification".*?</div>', page, re.S).group(0)
            error = re.search(r'<p class="error" id="f-date_identification-error">(.*?)</p>', date_field, re.S)
            assert error and date_text in html.unescape(error.group(1)), date_field
            assert 'aria-invalid="true"' in date_field
            consent = element(page, "fieldset", "consent")
            assert re.search(rf'id="f-consentement-donne_par-error">[^<]*{required_text}', html.unescape(consent))
            assert 'id="f-contacts_famille-0-telephone-error"' in page
            # What the clerk typed is kept, the free text never echoed in an error.
            assert 'value="2026-03-04"' in page
            assert "appeler le chef" not in "".join(re.findall(r'class="error"[^>]*>(.*?)</p>', page, re.S))
            assert_no_canary_in_urls_or_titles(browser)


async def test_preview_and_send_hold_no_personal_data_in_urls_or_titles(tmp_path: Path) -> None:
    async with workspace_pair(tmp_path) as (ne, _ng):
        browser = await ne.browser("caseworker", headers=EN)
        status, page = await preview(browser, FICHE)
        assert status == 200
        assert "Amaka" in element(page, "table", "leaving")
        await send(browser, page)
        assert_no_canary_in_urls_or_titles(browser)
        # The payload never sits behind a GET: the compose URLs carry the format and agency only.
        assert all(url.split("?")[0].startswith(("/workspace/compose", "/workspace/sent", "/workspace/"))
                   for url, *_ in browser.seen)


async def test_an_auditor_cannot_reach_compose_or_preview_but_sees_the_sent_list(tmp_path: Path) -> None:
    async with workspace_pair(tmp_path) as (ne, _ng):
        caseworker = await ne.browser("caseworker")
        _, page = await preview(caseworker, FICHE)
        message_id = await send(caseworker, page)
        auditor = await ne.browser("auditor")
        for path in ("/workspace/compose", f"/workspace/compose/niger?recipient={NIGERIA}"):
            assert (await auditor.get(path))[0] == 403, path
        status, page, _ = await auditor.post("/workspace/compose/niger/preview",
                                             [("recipient", NIGERIA), *form_fields(FICHE)])
        assert status == 403 and "Amaka" not in page
        status, page, _ = await auditor.post("/workspace/compose/niger/send",
                                             {"record": json.dumps(FICHE), "recipient": NIGERIA})
        assert status == 403
        assert await ne.gateway.store.list_outgoing(10) != [] and len(await ne.gateway.store.list_outgoing(10)) == 1
        status, listing, _ = await auditor.get("/workspace/sent")
        assert status == 200 and f'data-message-id="{message_id}"' in listing
        assert 'href="/workspace/compose"' not in listing  # the nav shows only what the role may use
        admin = await ne.browser("admin")
        assert (await admin.get("/workspace/compose"))[0] == 403
        assert (await admin.get("/workspace/sent"))[0] == 403


async def test_a_post_without_the_csrf_token_is_refused(tmp_path: Path) -> None:
    async with workspace_pair(tmp_path) as (ne, _ng):
        browser = await ne.browser("caseworker")
        await browser.get(f"/workspace/compose/niger?recipient={NIGERIA}")
        fields = [("recipient", NIGERIA), *form_fields(FICHE)]
        status, page, _ = await browser.post("/workspace/compose/niger/preview", fields, csrf="")
        assert status == 403 and 'id="preview"' not in page and "Amaka" not in page
        status, _, _ = await browser.post("/workspace/compose/niger/send",
                                          {"record": json.dumps(FICHE), "recipient": NIGERIA}, csrf="")
        assert status == 403
        assert await ne.gateway.store.list_outgoing(10) == []


async def test_withdrawal_needs_the_confirmation_step_then_shows_the_acknowledgement(tmp_path: Path) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        browser = await ne.browser("caseworker", headers=FR)
        _, page = await preview(browser, FICHE)
        message_id = await send(browser, page)
        record = await ne.gateway.store.get_outgoing(message_id)
        case_ref = record.case_ref

        async def delivered() -> bool:
            return (await ne.gateway.store.get_outgoing(message_id)).status in ("delivered", "read", "accepted")
        await eventually(delivered)

        _, page, _ = await browser.get(f"/workspace/sent/{message_id}")
        assert f'id="withdraw" href="/workspace/cases/{case_ref}/withdraw"' in page
        status, page, _ = await browser.get(f"/workspace/cases/{case_ref}/withdraw")
        assert status == 200 and 'id="withdraw-confirm"' in page and 'id="confirm-withdraw"' in page
        assert NIGERIA in page
        assert await ne.gateway.store.withdrawals_for_case(case_ref) == []  # the GET withdraws nothing
        status, page, _ = await browser.post(f"/workspace/cases/{case_ref}/withdraw", {"erasure_requested": "yes"})
        assert status == 422 and 'class="error"' in page  # who withdraws is required
        assert await ne.gateway.store.withdrawals_for_case(case_ref) == []
        status, _, headers = await browser.post(f"/workspace/cases/{case_ref}/withdraw",
                                                {"decision_maker": "self", "erasure_requested": "yes"})
        assert status == 303 and headers["Location"] == f"/workspace/cases/{case_ref}/withdrawal"
        status, page, _ = await browser.get(headers["Location"])
        acks = element(page, "ul", "acks")
        assert status == 200 and f'data-recipient="{NIGERIA}"' in acks

        async def acknowledged() -> bool:
            _, text, _ = await browser.get(f"/workspace/cases/{case_ref}/withdrawal?part=acks")
            return 'data-acknowledged="true"' in text
        await eventually(acknowledged)
        _, page, _ = await browser.get(f"/workspace/cases/{case_ref}/withdrawal")
        assert "les données ont été détruites" in element(page, "ul", "acks")
        # NG's copy is gone: the API answers 410 for the referral.
        client = (await ng.browser()).client
        async with client.get(f"/inbox/{message_id}", params={"purpose": "family_tracing"},
                              headers=ng.auth("caseworker")) as resp:
            assert resp.status == 410
        assert_no_canary_in_urls_or_titles(browser)


async def test_an_auditor_cannot_withdraw(tmp_path: Path) -> None:
    async with workspace_pair(tmp_path) as (ne, _ng):
        caseworker = await ne.browser("caseworker")
        _, page = await preview(caseworker, FICHE)
        message_id = await send(caseworker, page)
        case_ref = (await ne.gateway.store.get_outgoing(message_id)).case_ref
        auditor = await ne.browser("auditor")
        assert (await auditor.get(f"/workspace/cases/{case_ref}/withdraw"))[0] == 403
        status, _, _ = await auditor.post(f"/workspace/cases/{case_ref}/withdraw", {"decision_maker": "self"})
        assert status == 403
        assert await ne.gateway.store.withdrawals_for_case(case_ref) == []


async def test_the_form_speaks_its_own_language_whatever_the_page_language(tmp_path: Path) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        english_ui = await ne.browser("caseworker", headers=EN)
        _, page, _ = await english_ui.get(f"/workspace/compose/niger?recipient={NIGERIA}")
        assert '<html lang="en">' in page and "Compose a referral" in page
        assert '<div lang="fr">' in page and "Prénom(s)" in page and "Lieu d'origine" in html.unescape(page)
        french_ui = await ng.browser("caseworker", headers=FR)
        _, page, _ = await french_ui.get("/workspace/compose/nigeria?recipient=NE-ANLTP-TIM")
        assert '<html lang="fr">' in page and "Rédiger une orientation" in page
        assert '<div lang="en">' in page and "First name" in page and 'name="family_contacts.1.location.town"' in page
        assert '<option value="nigeria" selected>' in (await french_ui.get("/workspace/compose"))[1]


async def test_back_from_the_preview_the_form_is_filled_again(tmp_path: Path) -> None:
    async with workspace_pair(tmp_path) as (ne, _ng):
        browser = await ne.browser("caseworker")
        _, page = await preview(browser, FICHE)
        record = html.unescape(_RECORD.search(page).group(1))
        status, page, _ = await browser.post("/workspace/compose/niger", {"record": record, "recipient": NIGERIA})
        assert status == 200 and 'id="compose"' in page
        assert 'name="prenom" type="text" value="Amaka Joy"' in page
        assert re.search(r'name="besoins" value="médical" checked', page)
        assert re.search(r'<option value="mère" selected>', page)
        status, _, _ = await browser.post("/workspace/compose/niger", {"record": "[1]", "recipient": NIGERIA})
        assert status == 400


async def test_naptip_composes_its_own_record_in_english_for_niger(tmp_path: Path) -> None:
    record = json.loads((ROOT / "adapters" / "nigeria" / "samples" / "adult_returned_from_niger_reintegration.json")
                        .read_text(encoding="utf-8"))
    record["consent"]["recipient_agencies"] = ["NE-ANLTP-TIM"]
    form = build_form("nigeria").fit(record)
    fields = [(name, v) for name, vs in form.values(record).items() for v in vs]
    async with workspace_pair(tmp_path) as (_ne, ng):
        browser = await ng.browser("caseworker", headers=EN)
        await browser.get("/workspace/compose/nigeria?recipient=NE-ANLTP-TIM")
        status, page, _ = await browser.post("/workspace/compose/nigeria/preview",
                                             [("recipient", "NE-ANLTP-TIM"), *fields])
        assert status == 200, page
        dropped = element(page, "table", "dropped")
        assert 'data-local-field="case_number"' in dropped and "stays here" in dropped
        assert 'data-local-field="surname"' in dropped  # reintegration handover: no names
        assert "person.names" not in element(page, "table", "leaving")
        status, _, headers = await browser.post("/workspace/compose/nigeria/send", {
            "record": html.unescape(_RECORD.search(page).group(1)), "recipient": "NE-ANLTP-TIM"})
        assert status == 303 and headers["Location"].startswith("/workspace/sent/")


async def test_sending_the_same_preview_twice_sends_one_referral(tmp_path: Path) -> None:
    # A double click, a reload of the POST or "back and send again": one message, and the
    # second attempt lands on the first one's status page.
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser("caseworker")
        status, page = await preview(browser, FICHE)
        assert status == 200
        first = await send(browser, page)
        again = await send(browser, page)
        assert again == first
        sent = await ne.gateway.store.query_audit(AuditQuery(event_types=("message.created",)), 10)
        assert [e.message_id for e in sent] == [first]
        # A new preview is a new message.
        status, page = await preview(browser, FICHE)
        assert await send(browser, page) != first
