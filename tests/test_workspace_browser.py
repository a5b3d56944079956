"""The workspace end to end in headless Chromium (Debian's, driven by Playwright), on two
gateways (NE-ANLTP-TIM and NG-NAPTIP, in-process broker as ``gateway demo --memory``).

NE's caseworker signs in in French, composes a referral from the Niger fiche (fields filled
by their names), sees the minimal-data preview and sends it; NG's caseworker signs in in
English, reads it with a purpose and accepts it; NE's trail shows "Acceptée"; NE withdraws
consent (with its confirmation step) and NG's inbox then shows the referral as erased.

Every page is screenshot in French and English into test-artifacts/ (workspace-<page>-<lang>.png),
checked by axe-core (no serious or critical violation), checked for horizontal scrolling at
360 px, and kept for the canary check: no URL or title ever holds a value of the referral,
and no page HTML does except the preview and the read pages. Also: CSRF refusal, session
expiry, the auditor's and admin's refusals, and keyboard-only sign-in and read.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from gateway.clock import utcnow
from gateway.schema import load_example
from gateway.workspace.local_form import build_form

from testkit.gateway_pair import NIGER, NIGERIA, ROOT, eventually
from .support.chromium import (
    ARTIFACTS, LAUNCH_ARGS, Recorder, Visit, axe_source, chromium_binary, no_horizontal_scroll, tab_to,
)
from .support.workspace import Site, name_for, password_for, workspace_pair

FICHE = json.loads((ROOT / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json")
                   .read_text(encoding="utf-8"))
#: The sample fiche as a caseworker enters it: the form offers one spelling per code, where
#: the sample (written by hand) uses others the adapter also reads ("police", "nigériane").
FICHE.update(source_referencement="forces de l'ordre", nationalite="Nigeria",
             type_exploitation=["exploitation sexuelle", "travail domestique"])
#: Values of the fiche that are personal data (names, phone, local case number, free text).
CANARIES = ("Amaka", "Testfixture", "Ngozi", "+234 800", "+2348000000001", "ANLTP-2026-TEST-0001", "Fiche de test")
DESKTOP = {"width": 1280, "height": 900}
NARROW = 360
OTHER = {"fr": "en", "en": "fr"}


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """The system Chromium under Playwright (never a downloaded browser)."""
    binary = chromium_binary()
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=binary, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(axe_source())


class Person:
    """One member of staff at one gateway, in their own browser context and language."""

    def __init__(self, site: Site, role: str, lang: str, context: Any, page: Any, recorder: Recorder) -> None:
        self.site, self.role, self.lang, self.context, self.page, self.recorder = site, role, lang, context, page, recorder

    @classmethod
    async def open(cls, chromium: Any, site: Site, role: str, lang: str, recorder: Recorder) -> "Person":
        locale = {"fr": "fr-FR", "en": "en-GB"}[lang]
        context = await chromium.new_context(locale=locale, viewport=DESKTOP,
                                             extra_http_headers={"Accept-Language": f"{locale},{lang};q=0.9"})
        page = await context.new_page()
        page.set_default_timeout(20_000)
        recorder.watch(page)
        return cls(site, role, lang, context, page, recorder)

    def url(self, path: str) -> str:
        return str(self.site.server.make_url(path))

    async def goto(self, path: str) -> Any:
        return await self.page.goto(self.url(path))

    async def sign_in(self, *, snap: bool = False) -> None:
        await self.goto("/workspace/sign-in")
        if snap:
            await self.check("sign-in")
        agency = self.site.gateway.agency_id
        await self.page.fill("form#sign-in input[name=username]", name_for(self.role, agency))
        await self.page.fill("form#sign-in input[name=password]", password_for(self.role, agency))
        async with self.page.expect_navigation():
            await self.page.click("form#sign-in button[type=submit]")

    async def check(self, name: str, *, payload_allowed: bool = False, both: bool = True,
                    narrow_shot: bool = True) -> None:
        """Screenshot, axe-core and 360 px check of the page shown; with ``both``, the same in
        the other language (a GET page: reloaded with the language cookie switched)."""
        await self._check_here(name, payload_allowed, narrow_shot)
        if both:
            await self._set_lang(OTHER[self.lang])
            await self.page.reload()
            await self._check_here(name, payload_allowed, narrow_shot)
            await self._set_lang(self.lang)
            await self.page.reload()

    async def _check_here(self, name: str, payload_allowed: bool, narrow_shot: bool) -> None:
        await self.recorder.check(self.page, name, payload_allowed=payload_allowed)
        await self.page.set_viewport_size({"width": NARROW, "height": 740})
        width = await no_horizontal_scroll(self.page)
        lang = await self.page.evaluate("document.documentElement.lang")
        if narrow_shot:  # what a phone shows (the page, not the full scroll height)
            await self.page.screenshot(path=str(ARTIFACTS / f"workspace-{name}-{lang}-360.png"))
        await self.page.set_viewport_size(DESKTOP)
        if width > NARROW:
            self.recorder.layout_failures.append(f"{name}-{lang}: scrolls sideways at {NARROW} px ({width} px wide)")

    async def _set_lang(self, lang: str) -> None:
        await self.context.add_cookies([{"name": "rgw_lang", "value": lang, "url": self.url("/workspace/")}])

    async def close(self) -> None:
        await self.context.close()


def _css(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def fill_by_name(page: Any, record: dict[str, Any], format_: str = "niger") -> None:
    """Fill ``form#compose`` as a person would, field by field, by the inputs' names."""
    form = build_form(format_).fit(record)
    for name, values in form.values(record).items():
        fields = page.locator(f"form#compose [name={_css(name)}]")
        assert await fields.count() > 0, f"no input named {name}"
        first = fields.first
        tag = await first.evaluate("e => e.tagName.toLowerCase()")
        kind = await first.get_attribute("type")
        if tag == "select":
            await first.select_option(list(values))
        elif kind in ("checkbox", "radio"):
            for value in values:
                await page.locator(f"form#compose [name={_css(name)}][value={_css(value)}]").check()
        else:
            await first.fill(values[0])


