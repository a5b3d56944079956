"""Debian's headless Chromium driven by Playwright's Python package, and axe-core in it.

Playwright launches the SYSTEM browser (``/usr/bin/chromium``, ``executable_path``): no
``playwright install``, no downloaded browser. axe-core comes from npm (.ci/run:
``npm ci --prefix .ci/node``) and is evaluated into each page through the DevTools protocol,
which the page's Content-Security-Policy does not apply to (the pages themselves stay under
their strict CSP: a violation shows up as a console message, which :class:`Tab` collects).

Without Chromium or axe-core the tests skip, saying how to install them; under ``CI=true``
they fail instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.gateway_pair import ROOT

ARTIFACTS = ROOT / "test-artifacts"
#: The same flags as tests/test_auditor_page.py: headless, no sandbox (root in CI), nothing
#: that reaches the network on its own.
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]
AXE_INSTALL = "npm ci --prefix .ci/node: the version pinned by .ci/node/package-lock.json"
#: axe-core impacts that fail a page.
FAILING_IMPACTS = ("serious", "critical")


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}; required under CI=true")
    pytest.skip(what)


def chromium_binary() -> str:
    """The system Chromium's path (skip, or fail under CI, when it is missing)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        _missing("chromium is not installed (apt-get install -y chromium)")
    assert found is not None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _missing("the playwright Python package is not installed (.venv/bin/pip install -e '.[dev]')")
    return found


def axe_source() -> str:
    """axe-core's axe.min.js (``AXE_CORE_JS`` names another copy), or skip/fail."""
    path = Path(os.environ.get("AXE_CORE_JS") or ROOT / ".ci" / "node" / "node_modules" / "axe-core" / "axe.min.js")
    if not path.is_file():
        _missing(f"axe-core is not installed at {path} ({AXE_INSTALL})")
    return path.read_text(encoding="utf-8")


@dataclass
class Visit:
    """One page as the browser showed it: kept for the canary checks."""

    name: str
    url: str
    title: str
    html: str
    payload_allowed: bool


@dataclass
class Recorder:
    """Every page of a test, the axe-core findings, and what the console said about the CSP."""

    axe: str
    visits: list[Visit] = field(default_factory=list)
    axe_failures: list[str] = field(default_factory=list)
    #: Moderate and minor axe-core findings: written to test-artifacts/workspace-axe-notes.txt, not failing.
    axe_notes: list[str] = field(default_factory=list)
    #: Pages wider than the narrow viewport (the page, not a table inside its own scroll box).
    layout_failures: list[str] = field(default_factory=list)
    console_problems: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        """Collect CSP violations and script errors from ``page``."""
        def on_console(message: Any) -> None:
            text = message.text
            # A 403 or 404 page a test asks for is logged as a failed load: not a problem.
            unexpected = message.type == "error" and not text.startswith("Failed to load resource")
            if unexpected or "Content Security Policy" in text:
                # The message, not the page: a console line could quote page text, so keep
                # only its kind and where it came from.
                location = message.location or {}
                self.console_problems.append(f"{message.type}: {text[:160]} @ {location.get('url', '')}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.console_problems.append(f"pageerror: {error.name}"))

    async def check(self, page: Any, name: str, *, payload_allowed: bool = False, shot: bool = True) -> None:
        """Record the page, run axe-core on it, and keep a full-page screenshot named after it."""
        lang = await page.evaluate("document.documentElement.lang")
        self.visits.append(Visit(name, page.url, await page.title(), await page.content(), payload_allowed))
        if not await page.evaluate("typeof window.axe === 'object'"):
            await page.evaluate(self.axe)
        result = await page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".map(v => ({id: v.id, impact: v.impact, targets: v.nodes.map(n => n.target.join(' '))}))")
        for violation in result:
            # Rule ids and CSS selectors only: never the page's text.
            line = f"{name}-{lang}: {violation['id']} ({violation['impact']}) at {', '.join(violation['targets'][:5])}"
            (self.axe_failures if violation["impact"] in FAILING_IMPACTS else self.axe_notes).append(line)
        if shot:
            ARTIFACTS.mkdir(exist_ok=True)
            path = ARTIFACTS / f"workspace-{name}-{lang}.png"
            await page.screenshot(path=str(path), full_page=True)
            self.screenshots.append(path)

    def assert_clean(self) -> None:
        """No serious or critical axe-core violation, no sideways scrolling at 360 px, no CSP
        violation or script error."""
        if self.axe_notes:
            ARTIFACTS.mkdir(exist_ok=True)
            with (ARTIFACTS / "workspace-axe-notes.txt").open("a", encoding="utf-8") as notes:
                notes.writelines(line + "\n" for line in self.axe_notes)
        assert self.axe_failures == [], "axe-core: " + "; ".join(self.axe_failures)
        assert self.layout_failures == [], "360 px: " + "; ".join(self.layout_failures)
        assert self.console_problems == [], "browser console: " + "; ".join(self.console_problems)


async def tab_to(page: Any, selector: str, *, limit: int = 80) -> None:
    """Press Tab until the element matching ``selector`` has the focus (keyboard-only use)."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("s => document.activeElement !== null && document.activeElement.matches(s)",
                               selector):
            return
    raise AssertionError(f"{selector} cannot be reached with Tab")


async def no_horizontal_scroll(page: Any) -> int:
    """The page's scroll width (the caller compares it with the viewport's)."""
    return int(await page.evaluate("document.documentElement.scrollWidth"))
