"""The auditor API (/audit/...): roles, filters, paging, exports that verify, proofs that an
independent RFC 9162 verifier accepts, and no personal data anywhere in what it answers."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import subprocess
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest
import rfc8785

from gateway.audit.export import parse_jsonl
from gateway.audit.verify import verify_export
from gateway.clock import format_ts
from gateway.schema import load_example
from gateway.service import Actor

from testkit.gateway_pair import NIGERIA, ROOT, eventually
from .test_api_world import Agency, api_pair, assert_conforms

SUBJECT = ("Amaka", "Testfixture", "Ngozi", "+2348000000001", "Benin City")  # from the example referral
LOCAL_CASE_ID = "NE-ZINDER-2026-0142"
NEEDLES = (*SUBJECT, LOCAL_CASE_ID)
ROLES_REFUSED = ("caseworker", "supervisor", "admin")


# --- an independent RFC 9162 verifier (recursive, as the RFC defines the proofs) ----------------


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_leaf_hash(entry: dict[str, Any]) -> bytes:
    """SHA-256(0x00 || JCS(leaf object)) from an exported entry, with the rfc8785 library."""
    leaf = {k: entry[k] for k in ("actor", "agency", "at", "case_ref", "detail", "event_type", "message_id")}
    return sha(b"\x00" + rfc8785.dumps(leaf))


def mth(d: list[bytes]) -> bytes:
    if not d:
        return sha(b"")
    if len(d) == 1:
        return d[0]
    k = split(len(d))
    return sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def root_from_path(m: int, n: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """The root PATH(m, D[n]) leads to from ``leaf``; None if the proof has the wrong length.
    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k])."""
    if n == 1:
        return leaf if not proof else None
    if not proof:
        return None
    k = split(n)
    if m < k:
        sub = root_from_path(m, k, leaf, proof[:-1])
        return None if sub is None else sha(b"\x01" + sub + proof[-1])
    sub = root_from_path(m - k, n - k, leaf, proof[:-1])
    return None if sub is None else sha(b"\x01" + proof[-1] + sub)


def roots_from_consistency(m: int, n: int, proof: list[bytes], old_root: bytes,
                           whole: bool = True) -> tuple[bytes, bytes] | None:
    """(old root, new root) SUBPROOF(m, D[n], whole) implies; None if malformed.
    SUBPROOF(m, D[m], true) = [] (the old tree is this subtree), SUBPROOF(m, D[m], false) = [MTH(D[m])];
    m <= k: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]); m > k: SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])."""
    if m == n:
        if whole:
            return (old_root, old_root) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = split(n)
    if m <= k:
        sub = roots_from_consistency(m, k, proof[:-1], old_root, whole)
        return None if sub is None else (sub[0], sha(b"\x01" + sub[1] + proof[-1]))
    sub = roots_from_consistency(m - k, n - k, proof[:-1], old_root, False)
    if sub is None:
        return None
    return sha(b"\x01" + proof[-1] + sub[0]), sha(b"\x01" + proof[-1] + sub[1])


def verify_inclusion(seq: int, tree_size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    return 1 <= seq <= tree_size and root_from_path(seq - 1, tree_size, leaf, proof) == root


def verify_consistency(first: int, second: int, proof: list[bytes], first_root: bytes, second_root: bytes) -> bool:
    if not 1 <= first <= second:
        return False
    roots = roots_from_consistency(first, second, proof, first_root)
    return roots == (first_root, second_root)


def test_the_independent_verifier_itself() -> None:
    d = [sha(b"\x00" + bytes([i])) for i in range(13)]
    for n in range(1, 14):
        for m in range(1, n + 1):
            proof = _rfc_proof(m, d[:n])
            assert verify_consistency(m, n, proof, mth(d[:m]), mth(d[:n]))
            assert not verify_consistency(m, n, proof, sha(b"x"), mth(d[:n]))
            if proof:
                assert not verify_consistency(m, n, [sha(b"y"), *proof[1:]], mth(d[:m]), mth(d[:n]))
        for i in range(n):
            path = _rfc_path(i, d[:n])
            assert verify_inclusion(i + 1, n, d[i], path, mth(d[:n]))
            assert not verify_inclusion(i + 1, n, sha(b"z"), path, mth(d[:n]))


def _rfc_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = split(len(d))
    return _rfc_path(m, d[:k]) + [mth(d[k:])] if m < k else _rfc_path(m - k, d[k:]) + [mth(d[:k])]


def _rfc_proof(m: int, d: list[bytes], b: bool = True) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = split(n)
    return _rfc_proof(m, d[:k], b) + [mth(d[k:])] if m <= k else _rfc_proof(m - k, d[k:], False) + [mth(d[:k])]


# --- a populated pair of gateways -------------------------------------------------------------


@dataclass
class World:
    ne: Agency
    ng: Agency
    case_ref: str
    message_id: str
    audit_answers: list[tuple[str, str]]  # (path, body text) of every /audit answer

    async def audit(self, agency: Agency, method: str, path: str, role: str | None = "auditor",
                    **kwargs: Any) -> tuple[int, Any, dict[str, str], str]:
        headers = dict(kwargs.pop("headers", {}))
        if role is not None:
            headers.update(agency.auth(role))
        async with agency.client.request(method, path, headers=headers, **kwargs) as resp:
            text = await resp.text()
        self.audit_answers.append((path, text))
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return resp.status, body, dict(resp.headers), text


async def _events(gateway, case_ref: str) -> set[str]:
    from gateway.store import AuditQuery
    return {r.event_type for r in await gateway.store.query_audit(AuditQuery(case_ref=case_ref), 1000)}


async def quiet(*gateways, settle: float = 0.4, timeout: float = 15.0) -> None:
    """Wait until no gateway's log has grown for ``settle`` seconds (receipts of receipts,
    acknowledgements and their receipts are still in flight right after the last step)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    sizes = [await gw.audit_log.size() for gw in gateways]
    while loop.time() < deadline:
        await asyncio.sleep(settle)
        now = [await gw.audit_log.size() for gw in gateways]
        if now == sizes:
            return
        sizes = now
    raise AssertionError("the gateways kept writing audit entries")