async def wait_for(page: Any, selector: str, *, tries: int = 100) -> None:
    """Reload ``page`` until ``selector`` is on it (messages cross the broker asynchronously)."""
    for _ in range(tries):
        if await page.locator(selector).count() > 0:
            return
        await page.wait_for_timeout(200)
        await page.reload()
    raise AssertionError(f"{selector} did not appear")


def assert_no_canaries(recorder: Recorder) -> None:
    """No referral value in any URL or title; in page HTML only where the payload is authorised."""
    for visit in recorder.visits:
        for canary in CANARIES:
            assert canary not in visit.url, (visit.name, "url")
            assert canary not in visit.title, (visit.name, "title")
            if not visit.payload_allowed:
                assert canary not in visit.html, (visit.name, "page")


async def test_referral_from_niger_to_nigeria_and_back_in_the_browser(tmp_path: Path, chromium: Any,
                                                                      recorder: Recorder) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        amina = await Person.open(chromium, ne, "caseworker", "fr", recorder)
        musa = await Person.open(chromium, ng, "caseworker", "en", recorder)

        # NE, in French: sign in, choose the Niger fiche and NAPTIP, fill it, preview.
        await amina.sign_in(snap=True)
        assert amina.page.url.endswith("/workspace/inbox")
        assert await amina.page.evaluate("document.documentElement.lang") == "fr"
        await amina.check("inbox")
        await amina.goto("/workspace/compose")
        await amina.check("compose-choose")
        assert await amina.page.input_value("select[name=format]") == "niger"
        await amina.page.select_option("select[name=recipient]", NIGERIA)
        async with amina.page.expect_navigation():
            await amina.page.click("form#compose-choose button[type=submit]")
        assert amina.page.url.endswith(f"/workspace/compose/niger?recipient={NIGERIA}")
        await amina.check("compose-form")
        await fill_by_name(amina.page, FICHE)
        async with amina.page.expect_navigation():
            await amina.page.click("form#compose [type=submit]")
        preview = amina.page.locator("section#preview")
        assert await preview.count() == 1, "the preview did not come (a field refused?)"
        leaving, dropped = await amina.page.inner_text("table#leaving"), await amina.page.inner_text("table#dropped")
        assert "person.names.given" in leaving and "Amaka" in leaving
        assert "ANLTP-2026-TEST-0001" not in leaving  # the local case number stays in Niger
        assert await amina.page.locator('table#dropped [data-local-field="numero_dossier"]').count() == 1
        assert "reste ici" in dropped
        await amina.check("compose-preview", payload_allowed=True, both=False)

        async with amina.page.expect_navigation():
            await amina.page.click("form#send button#send-button")
        sent_path = amina.page.url.split(str(ne.server.make_url("")).rstrip("/"), 1)[1]
        assert sent_path.startswith("/workspace/sent/")
        message_id = sent_path.rsplit("/", 1)[1]
        await amina.check("sent-trail")
        await amina.goto("/workspace/sent")
        assert await amina.page.locator(f'table#sent tr[data-message-id="{message_id}"]').count() == 1
        await amina.check("sent-list")

        # NG, in English: sign in, find it in the inbox, read it with a purpose, accept it.
        await musa.sign_in()
        assert musa.page.url.endswith("/workspace/inbox")
        row = f'table#inbox tr[data-message-id="{message_id}"]'
        await wait_for(musa.page, row)
        assert await musa.page.get_attribute(row, "data-status") == "received"
        await musa.check("inbox-received")
        async with musa.page.expect_navigation():
            await musa.page.click(f"{row} a.open")
        assert musa.page.url.endswith(f"/workspace/inbox/{message_id}")
        await musa.check("read-purpose")
        assert await musa.page.locator("section#payload").count() == 0  # nothing before a purpose
        await musa.page.select_option("form#read-purpose select[name=purpose]", "safety_assessment")
        async with musa.page.expect_navigation():
            await musa.page.click("form#read-purpose button[type=submit]")
        payload = await musa.page.inner_text("section#payload")
        assert "Amaka" in payload
        assert await musa.page.locator("section#consent").count() == 1
        await musa.check("read", payload_allowed=True, both=False)
        await musa.page.select_option("form#answer select[name=decision]", "accepted")
        for box in await musa.page.locator('form#answer input[type=checkbox][name^="accepted_purposes"]').all():
            await box.check()
        async with musa.page.expect_navigation():
            await musa.page.click("form#answer button[type=submit]")
        await musa.check("answered", both=False)
        # The read in French too (a second audited read, by a colleague whose computer is in French).
        bello = await Person.open(chromium, ng, "caseworker", "fr", recorder)
        await bello.sign_in()
        await bello.goto(f"/workspace/inbox/{message_id}")
        await bello.page.select_option("form#read-purpose select[name=purpose]", "safety_assessment")
        async with bello.page.expect_navigation():
            await bello.page.click("form#read-purpose button[type=submit]")
        assert "Amaka" in await bello.page.inner_text("section#payload")
        await bello.check("read", payload_allowed=True, both=False)

        # A follow-up message form of the case (generated from the schema), in both languages.
        case_ref = (await ng.gateway.store.get_incoming(message_id)).case_ref
        await musa.goto(f"/workspace/cases/{case_ref}/send/safety_assessment.result")
        assert await musa.page.locator("form").count() >= 2  # the language switch and the message's form
        await musa.check("followup-form")

        # NE sees the answer in the trail, in French.
        await amina.goto(sent_path)
        await wait_for(amina.page, 'ol#trail li[data-status="accepted"]')
        assert "Acceptée" in await amina.page.inner_text('ol#trail li[data-status="accepted"]')
        await amina.check("sent-trail-accepted")

        # The preview in English too (before the withdrawal: afterwards this case's consent refuses it).
        ama_en = await Person.open(chromium, ne, "caseworker", "en", recorder)
        await ama_en.sign_in()
        await ama_en.goto(f"/workspace/compose/niger?recipient={NIGERIA}")
        await fill_by_name(ama_en.page, FICHE)
        async with ama_en.page.expect_navigation():
            await ama_en.page.click("form#compose [type=submit]")
        assert await ama_en.page.locator("section#preview").count() == 1
        await ama_en.check("compose-preview", payload_allowed=True, both=False)

        # NE withdraws consent: a confirmation step, then the acknowledgements.
        async with amina.page.expect_navigation():
            await amina.page.click("a#withdraw")
        assert "/withdraw" in amina.page.url
        await amina.check("withdraw-confirm")
        await amina.page.select_option("form#withdraw-confirm select[name=decision_maker]", "self")
        async with amina.page.expect_navigation():
            await amina.page.click("form#withdraw-confirm button#confirm-withdraw")
        await wait_for(amina.page, 'ul#acks li[data-acknowledged="true"]')
        await amina.check("withdrawal")

        # NG's inbox then shows the referral as erased, and its page says so.
        await musa.goto("/workspace/inbox")
        await wait_for(musa.page, f'{row}[data-status="erased"]')
        await musa.check("inbox-erased")
        async with musa.page.expect_navigation():
            await musa.page.click(f"{row} a.open")
        assert await musa.page.locator("section#payload").count() == 0
        assert await musa.page.locator("#erased").count() == 1
        await musa.check("read-erased")

        for person in (amina, musa, bello, ama_en):
            await person.close()
    assert_no_canaries(recorder)
    recorder.assert_clean()


