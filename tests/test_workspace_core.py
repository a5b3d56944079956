"""The workspace's core: sign-in with argon2 passwords, sessions, CSRF, security headers,
languages, and the bearer API left as it was (docs/workspace.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.api.roles import page_policy_of
from gateway.settings import Settings, SettingsError, User
from gateway.workspace.security import CSP
from gateway.workspace.tokens import session_hash

from tests.support.workspace import Browser, Site, name_for, password_for, workspace_pair

TEMPLATES = Path(__file__).resolve().parent.parent / "gateway" / "workspace" / "templates"


async def _audit(site: Site, event: str):
    return [a for a in await site.gateway.store.read_audit(1, 100_000) if a.event_type == event]


def _d(entry) -> dict:
    return json.loads(entry.detail_json)


class Clock:
    """A settable clock for the gateway (sessions read gateway.clock)."""

    def __init__(self, gateway) -> None:
        self.now = gateway.clock()
        gateway.clock = lambda: self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _set_cookie_headers(browser: Browser, name: str) -> list[str]:
    return [h for _, _, headers, _ in browser.seen for h in headers.getall("Set-Cookie", [])
            if h.startswith(name + "=")]


async def test_sign_in_with_a_password_gives_a_strict_http_only_session_cookie(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser()
        status, _, headers = await browser.sign_in(name_for("caseworker", ne.gateway.agency_id),
                                                   password_for("caseworker", ne.gateway.agency_id))
        assert status == 303 and headers["Location"] == "/workspace/"
        cookie = browser.cookie("rgw_session")
        assert cookie and len(cookie) == 43
        (header,) = [h for h in _set_cookie_headers(browser, "rgw_session")]
        flags = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
        assert {"httponly", "samesite", "path"} <= flags and "secure" not in flags  # plain HTTP test server
        assert "SameSite=Strict" in header and "Path=/workspace/" in header
        # The store keeps the SHA-256 of the id only.
        stored = await ne.gateway.store.get_web_session(session_hash(cookie))
        assert stored is not None and stored.user_name == "caseworker.ne-anltp-tim" and stored.role == "caseworker"
        assert stored.expires_at - stored.created_at == timedelta(hours=10)
        (entry,) = await _audit(ne, "workspace.signed_in")
        assert (entry.actor, _d(entry)) == ("caseworker.ne-anltp-tim", {"role": "caseworker"})
        assert cookie not in repr(await ne.gateway.store.read_audit(1, 10_000))


async def test_secure_cookie_when_the_settings_say_tls_is_in_front(tmp_path) -> None:
    async with workspace_pair(tmp_path, workspace_secure_cookies=True) as (ne, _):
        browser = await ne.browser()
        await browser.get("/workspace/sign-in")
        (anon,) = _set_cookie_headers(browser, "rgw_csrf")
        assert "Secure" in anon and "HttpOnly" in anon and "SameSite=Strict" in anon
        # The test client (plain HTTP) rightly keeps Secure cookies to itself: send it by hand.
        await browser.post("/workspace/sign-in", {"username": name_for("caseworker", ne.gateway.agency_id),
                                                  "password": password_for("caseworker", ne.gateway.agency_id)},
                           headers={"Cookie": anon.split(";")[0]})
        (header,) = _set_cookie_headers(browser, "rgw_session")
        assert "Secure" in header and "HttpOnly" in header and "SameSite=Strict" in header


async def test_wrong_password_and_unknown_name_are_refused_and_audited_without_the_input(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser()
        await browser.get("/workspace/sign-in")
        status, page, _ = await browser.post("/workspace/sign-in", {
            "username": "caseworker.ne-anltp-tim", "password": "not-the-password-xyz"})
        assert status == 401 and 'role="alert"' in page and browser.cookie("rgw_session") is None
        status, page, _ = await browser.post("/workspace/sign-in", {
            "username": "Mallory Guessing", "password": "not-the-password-xyz"})
        assert status == 401 and browser.cookie("rgw_session") is None
        failed = await _audit(ne, "workspace.sign_in_failed")
        assert [(e.actor, _d(e)) for e in failed] == [
            ("anonymous", {"reason": "wrong_password", "user": "caseworker.ne-anltp-tim"}),
            ("anonymous", {"reason": "unknown_user"}),
        ]
        everything = repr(await ne.gateway.store.read_audit(1, 10_000))
        assert "Mallory" not in everything and "not-the-password" not in everything


async def test_a_user_with_only_an_api_token_cannot_sign_in(tmp_path) -> None:
    token_only = User("machine.ne", "caseworker", "c" * 64)
    async with workspace_pair(tmp_path, extra_users=(token_only,)) as (ne, _):
        browser = await ne.browser()
        status, _, _ = await browser.sign_in("machine.ne", "whatever-long-enough")
        assert status == 401
        assert [_d(e) for e in await _audit(ne, "workspace.sign_in_failed")] == [
            {"reason": "no_password", "user": "machine.ne"}]


async def test_sign_in_is_throttled_after_five_failures_for_fifteen_minutes(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        clock = Clock(ne.gateway)
        name, right = name_for("caseworker", ne.gateway.agency_id), password_for("caseworker", ne.gateway.agency_id)
        browser = await ne.browser()
        await browser.get("/workspace/sign-in")
        for _ in range(5):
            status, _, _ = await browser.post("/workspace/sign-in", {"username": name, "password": "wrong-password!"})
            assert status == 401
        status, page, _ = await browser.post("/workspace/sign-in", {"username": name, "password": right})
        assert status == 429 and browser.cookie("rgw_session") is None and "15 minutes" in page
        reasons = [_d(e)["reason"] for e in await _audit(ne, "workspace.sign_in_failed")]
        assert reasons == ["wrong_password"] * 5 + ["throttled"]
        # Another name is not locked by this one's failures.
        other = await ne.browser("supervisor")
        assert other.cookie("rgw_session")
        clock.advance(minutes=15, seconds=1)
        status, _, _ = await browser.post("/workspace/sign-in", {"username": name, "password": right})
        assert status == 303 and browser.cookie("rgw_session")


async def test_idle_session_ends_and_the_sign_in_page_says_so(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        clock = Clock(ne.gateway)
        browser = await ne.browser("admin")
        clock.advance(minutes=29)
        assert (await browser.get("/workspace/admin"))[0] == 200  # activity moves the idle deadline
        clock.advance(minutes=29)
        assert (await browser.get("/workspace/admin"))[0] == 200
        clock.advance(minutes=30)
        status, _, headers = await browser.get("/workspace/admin")
        assert status == 303 and headers["Location"] == "/workspace/sign-in?ended=1"
        status, page, _ = await browser.get(headers["Location"])
        assert status == 200 and 'role="status"' in page
        assert await ne.gateway.store.get_web_session(session_hash(browser.cookie("rgw_session") or "x" * 43)) is None
        ended = await _audit(ne, "workspace.signed_out")
        assert [(e.actor, _d(e)) for e in ended] == [("admin.ne-anltp-tim", {"reason": "idle"})]


async def test_session_ends_after_its_lifetime_however_active(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        clock = Clock(ne.gateway)
        browser = await ne.browser("admin")
        for _ in range(21):  # 10.5 hours, a page every 30 minutes less a second
            clock.advance(minutes=29, seconds=59)
            status, _, _ = await browser.get("/workspace/admin")
            if status != 200:
                break
        assert status == 303
        assert [_d(e) for e in await _audit(ne, "workspace.signed_out")] == [{"reason": "lifetime"}]


async def test_a_password_changed_in_the_settings_ends_the_users_sessions(tmp_path) -> None:
    # A caseworker's password leaked: the admin changes it (and restarts); the session that
    # was signed in with the old one must not live on for the rest of its 10 hours.
    from dataclasses import replace
    from gateway.api.context import SETTINGS
    from gateway.settings import with_overrides
    from tests.support.workspace import FAST_HASHER
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser("caseworker")
        assert (await browser.get("/workspace/inbox"))[0] == 200
        app = ne.server.app
        name = name_for("caseworker", ne.gateway.agency_id)
        users = tuple(replace(u, password_argon2=FAST_HASHER.hash("a brand new passphrase")) if u.name == name else u
                      for u in app[SETTINGS].users)
        app._state[SETTINGS] = with_overrides(app[SETTINGS], users=users)  # the restarted settings
        status, _, headers = await browser.get("/workspace/inbox")
        assert status == 303 and headers["Location"] == "/workspace/sign-in?ended=1"
        assert [_d(e) for e in await _audit(ne, "workspace.signed_out")] == [{"reason": "user_changed"}]
        again = await ne.browser()
        status, _, _ = await again.sign_in(name, "a brand new passphrase")
        assert status == 303


async def test_sign_out_forgets_the_session(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser("admin")
        cookie = browser.cookie("rgw_session")
        assert cookie
        status, _, headers = await browser.post("/workspace/sign-out")
        assert status == 303 and headers["Location"] == "/workspace/sign-in"
        assert await ne.gateway.store.get_web_session(session_hash(cookie)) is None
        # The old cookie, replayed, opens nothing.
        replay = await ne.browser()
        replay.client.session.cookie_jar.update_cookies({"rgw_session": cookie}, replay.client.make_url("/workspace/"))
        assert (await replay.get("/workspace/admin"))[0] == 303
        assert [_d(e) for e in await _audit(ne, "workspace.signed_out")] == [{"reason": "sign_out"}]


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_audited(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser("admin")
        await browser.get("/workspace/admin")
        status, page, headers = await browser.post("/workspace/sign-out", csrf="")
        assert status == 403 and headers["Content-Security-Policy"] == CSP and 'role="alert"' in page
        status, _, _ = await browser.post("/workspace/sign-out", csrf="0" * 64)
        assert status == 403
        # Another browser's token does not work either.
        other = await ne.browser("admin")
        status, _, _ = await browser.post("/workspace/sign-out", csrf=other.csrf)
        assert status == 403
        # Still signed in: nothing happened.
        assert (await browser.get("/workspace/admin"))[0] == 200
        refused = await _audit(ne, "workspace.csrf_refused")
        assert [_d(e) for e in refused] == [
            {"path": "/workspace/sign-out", "method": "POST", "reason": "missing"},
            {"path": "/workspace/sign-out", "method": "POST", "reason": "mismatch"},
            {"path": "/workspace/sign-out", "method": "POST", "reason": "mismatch"},
        ]
        assert all(e.actor == "admin.ne-anltp-tim" for e in refused)
        # Sign-in and the language switch are forms too.
        fresh = await ne.browser()
        await fresh.get("/workspace/sign-in")
        status, _, _ = await fresh.post("/workspace/sign-in", {"username": "admin.ne-anltp-tim",
                                                               "password": password_for("admin", ne.gateway.agency_id)},
                                        csrf="")
        assert status == 403 and fresh.cookie("rgw_session") is None
        assert (await fresh.post("/workspace/language", {"lang": "fr"}, csrf=""))[0] == 403
        status, _, _ = await fresh.post("/workspace/sign-out", csrf="")
        assert status == 303  # no session: to the sign-in page before any CSRF question


async def test_every_workspace_answer_has_the_security_headers(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser("admin")
        for path in ("/workspace", "/workspace/", "/workspace/admin", "/workspace/sign-in", "/workspace/nothing",
                     "/workspace/static/workspace.css", "/workspace/static/htmx.min.js", "/workspace/static/x.js"):
            await browser.get(path)
        await browser.post("/workspace/language", {"lang": "fr", "next": "/workspace/admin"})
        anonymous = await ne.browser()
        for path in ("/workspace/", "/workspace/sign-in", "/workspace/admin"):
            await anonymous.get(path)
        for path, status, headers, _ in browser.seen + anonymous.seen:
            assert headers.get("Content-Security-Policy") == CSP, path
            assert headers.get("X-Content-Type-Options") == "nosniff", path
            assert headers.get("Referrer-Policy") == "no-referrer", path
            assert headers.get("X-Frame-Options") == "DENY", path
            expected = "public, max-age=3600" if "/static/" in path and status == 200 else "no-store"
            assert headers.get("Cache-Control") == expected, path
        statuses = {path: status for path, status, _, _ in browser.seen}
        assert statuses["/workspace/nothing"] == 404 and statuses["/workspace/static/x.js"] == 404
        css = next(h for p, s, h, _ in browser.seen if p == "/workspace/static/workspace.css")
        assert css["Content-Type"].startswith("text/css")


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    """The CSP forbids inline script and style; the templates must not need them."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert "<style" not in text and not re.search(r"\sstyle=", text), template.name
        assert not re.search(r"\son[a-z]+=", text), template.name
        assert "hx-on" not in text and "javascript:" not in text, template.name
        assert "http://" not in text and "https://" not in text, template.name  # no external asset