@asynccontextmanager
async def populated(tmp_path, *, withdraw: bool = False) -> AsyncIterator[World]:
    """NE refers the example person to NG, NG reads it with a purpose (optionally NE then
    withdraws consent and NG acknowledges); both sign a checkpoint."""
    async with api_pair(tmp_path) as (ne, ng):
        status, queued = await ne.call("POST", "/referrals", json={
            "recipient": NIGERIA, "local_case_id": LOCAL_CASE_ID, "payload": load_example("referral.request")})
        assert status == 202, queued
        mid, case_ref = queued["message_id"], queued["case_ref"]

        async def arrived() -> bool:
            return (await ng.gateway.store.get_incoming(mid)) is not None
        await eventually(arrived)
        status, opened = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "safety_assessment"})
        assert status == 200 and opened["payload"]["person"]["names"]["given"] == SUBJECT[0]

        async def read_at_sender() -> bool:
            return (await ne.gateway.store.get_outgoing(mid)).status == "read"
        await eventually(read_at_sender)
        if withdraw:
            await ne.gateway.withdraw_consent(case_ref, {
                "withdrawn_at": format_ts(ne.gateway.clock()), "decision_maker": "self", "scope": "all_purposes",
                "erasure_requested": True}, actor=Actor(f"caseworker.{ne.gateway.agency_id.lower()}", "caseworker"))

            async def acknowledged() -> bool:
                return "consent.withdrawal_acknowledged" in await _events(ne.gateway, case_ref)
            await eventually(acknowledged)
        await quiet(ne.gateway, ng.gateway)
        for gw in (ne.gateway, ng.gateway):
            await gw.audit_log.checkpoint(force=True)
        yield World(ne, ng, case_ref, mid, [])


def _clean(text: str) -> bool:
    return not any(n.lower() in text.lower() for n in NEEDLES)


async def _document(world: World) -> dict[str, Any]:
    status, doc = await world.ne.call("GET", "/openapi.json", role=None)
    assert status == 200
    return doc