async def referral_via_api(ne: Site, ng: Site) -> str:
    """A referral NE sends through its API (the example payload: same names as the fiche),
    once it is in NG's inbox; its message id."""
    client = (await ne.browser()).client
    body = {"recipient": NIGERIA, "local_case_id": "NE-ZINDER-2026-0142", "payload": load_example("referral.request")}
    async with client.post("/referrals", json=body, headers=ne.auth("caseworker")) as resp:
        assert resp.status == 202, await resp.text()
        message_id = (await resp.json())["message_id"]

    async def arrived() -> bool:
        return await ng.gateway.store.get_incoming(message_id) is not None
    await eventually(arrived)
    return message_id


async def post_from_page(person: Person, path: str, fields: dict[str, str], *, csrf: bool = True) -> tuple[int, str]:
    """A form post from the signed-in browser (its cookies; the token of the page shown)."""
    data = dict(fields)
    if csrf:
        data["csrf"] = await person.page.get_attribute("input[name=csrf]", "value")
    resp = await person.page.request.post(person.url(path), form=data, max_redirects=0)
    return resp.status, await resp.text()


async def test_a_form_without_its_csrf_token_is_refused_in_the_browser(tmp_path: Path, chromium: Any,
                                                                       recorder: Recorder) -> None:
    async with workspace_pair(tmp_path) as (ne, _ng):
        person = await Person.open(chromium, ne, "caseworker", "fr", recorder)
        # The visible language switch (a form with its token) works, and back.
        await person.goto("/workspace/sign-in")
        assert await person.page.evaluate("document.documentElement.lang") == "fr"
        for lang in ("en", "fr"):
            async with person.page.expect_navigation():
                await person.page.click(f'form.lang-switch button[name=lang][value="{lang}"]')
            assert person.page.url.endswith("/workspace/sign-in")
            assert await person.page.evaluate("document.documentElement.lang") == lang
            assert await person.page.get_attribute(f'form.lang-switch button[value="{lang}"]', "aria-pressed") == "true"
        # Sign-in form with its token removed: refused, no session.
        await person.page.evaluate("document.querySelector('form#sign-in input[name=csrf]').remove()")
        await person.page.fill("input[name=username]", name_for("caseworker", NIGER))
        await person.page.fill("input[name=password]", password_for("caseworker", NIGER))
        async with person.page.expect_navigation() as navigation:
            await person.page.click("form#sign-in button[type=submit]")
        assert (await navigation.value).status == 403
        await person.check("csrf-refused")
        assert not [c for c in await person.context.cookies() if c["name"] == "rgw_session"]
        # Signed in: the sign-out form without its token is refused, and the session stays.
        await person.sign_in()
        await person.goto("/workspace/sent")
        await person.page.evaluate("document.querySelector('form#sign-out input[name=csrf]').remove()")
        async with person.page.expect_navigation() as navigation:
            await person.page.click("form#sign-out button[type=submit]")
        assert (await navigation.value).status == 403
        response = await person.goto("/workspace/sent")
        assert response.status == 200 and person.page.url.endswith("/workspace/sent")
        # A token from another browser's session does not work either.
        other = await Person.open(chromium, ne, "caseworker", "fr", recorder)
        await other.sign_in()
        await other.goto("/workspace/sent")
        foreign = await other.page.get_attribute("input[name=csrf]", "value")
        resp = await person.page.request.post(person.url("/workspace/sign-out"), form={"csrf": foreign},
                                              max_redirects=0)
        assert resp.status == 403
        await person.close()
        await other.close()
    recorder.assert_clean()


