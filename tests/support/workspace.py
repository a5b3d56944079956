"""A browser stand-in for the workspace tests: an aiohttp client that keeps cookies, reads the
CSRF token of the last page, and remembers every page it saw (for the canary checks).

``workspace_pair`` starts NE and NG (testkit/gateway_pair.py) with one user per role, each
with a password (hashed with cheap argon2 parameters: tests, not production) and an API token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict
from argon2 import PasswordHasher

from gateway.api import create_app
from gateway.service import Gateway
from gateway.settings import ROLES, User, with_overrides

from testkit.gateway_pair import gateway_pair

PSEUDONYM_SECRET = "5e" * 32
#: Cheap parameters so each sign-in costs milliseconds; verification reads them from the hash.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def password_for(role: str, agency_id: str) -> str:
    return f"pw-{role}-{agency_id.lower()}-long-enough"


def name_for(role: str, agency_id: str) -> str:
    return f"{role}.{agency_id.lower()}"


@dataclass
class Browser:
    """One browser: its cookies, the last CSRF token seen, and every page it got."""

    client: TestClient
    csrf: str = ""
    seen: list[tuple[str, int, CIMultiDict[str], str]] = field(default_factory=list)

    async def request(self, method: str, path: str, *, data: Any = None, headers: dict[str, str] | None = None,
                      follow: bool = False) -> tuple[int, str, CIMultiDict[str]]:
        """One request; returns (status, body text, headers) and notes the page's CSRF token."""
        async with self.client.request(method, path, data=data, headers=headers or {},
                                       allow_redirects=follow) as resp:
            text = await resp.text()
            found = _CSRF.search(text)
            if found:
                self.csrf = found.group(1)
            headers = CIMultiDict(resp.headers)  # every Set-Cookie kept
            self.seen.append((str(resp.url.path_qs), resp.status, headers, text))
            return resp.status, text, headers

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, CIMultiDict[str]]:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, fields: dict[str, Any] | list[tuple[str, str]] | None = None, *,
                   csrf: str | None = None, **kwargs: Any) -> tuple[int, str, CIMultiDict[str]]:
        """A form post carrying the last page's token (``csrf=""`` sends none)."""
        items = list(fields.items()) if isinstance(fields, dict) else list(fields or [])
        token = self.csrf if csrf is None else csrf
        if token:
            items.append(("csrf", token))
        return await self.request("POST", path, data=items, **kwargs)

    async def sign_in(self, name: str, password: str) -> tuple[int, str, CIMultiDict[str]]:
        await self.get("/workspace/sign-in")
        return await self.post("/workspace/sign-in", {"username": name, "password": password})

    def cookie(self, name: str) -> str | None:
        for cookie in self.client.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None


@dataclass
class Site:
    """One gateway serving the workspace, its users' tokens, and the browsers opened on it."""

    gateway: Gateway
    server: TestServer
    tokens: dict[str, str]
    browsers: list[Browser] = field(default_factory=list)

    async def browser(self, role: str | None = None, *, headers: dict[str, str] | None = None) -> Browser:
        """A new browser, signed in as the user of ``role`` if given."""
        client = TestClient(self.server, headers=headers or {})
        await client.start_server()
        browser = Browser(client)
        self.browsers.append(browser)
        if role is not None:
            status, _, _ = await browser.sign_in(name_for(role, self.gateway.agency_id),
                                                 password_for(role, self.gateway.agency_id))
            assert status == 303, f"sign-in as {role} failed: {status}"
            await browser.get("/workspace/", follow=True)  # a signed-in page: its CSRF token
        return browser

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def users_for(agency_id: str) -> tuple[dict[str, str], tuple[User, ...]]:
    tokens = {role: secrets.token_urlsafe(32) for role in ROLES}
    users = tuple(
        User(name_for(role, agency_id), role, hashlib.sha256(tokens[role].encode()).hexdigest(),
             FAST_HASHER.hash(password_for(role, agency_id)))
        for role in ROLES
    )
    return tokens, users


@asynccontextmanager
async def workspace_pair(tmp: Path, *, extra_users: tuple[User, ...] = (),
                         **settings: Any) -> AsyncIterator[tuple[Site, Site]]:
    """NE and NG, each serving create_app (API and workspace) on its own test server
    (``extra_users`` join NE's users)."""
    async with gateway_pair(tmp, pseudonym_secret_hex=PSEUDONYM_SECRET, **settings) as (ne, ng):
        sites = []
        for gw in (ne, ng):
            tokens, users = users_for(gw.agency_id)
            if gw is ne:
                users += extra_users
            app = create_app(gw, with_overrides(gw.settings, users=users))
            server = TestServer(app, access_log=None)
            await server.start_server()
            sites.append(Site(gw, server, tokens))
        try:
            yield sites[0], sites[1]
        finally:
            for site in sites:
                for browser in site.browsers:
                    await browser.client.close()
                await site.server.close()