# --- roles -------------------------------------------------------------------------------------


async def test_only_auditors_may_use_the_audit_api(tmp_path) -> None:
    async with populated(tmp_path) as w:
        routes = [("GET", "/audit/entries"), ("GET", "/audit/export"), ("GET", "/audit/checkpoints"),
                  ("GET", "/audit/checkpoints/latest"), ("POST", "/audit/checkpoints"),
                  ("GET", "/audit/proofs/inclusion?seq=1&tree_size=1"),
                  ("GET", "/audit/proofs/consistency?first=1&second=1"), ("GET", f"/audit/cases/{w.case_ref}")]
        for method, path in routes:
            status, body, _, _ = await w.audit(w.ne, method, path)
            assert status in (200, 201), (path, body)
            for role in ROLES_REFUSED:
                status, body, _, _ = await w.audit(w.ne, method, path, role=role)
                assert status == 403 and body["error"] == "forbidden", (path, role)
            status, body, headers, _ = await w.audit(w.ne, method, path, role=None)
            assert status == 401 and "WWW-Authenticate" in headers, path
        # Refusals are audited like every other route's.
        status, page, _, _ = await w.audit(w.ne, "GET", "/audit/entries?event_type=auth.forbidden&limit=1000")
        assert len(page["items"]) == len(routes) * len(ROLES_REFUSED)
        assert {i["detail"]["permission"] for i in page["items"]} == {"audit.read"}


# --- entries: filters and paging ---------------------------------------------------------------


async def test_filters_and_paging(tmp_path) -> None:
    async with populated(tmp_path) as w:
        doc = await _document(w)
        status, everything, _, _ = await w.audit(w.ne, "GET", "/audit/entries?limit=1000")
        assert status == 200 and everything["next_after_seq"] is None
        assert_conforms(doc, "/audit/entries", "GET", 200, everything)
        items = everything["items"]
        assert [i["seq"] for i in items] == list(range(1, len(items) + 1))
        assert {"consent.checked", "message.created", "message.sent", "message.status"} <= {i["event_type"] for i in items}

        # Paging: limit 2 walks the same entries, next_after_seq null only on the last page.
        walked, after = [], 0
        while True:
            status, page, _, _ = await w.audit(w.ne, "GET", f"/audit/entries?limit=2&after_seq={after}")
            assert status == 200 and len(page["items"]) <= 2
            walked += page["items"]
            if page["next_after_seq"] is None:
                break
            assert page["next_after_seq"] == page["items"][-1]["seq"]
            after = page["next_after_seq"]
        assert walked == items

        # Filters (AND): case, agency, repeated event_type, time window.
        _, page, _, _ = await w.audit(w.ne, "GET", f"/audit/entries?case_ref={w.case_ref}&limit=1000")
        assert page["items"] == [i for i in items if i["case_ref"] == w.case_ref] and page["items"]
        _, page, _, _ = await w.audit(w.ne, "GET", "/audit/entries?event_type=consent.checked&event_type=message.sent")
        assert {i["event_type"] for i in page["items"]} == {"consent.checked", "message.sent"}
        _, page, _, _ = await w.audit(w.ne, "GET", f"/audit/entries?agency={NIGERIA}&event_type=message.created")
        assert [i["message_id"] for i in page["items"]] == [w.message_id]
        _, page, _, _ = await w.audit(w.ne, "GET", "/audit/entries?agency=ML-ANLTP")
        assert page == {"items": [], "next_after_seq": None}
        first_at = items[0]["at"][:19] + "Z"
        _, page, _, _ = await w.audit(w.ne, "GET", f"/audit/entries?since={first_at}&limit=1000")
        assert page["items"] == items
        _, page, _, _ = await w.audit(w.ne, "GET", f"/audit/entries?until={first_at}")
        assert page["items"] == []
        _, page, _, _ = await w.audit(w.ne, "GET", "/audit/entries?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z")
        assert page["items"] == []
        # The receiver's log has the read, with its purpose and the reader's role.
        _, page, _, _ = await w.audit(w.ng, "GET", f"/audit/entries?case_ref={w.case_ref}&event_type=message.read")
        assert [(i["detail"]["purpose"], i["detail"]["role"]) for i in page["items"]] == [("safety_assessment", "caseworker")]