async def test_language_from_accept_language_and_the_switch(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser(headers={"Accept-Language": "fr-NE, fr;q=0.9, en;q=0.5"})
        status, page, headers = await browser.get("/workspace/sign-in")
        assert '<html lang="fr">' in page and "Se connecter" in page and headers["Content-Language"] == "fr"
        status, _, headers = await browser.post("/workspace/language", {"lang": "en", "next": "/workspace/sign-in"})
        assert status == 303 and headers["Location"] == "/workspace/sign-in"
        assert browser.cookie("rgw_lang") == "en"
        _, page, _ = await browser.get("/workspace/sign-in")
        assert '<html lang="en">' in page and ">Sign in<" in page
        # An unknown language or an outside address changes nothing dangerous.
        _, _, headers = await browser.post("/workspace/language", {"lang": "de", "next": "//evil.example/x"})
        assert headers["Location"] == "/workspace/" and browser.cookie("rgw_lang") == "en"
        # French texts on a signed-in page, and the role in French.
        await browser.post("/workspace/language", {"lang": "fr", "next": "/workspace/sign-in"})
        await browser.sign_in(name_for("admin", ne.gateway.agency_id), password_for("admin", ne.gateway.agency_id))
        _, page, _ = await browser.get("/workspace/admin")
        assert "Se déconnecter" in page and "administrateur" in page and '<html lang="fr">' in page


async def test_bearer_tokens_keep_working_and_pages_need_no_token(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        browser = await ne.browser()
        status, _, _ = await browser.get("/inbox", headers=ne.auth("caseworker"))
        assert status == 200
        status, _, _ = await browser.get("/inbox")
        assert status == 401
        # A bearer token does not open a page: pages need a session.
        status, _, headers = await browser.get("/workspace/admin", headers=ne.auth("admin"))
        assert status == 303 and headers["Location"] == "/workspace/sign-in"


async def test_every_page_route_has_a_page_policy(tmp_path) -> None:
    async with workspace_pair(tmp_path) as (ne, _):
        pages = [r for r in ne.server.app.router.routes() if r.resource.canonical.startswith("/workspace")]
        assert pages and all(page_policy_of(r.handler) is not None for r in pages)
        public = {r.resource.canonical for r in pages if page_policy_of(r.handler).public}
        assert public == {"/workspace", "/workspace/sign-in", "/workspace/language", "/workspace/static/{name}"}


def test_users_need_a_token_or_a_password() -> None:
    phc = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("long enough password")
    Settings(agency_id="NE-ANLTP-TIM", demo_keys=True, users=(User("a", "caseworker", None, phc),))
    Settings(agency_id="NE-ANLTP-TIM", demo_keys=True, users=(User("b", "caseworker", "a" * 64),))
    with pytest.raises(SettingsError, match="token_sha256 or password_argon2"):
        Settings(agency_id="NE-ANLTP-TIM", demo_keys=True, users=(User("c", "caseworker"),))
    with pytest.raises(SettingsError, match="argon2 hash"):
        Settings(agency_id="NE-ANLTP-TIM", demo_keys=True, users=(User("d", "caseworker", None, "plaintext"),))
    with pytest.raises(SettingsError, match="once"):
        Settings(agency_id="NE-ANLTP-TIM", demo_keys=True,
                 users=(User("e", "caseworker", "a" * 64), User("e", "auditor", "b" * 64)))
    assert not User("f", "caseworker", None, phc).matches("anything")


def test_hash_password_cli_reads_stdin_and_prints_a_hash_that_verifies() -> None:
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "users", "hash-password"],
                          input="a long office password\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    phc = done.stdout.strip()
    assert phc.startswith("$argon2id$") and "a long office password" not in done.stdout
    assert PasswordHasher().verify(phc, "a long office password")
    short = subprocess.run([sys.executable, "-m", "gateway.cli", "users", "hash-password"],
                           input="short\n", capture_output=True, text=True, timeout=60)
    assert short.returncode == 1 and "at least" in short.stderr and "short" not in short.stdout