async def test_an_idle_session_ends_and_the_browser_is_sent_to_sign_in(tmp_path: Path, chromium: Any,
                                                                      recorder: Recorder) -> None:
    async with workspace_pair(tmp_path, workspace_idle_minutes=1) as (ne, _ng):
        person = await Person.open(chromium, ne, "caseworker", "en", recorder)
        await person.sign_in()
        await person.goto("/workspace/compose")
        assert person.page.url.endswith("/workspace/compose")
        ne.gateway.clock = lambda: utcnow() + timedelta(minutes=2)  # two idle minutes later
        await person.goto("/workspace/compose")
        assert "/workspace/sign-in" in person.page.url
        assert await person.page.locator(".notice").count() == 1
        await person.check("session-ended")
        await person.sign_in()  # signing in again works, and lands on the inbox
        assert person.page.url.endswith("/workspace/inbox")
        await person.close()
    recorder.assert_clean()


async def test_auditor_and_admin_reach_no_payload_page(tmp_path: Path, chromium: Any, recorder: Recorder) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        message_id = await referral_via_api(ne, ng)
        case_ref = (await ng.gateway.store.get_incoming(message_id)).case_ref
        payload_pages = [
            ("GET", f"/workspace/compose/niger?recipient={NIGERIA}", {}),
            ("POST", f"/workspace/inbox/{message_id}/read", {"purpose": "safety_assessment"}),
            ("POST", "/workspace/compose/niger/preview", {"recipient": NIGERIA, "prenom": "Amaka"}),
            ("POST", f"/workspace/inbox/{message_id}/answer", {"decision": "accepted"}),
            ("GET", f"/workspace/cases/{case_ref}/withdraw", {}),
        ]
        auditor = await Person.open(chromium, ng, "auditor", "en", recorder)
        await auditor.sign_in()
        row = f'table#inbox tr[data-message-id="{message_id}"]'
        assert await auditor.page.locator(row).count() == 1  # the metadata list: allowed
        await auditor.check("inbox-auditor")
        response = await auditor.goto(f"/workspace/inbox/{message_id}")
        if response.status == 200:  # metadata at most: no way to a read
            assert await auditor.page.locator("form#read-purpose").count() == 0
            assert await auditor.page.locator("section#payload").count() == 0
        await auditor.check("inbox-item-auditor")

        admin = await Person.open(chromium, ng, "admin", "en", recorder)
        await admin.sign_in()
        assert admin.page.url.endswith("/workspace/admin")
        await admin.check("admin")
        admin_pages = payload_pages + [("GET", "/workspace/inbox", {}), ("GET", f"/workspace/inbox/{message_id}", {}),
                                       ("GET", "/workspace/sent", {})]
        for person, pages in ((auditor, payload_pages), (admin, admin_pages)):
            for method, path, fields in pages:
                if method == "GET":
                    status = (await person.goto(path)).status
                    text = await person.page.content()
                    recorder.visits.append(Visit(f"{person.role}:{path}", person.page.url, await person.page.title(),
                                                 text, False))
                else:
                    await person.goto("/workspace/")
                    status, text = await post_from_page(person, path, fields)
                assert status == 403, (person.role, method, path, status)
                for canary in CANARIES:
                    assert canary not in text, (person.role, path)
        await admin.goto("/workspace/inbox")
        await admin.check("forbidden")
        for person in (auditor, admin):
            await person.close()
    assert_no_canaries(recorder)
    recorder.assert_clean()