BAD_QUERIES = [
    ("/audit/entries?limit=0", "limit"), ("/audit/entries?limit=1001", "limit"), ("/audit/entries?limit=x", "limit"),
    ("/audit/entries?after_seq=-1", "after_seq"), ("/audit/entries?after_seq=1e3", "after_seq"),
    ("/audit/entries?case_ref=short", "case_ref"), ("/audit/entries?case_ref=has%20space%20in%20it", "case_ref"),
    ("/audit/entries?agency=nigeria", "agency"), ("/audit/entries?event_type=Message.Read", "event_type"),
    ("/audit/entries?event_type=message.read&event_type=a%20b", "event_type"),
    ("/audit/entries?since=2026-03-01", "since"), ("/audit/entries?since=2026-03-01T00:00:00.5Z", "since"),
    ("/audit/entries?until=2026-02-30T00:00:00Z", "until"),
    ("/audit/entries?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "until"),
    ("/audit/entries?limit=5&limit=6", "limit"),
    ("/audit/export?format=xml", "format"), ("/audit/export?format=csv&agency=x", "agency"),
    ("/audit/checkpoints?origin=ne", "origin"), ("/audit/checkpoints?min_size=-2", "min_size"),
    ("/audit/checkpoints/latest?origin=NE", "origin"),
    ("/audit/proofs/inclusion?tree_size=1", "seq"), ("/audit/proofs/inclusion?seq=1", "tree_size"),
    ("/audit/proofs/inclusion?seq=0&tree_size=1", "seq"), ("/audit/proofs/inclusion?seq=3&tree_size=2", "seq"),
    ("/audit/proofs/inclusion?seq=1&tree_size=99999", "tree"),
    ("/audit/proofs/consistency?first=2", "second"), ("/audit/proofs/consistency?second=2", "first"),
    ("/audit/proofs/consistency?first=3&second=2", "first"), ("/audit/proofs/consistency?first=1&second=99999", "tree"),
    ("/audit/cases/ne-ng?limit=0", "case_ref"), ("/audit/cases/ne-ng-abcdefgh?limit=0", "limit"),
    ("/audit/cases/ne-ng-abcdefgh?after_seq=x", "after_seq"),
]


async def test_bad_parameters_are_refused_naming_the_parameter(tmp_path) -> None:
    async with populated(tmp_path) as w:
        for path, name in BAD_QUERIES:
            status, body, _, _ = await w.audit(w.ne, "GET", path)
            assert status == 400, (path, body)
            assert body["error"] in {"invalid_query", "missing_parameter", "invalid_id"}, (path, body)
            assert name in body["detail"], (path, body)
        # Unknown parameters are refused, not ignored (a typo must not widen an export),
        # without echoing what was sent.
        status, body, _, _ = await w.audit(w.ne, "GET", "/audit/export?case=Amaka")
        assert status == 400 and "case_ref" in body["detail"] and "Amaka" not in body["detail"]
        status, body, _, _ = await w.audit(w.ne, "POST", "/audit/checkpoints?x=1")
        assert status == 400
        # A refused export is not recorded as an export.
        _, page, _, _ = await w.audit(w.ne, "GET", "/audit/entries?event_type=audit.exported")
        assert page["items"] == []


# --- export --------------------------------------------------------------------------------------


async def _notes(w: World, agency: Agency, origin: str | None = None) -> list[bytes]:
    path = "/audit/checkpoints" + (f"?origin={origin}" if origin else "")
    status, body, _, _ = await w.audit(agency, "GET", path)
    assert status == 200
    notes = [rfc8785.dumps(item["note"]) for item in body["items"]]
    # As docs/api.md tells auditors: sorted keys without spaces is the note's canonical form.
    assert notes == [json.dumps(i["note"], separators=(",", ":"), sort_keys=True).encode() for i in body["items"]]
    return notes


async def test_export_verifies_offline_and_tampering_is_detected(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("gateway.api.audit.EXPORT_PAGE", 4)  # stream the export in several pages
    async with populated(tmp_path, withdraw=True) as w:
        doc = await _document(w)
        status, text, headers, raw = await w.audit(w.ne, "GET", "/audit/export?format=jsonl")
        assert status == 200, text
        assert headers["Content-Type"].startswith("application/jsonl")
        assert headers["Content-Disposition"].startswith('attachment; filename="audit-NE-ANLTP-TIM-')
        assert headers["Cache-Control"] == "no-store"
        lines = raw.split("\n")
        assert lines[-1] == ""
        lines = lines[:-1]
        entries = parse_jsonl(lines)
        size = len(entries)
        for line in lines:  # every line canonical, every hash right (checked independently)
            obj = json.loads(line)
            assert rfc8785.dumps(obj).decode() == line
            assert rfc_leaf_hash(obj).hex() == obj["entry_hash"]

        notes = await _notes(w, w.ne)
        status, listing, _, _ = await w.audit(w.ne, "GET", "/audit/checkpoints")
        assert_conforms(doc, "/audit/checkpoints", "GET", 200, listing)
        directory = w.ne.gateway.directory
        report = verify_export(entries, notes, directory, origin="NE-ANLTP-TIM", now=w.ne.gateway.clock())
        assert report.ok, report.lines()
        assert report.covered == max(json.loads(n)["checkpoint"]["tree_size"] for n in notes) > 0

        # The same files through `gateway audit verify`, as an auditor would run it.
        log_file, notes_file = tmp_path / "export.jsonl", tmp_path / "notes.jsonl"
        log_file.write_text(raw, encoding="utf-8", newline="")
        notes_file.write_bytes(b"".join(n + b"\n" for n in notes))
        args = [sys.executable, "-m", "gateway.cli", "audit", "verify", "--log", str(log_file), "--checkpoints",
                str(notes_file), "--origin", "NE-ANLTP-TIM", "--directory", str(ROOT / "keys/demo/directory.json"),
                "--authority", str(ROOT / "keys/demo/authority.pub.json")]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "verification OK" in done.stdout

        # Tamper with one exported line: an edited field is pinpointed by its recorded hash,
        # and with the hash recomputed too, the signed root still catches it.
        victim = next(i for i, e in enumerate(entries) if e.event_type == "consent.withdrawn")
        obj = json.loads(lines[victim])
        obj["detail"]["erasure_requested"] = False
        edited = list(lines)
        edited[victim] = rfc8785.dumps(obj).decode()
        report = verify_export(parse_jsonl(edited), notes, directory, origin="NE-ANLTP-TIM")
        assert not report.ok and report.first_bad.check == "entry_hash" and report.first_bad.first_seq == victim + 1
        obj["entry_hash"] = rfc_leaf_hash(obj).hex()
        edited[victim] = rfc8785.dumps(obj).decode()
        report = verify_export(parse_jsonl(edited), notes, directory, origin="NE-ANLTP-TIM")
        assert not report.ok and report.first_bad.check == "root_mismatch"
        log_file.write_text("\n".join(edited) + "\n", encoding="utf-8", newline="")
        assert subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT).returncode == 1
        # A deleted line is caught too.
        report = verify_export(parse_jsonl(lines[:victim] + lines[victim + 1:]), notes, directory, origin="NE-ANLTP-TIM")
        assert not report.ok

        # The export was itself recorded, after the entries it exported.
        _, page, _, _ = await w.audit(w.ne, "GET", "/audit/entries?event_type=audit.exported")
        [exported] = page["items"]
        assert exported["seq"] > size
        assert exported["detail"] == {"format": "jsonl", "entries": size, "filtered": False}
        assert exported["actor"] == "auditor.ne-anltp-tim"

        # CSV: same entries, CRLF, header first; a filtered export says so and names its case.
        status, _, headers, raw_csv = await w.audit(w.ne, "GET", f"/audit/export?format=csv&case_ref={w.case_ref}")
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        assert headers["Content-Disposition"].endswith('.csv"')
        assert raw_csv.startswith("seq,at,event_type,actor,agency,case_ref,message_id,detail,entry_hash\r\n")
        rows = list(csv.reader(io.StringIO(raw_csv, newline="")))
        case_entries = [e for e in entries if e.case_ref == w.case_ref]
        assert [int(r[0]) for r in rows[1:]] == [e.seq for e in case_entries]
        assert {r[5] for r in rows[1:]} == {w.case_ref}
        _, page, _, _ = await w.audit(w.ne, "GET", "/audit/entries?event_type=audit.exported")
        assert page["items"][-1]["detail"] == {"format": "csv", "entries": len(case_entries), "filtered": True}
        assert page["items"][-1]["case_ref"] == w.case_ref

        # A partner's checkpoints are listed by origin, and the latest one by itself.
        status, latest, _, _ = await w.audit(w.ng, "GET", "/audit/checkpoints/latest")
        assert status == 200 and latest["origin"] == NIGERIA
        assert_conforms(doc, "/audit/checkpoints/latest", "GET", 200, latest)
        assert latest["signing_key"]["status"] == "valid"
        status, body, _, _ = await w.audit(w.ng, "GET", "/audit/checkpoints/latest?origin=ML-ANLTP")
        assert status == 404


# --- proofs ----------------------------------------------------------------------------------------


async def test_proofs_verify_with_an_independent_rfc9162_verifier(tmp_path) -> None:
    async with populated(tmp_path) as w:
        doc = await _document(w)
        await w.audit(w.ne, "GET", "/audit/entries", role="admin")  # a refusal: the log grows by one
        _, everything, _, _ = await w.audit(w.ne, "GET", "/audit/entries?limit=1000")
        # Sign a checkpoint now: the API answers it with 201, then 200 while the log stays put.
        status, signed, _, _ = await w.audit(w.ne, "POST", "/audit/checkpoints")
        assert status == 201 and signed["created"] is True
        assert_conforms(doc, "/audit/checkpoints", "POST", 201, signed)
        status, again, _, _ = await w.audit(w.ne, "POST", "/audit/checkpoints")
        assert status == 200 and again["created"] is False and again["tree_size"] == signed["tree_size"]
        size = signed["tree_size"]
        leaves = [rfc_leaf_hash(e) for e in everything["items"]][:size]
        assert len(leaves) == size
        assert mth(leaves).hex() == signed["root_hash"]

        for seq in range(1, size + 1):
            status, p, _, _ = await w.audit(w.ne, "GET", f"/audit/proofs/inclusion?seq={seq}&tree_size={size}")
            assert status == 200
            if seq == 1:
                assert_conforms(doc, "/audit/proofs/inclusion", "GET", 200, p)
            proof = [bytes.fromhex(h) for h in p["proof"]]
            assert p["leaf_hash"] == leaves[seq - 1].hex()
            assert p["root_hash"] == signed["root_hash"]
            assert verify_inclusion(seq, size, leaves[seq - 1], proof, bytes.fromhex(signed["root_hash"]))
            assert not verify_inclusion(seq, size, sha(b"forged"), proof, bytes.fromhex(signed["root_hash"]))
        for second in range(1, size + 1):
            for first in range(1, second + 1):
                status, c, _, _ = await w.audit(w.ne, "GET", f"/audit/proofs/consistency?first={first}&second={second}")
                assert status == 200
                assert c["first_root"] == mth(leaves[:first]).hex() and c["second_root"] == mth(leaves[:second]).hex()
                proof = [bytes.fromhex(h) for h in c["proof"]]
                assert verify_consistency(first, second, proof, bytes.fromhex(c["first_root"]),
                                          bytes.fromhex(c["second_root"])), (first, second)
                if proof:
                    assert not verify_consistency(first, second, proof[:-1] + [sha(b"x")],
                                                  bytes.fromhex(c["first_root"]), bytes.fromhex(c["second_root"]))
        assert_conforms(doc, "/audit/proofs/consistency", "GET", 200, c)


async def test_case_history_carries_what_a_browser_needs(tmp_path) -> None:
    async with populated(tmp_path, withdraw=True) as w:
        doc = await _document(w)
        for agency, expected in (
            (w.ne, {"consent.checked", "message.created", "message.sent", "consent.withdrawn",
                    "consent.withdrawal_acknowledged"}),
            (w.ng, {"message.received", "message.read", "data.shredded"}),
        ):
            await agency.gateway.audit_event("stats.read", Actor("x"), {}, case_ref=w.case_ref)  # after the checkpoint
            status, history, _, _ = await w.audit(agency, "GET", f"/audit/cases/{w.case_ref}")
            assert status == 200
            assert_conforms(doc, "/audit/cases/{case_ref}", "GET", 200, history)
            cp = history["checkpoint"]
            assert cp["origin"] == agency.gateway.agency_id
            assert expected <= {i["entry"]["event_type"] for i in history["items"]}
            root = bytes.fromhex(cp["root_hash"])
            for item in history["items"]:
                assert item["entry"]["case_ref"] == w.case_ref
                leaf = sha(b"\x00" + item["leaf_data"].encode("utf-8"))
                assert leaf.hex() == item["entry"]["entry_hash"] == rfc_leaf_hash(item["entry"]).hex()
                assert item["covered"] == (item["seq"] <= cp["tree_size"])
                if item["covered"]:
                    proof = [bytes.fromhex(h) for h in item["proof"]]
                    assert verify_inclusion(item["seq"], cp["tree_size"], leaf, proof, root)
                else:
                    assert item["proof"] is None
            assert not history["items"][-1]["covered"]
            # Paging.
            status, page, _, _ = await w.audit(agency, "GET", f"/audit/cases/{w.case_ref}?limit=1")
            assert len(page["items"]) == 1 and page["next_after_seq"] == page["items"][0]["seq"]
        status, empty, _, _ = await w.audit(w.ne, "GET", "/audit/cases/ne-ng-nosuchcase")
        assert status == 200 and empty["items"] == []


# --- no personal data ----------------------------------------------------------------------------------


async def test_no_personal_data_in_entries_exports_or_checkpoints(tmp_path) -> None:
    async with populated(tmp_path, withdraw=True) as w:
        for agency in (w.ne, w.ng):
            for path in ("/audit/entries?limit=1000", "/audit/export", "/audit/export?format=csv",
                         "/audit/checkpoints", f"/audit/checkpoints?origin={agency.gateway.agency_id}",
                         "/audit/checkpoints/latest", f"/audit/cases/{w.case_ref}",
                         "/audit/proofs/inclusion?seq=1&tree_size=2", "/audit/proofs/consistency?first=1&second=2"):
                status, _, _, _ = await w.audit(agency, "GET", path)
                assert status == 200, path
            status, _, _, _ = await w.audit(agency, "POST", "/audit/checkpoints")
            assert status in (200, 201)
        assert len(w.audit_answers) == 20
        for path, text in w.audit_answers:
            assert _clean(text), f"personal data in the answer to {path}"
        # The stored notes and every stored entry, straight from the stores.
        for agency in (w.ne, w.ng):
            store = agency.gateway.store
            for record in await store.read_audit(1, 10_000):
                assert _clean(record.detail_json + record.actor + str(record.case_ref)), record.event_type
            for origin in ("NE-ANLTP-TIM", NIGERIA):
                for cp in await store.list_checkpoints(origin):
                    assert _clean(cp.note.decode())


@pytest.mark.parametrize("path", ["/auditor"])
async def test_the_page_is_public_static_and_locked_down(tmp_path, path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        async with ne.client.get(path) as resp:
            body = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
            csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "http://" not in body and "https://" not in body  # no external resources
        assert "innerHTML" not in body and "localStorage" not in body and "sessionStorage" not in body
        # The CSP hashes are those of the inlined script and style.
        import base64
        import re
        for kind in ("script", "style"):
            inline = re.search(rf"<{kind}>(.*?)</{kind}>", body, re.S).group(1)
            digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
            assert f"{kind}-src 'sha256-{digest}'" in csp
