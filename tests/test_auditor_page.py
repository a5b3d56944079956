"""The auditor page in a real browser (Debian's headless Chromium): it shows a case's consent
and access history, verifies every covered entry against the signed checkpoint with WebCrypto,
flags a tampered entry, and shows no personal data.

Skips when Chromium is not installed, except under CI=true, where it fails
(.ci/run installs it). The screenshot is kept as test-artifacts/auditor-page.png.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from gateway.service import SYSTEM_ACTOR

from testkit.gateway_pair import ROOT
from .test_api_audit import NEEDLES, World, populated

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install -y chromium); required under CI=true")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return CHROMIUM


async def run_chromium(binary: str, url: str, profile: Path, *extra: str) -> str:
    """Headless Chromium on ``url``; the DOM after scripts ran (or "" for a screenshot run).
    Run as an asyncio subprocess: the gateways answer the page from this same event loop."""
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=10000", *extra, url]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("chromium did not finish within 120 s") from None
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode("utf-8")


class Page(HTMLParser):
    """The parts of the rendered page the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.rows: list[dict[str, Any]] = []
        self.texts: dict[str, str] = {}
        self._row: dict[str, Any] | None = None
        self._cell: dict[str, Any] | None = None
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "tr" and "data-seq" in a:
            self._row = {"seq": int(a["data-seq"] or 0), "event": a.get("data-event"), "cells": [], "status": None}
        elif tag == "td" and self._row is not None:
            self._cell = {"text": "", "status": a.get("data-status")}
        elif a.get("id"):
            self._id = a["id"]
            self.texts.setdefault(self._id, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append(self._cell["text"])
            if self._cell["status"]:
                self._row["status"] = self._cell["status"]
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif self._id is not None and tag in ("dd", "p", "span"):
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        elif self._id is not None:
            self.texts[self._id] += data


def parse(dom: str) -> Page:
    page = Page()
    page.feed(dom)
    return page


def page_url(w: World, agency, case_ref: str) -> str:
    return f"{agency.client.make_url('/auditor')}#token={agency.tokens['auditor']}&case={case_ref}"


async def _history(w: World, agency) -> dict[str, Any]:
    """The answer the page got (same request), kept with every other /audit answer for the PII check."""
    status, history, _, _ = await w.audit(agency, "GET", f"/audit/cases/{w.case_ref}")
    assert status == 200
    return history


VIEWED = "audit.case_viewed"  # each look at a case's history is itself audited (after the read)


def _assert_rendered(page: Page, history: dict[str, Any], token: str, dom: str) -> None:
    assert page.body.get("data-state") == "done", page.texts.get("status")
    rows = [r for r in page.rows if r["event"] != VIEWED]
    items = [i for i in history["items"] if i["entry"]["event_type"] != VIEWED]
    assert [r["seq"] for r in rows] == [i["seq"] for i in items]
    # The page's own load came after the earlier views it lists: those show up as well.
    assert len(page.rows) > len(history["items"]) or VIEWED in {r["event"] for r in page.rows}
    for row, item in zip(rows, items):
        assert row["event"] == item["entry"]["event_type"]
        # time, event, actor, agency, codes, message, check
        assert row["cells"][2] == item["entry"]["event_type"] and row["cells"][3] == item["entry"]["actor"]
        assert row["cells"][1] == item["entry"]["at"][:19].replace("T", " ")
        assert row["status"] == ("verified" if item["covered"] else "pending"), (row, item["covered"])
    assert "Ed25519 signature verified" in page.texts["cp-signature"]
    assert page.texts["cp-size"].startswith(str(history["checkpoint"]["tree_size"]))
    assert page.texts["cp-signed"] == history["checkpoint"]["signed_at"]
    lowered = dom.lower()
    assert not any(n.lower() in lowered for n in NEEDLES)
    assert token not in dom


async def test_the_page_shows_and_verifies_the_case_history(tmp_path, chromium) -> None:
    async with populated(tmp_path, withdraw=True) as w:
        # Both sides: the sender's consent trail, the receiver's reads and shredding.
        status, _, _, _ = await w.audit(w.ne, "POST", "/audit/checkpoints")
        assert status in (200, 201)
        for agency, expected in (
            (w.ne, {"consent.checked", "message.created", "message.sent", "consent.withdrawn",
                    "consent.withdrawal_acknowledged"}),
            (w.ng, {"message.received", "message.read", "data.shredded"}),
        ):
            history = await _history(w, agency)
            assert history["items"] and all(i["covered"] for i in history["items"] if i["entry"]["event_type"] != VIEWED)
            profile = tmp_path / f"profile-{agency.gateway.agency_id}"
            dom = await run_chromium(chromium, page_url(w, agency, w.case_ref), profile, "--dump-dom")
            page = parse(dom)
            _assert_rendered(page, history, agency.tokens["auditor"], dom)
            assert expected <= {r["event"] for r in page.rows}
            if agency is w.ng:
                [read] = [r for r in page.rows if r["event"] == "message.read"]
                assert "purpose: safety_assessment" in read["cells"][5] and "role: caseworker" in read["cells"][5]
                [shredded] = [r for r in page.rows if r["event"] == "data.shredded"]
                assert "reason: consent_withdrawn" in shredded["cells"][5]
            else:
                [withdrawn] = [r for r in page.rows if r["event"] == "consent.withdrawn"]
                assert "scope: all_purposes" in withdrawn["cells"][5]
                assert "erasure_requested: true" in withdrawn["cells"][5]

        # An entry after the checkpoint is shown as not yet covered, not as verified.
        await w.ne.gateway.audit_event("audit.checkpoint_rejected", SYSTEM_ACTOR, {"reason": "test"}, case_ref=w.case_ref)
        history = await _history(w, w.ne)
        assert history["items"][-1]["entry"]["event_type"] == "audit.checkpoint_rejected" and not history["items"][-1]["covered"]
        dom = await run_chromium(chromium, page_url(w, w.ne, w.case_ref), tmp_path / "profile-ne-2", "--dump-dom")
        page = parse(dom)
        _assert_rendered(page, history, w.ne.tokens["auditor"], dom)
        assert page.rows[-1]["status"] == "pending"

        # The screenshot of the sender's page, kept for people to look at.
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "auditor-page.png"
        shot.unlink(missing_ok=True)
        await run_chromium(chromium, page_url(w, w.ne, w.case_ref), tmp_path / "profile-shot",
                           f"--screenshot={shot}", "--window-size=1280,1000", "--hide-scrollbars")
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # No personal data in any answer the auditor routes gave.
        assert w.audit_answers
        for path, text in w.audit_answers:
            assert not any(n.lower() in text.lower() for n in NEEDLES), path


async def test_the_page_flags_an_entry_changed_behind_the_checkpoint(tmp_path, chromium) -> None:
    async with populated(tmp_path, withdraw=True) as w:
        history = await _history(w, w.ng)
        [read] = [i for i in history["items"] if i["entry"]["event_type"] == "message.read"]
        # An insider with database access rewrites the read's purpose (dropping the
        # append-only trigger first).
        entry = dict(read["entry"], detail={**read["entry"]["detail"], "purpose": "case_followup"})
        leaf = {k: entry[k] for k in ("actor", "agency", "at", "case_ref", "detail", "event_type", "message_id")}
        new_hash = hashlib.sha256(b"\x00" + rfc8785.dumps(leaf)).digest()

        def tamper(sql: str, *args: Any) -> None:
            conn = sqlite3.connect(tmp_path / "NG-NAPTIP.db", timeout=10)
            with conn:
                conn.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
                conn.execute(sql, args)
            conn.close()

        async def render() -> tuple[Page, dict[int, dict[str, Any]]]:
            dom = await run_chromium(chromium, page_url(w, w.ng, w.case_ref), tmp_path / "profile", "--dump-dom")
            page = parse(dom)
            assert page.body.get("data-state") == "error" and "FAILED" in page.texts["status"]
            return page, {r["seq"]: r for r in page.rows}

        # Only the text changed: the recomputed leaf hash differs from the recorded one, so
        # exactly that entry fails; the others still verify.
        await asyncio.to_thread(tamper, "UPDATE audit_entries SET detail_json = ? WHERE seq = ?",
                                json.dumps(entry["detail"]), read["seq"])
        page, by_seq = await render()
        assert by_seq[read["seq"]]["status"] == "failed"
        assert "purpose: case_followup" in by_seq[read["seq"]]["cells"][5]
        assert all(r["status"] == "verified" for s, r in by_seq.items() if s != read["seq"] and r["event"] != VIEWED)

        # Hash recomputed too: the changed leaf no longer leads to the signed root, nor does
        # the path of the one entry that has that leaf hash as its first sibling. Proofs are
        # assembled from the subtree hashes stored at append time (docs/audit.md), which the
        # rewrite did not touch: every other entry still verifies, as it should.
        await asyncio.to_thread(tamper, "UPDATE audit_entries SET entry_hash = ? WHERE seq = ?", new_hash, read["seq"])
        page, by_seq = await render()
        sibling = ((read["seq"] - 1) ^ 1) + 1
        assert by_seq[read["seq"]]["status"] == "failed"
        assert by_seq and all(r["status"] == ("failed" if s == sibling else "verified")
                              for s, r in by_seq.items() if s != read["seq"] and r["event"] != VIEWED)