async def test_sign_in_and_read_with_the_keyboard_only(tmp_path: Path, chromium: Any, recorder: Recorder) -> None:
    async with workspace_pair(tmp_path) as (ne, ng):
        message_id = await referral_via_api(ne, ng)
        person = await Person.open(chromium, ng, "caseworker", "en", recorder)
        page = person.page
        await person.goto("/workspace/sign-in")
        await page.keyboard.press("Tab")  # the first stop skips the header
        assert await page.evaluate("document.activeElement.matches('a.skip')")
        await tab_to(page, "input[name=username]")
        await page.keyboard.type(name_for("caseworker", NIGERIA))
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.matches('input[name=password]')")
        await page.keyboard.type(password_for("caseworker", NIGERIA))
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        assert page.url.endswith("/workspace/inbox")

        await tab_to(page, f'tr[data-message-id="{message_id}"] a.open')
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        await tab_to(page, "form#read-purpose select[name=purpose]")
        # A closed select changes with the arrow keys: down to the first purpose.
        await page.keyboard.press("ArrowDown")
        assert await page.input_value("form#read-purpose select[name=purpose]")
        await tab_to(page, "form#read-purpose button[type=submit]")
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        assert "Amaka" in await page.inner_text("section#payload")
        # The focus is visible where it lands (an outline or a box shadow on the focused element).
        await tab_to(page, "form#answer select[name=decision]")
        style = await page.evaluate("(() => { const s = getComputedStyle(document.activeElement); "
                                    "return [s.outlineStyle, s.outlineWidth, s.boxShadow]; })()")
        assert style[0] != "none" or style[2] != "none", style
        await person.close()
    recorder.assert_clean()
