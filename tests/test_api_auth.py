"""Authentication and the role matrix: refusals are audited, tokens are never recorded."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from gateway.api.auth import AuthFailure, authenticate
from gateway.api.roles import page_policy_of, policy_of
from gateway.schema import load_example
from gateway.settings import User

from testkit.gateway_pair import NIGERIA, eventually
from .test_api_world import api_pair, users_for

SOME_ID = "5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4"
SOME_CASE = "ne-ng-somecase01"

#: The role matrix as docs/api.md states it, written out independently of gateway/api/roles.py.
#: (method, path, body) → roles that get past authorization.
MATRIX = {
    ("POST", "/referrals"): {"caseworker", "supervisor"},
    ("GET", "/inbox"): {"caseworker", "supervisor", "auditor"},
    ("GET", f"/inbox/{SOME_ID}?purpose=check"): {"caseworker", "supervisor"},
    ("POST", f"/inbox/{SOME_ID}/response"): {"caseworker", "supervisor"},
    ("GET", f"/messages/{SOME_ID}"): {"caseworker", "supervisor", "auditor"},
    ("GET", "/messages?local_case_id=NE-LOCAL-1"): {"caseworker", "supervisor"},
    ("POST", f"/cases/{SOME_CASE}/withdrawal"): {"caseworker", "supervisor"},
    ("GET", f"/cases/{SOME_CASE}/withdrawals"): {"caseworker", "supervisor", "auditor"},
    ("GET", "/stats"): {"supervisor", "auditor"},
    ("GET", "/metrics"): {"admin"},
    ("GET", "/quarantine"): {"admin"},
    ("GET", "/audit/entries"): {"auditor"},
    ("GET", "/audit/export"): {"auditor"},
    ("GET", "/audit/checkpoints"): {"auditor"},
    ("GET", "/audit/checkpoints/latest"): {"auditor"},
    ("POST", "/audit/checkpoints"): {"auditor"},
    ("GET", "/audit/proofs/inclusion?seq=1&tree_size=1"): {"auditor"},
    ("GET", "/audit/proofs/consistency?first=1&second=1"): {"auditor"},
    ("GET", f"/audit/cases/{SOME_CASE}"): {"auditor"},
}
PUBLIC = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json"), ("GET", "/auditor"),
          ("GET", "/codes"), ("GET", "/codes/sex")]
ROLES = ("caseworker", "supervisor", "auditor", "admin")


async def _audit(agency, event: str):
    return [a for a in await agency.gateway.store.read_audit(1, 10_000) if a.event_type == event]


async def test_role_matrix(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        for (method, path), allowed in MATRIX.items():
            for role in ROLES:
                body = {"decision": "declined", "decline_reason": "no_capacity"} if method == "POST" else None
                status, answer = await ne.call(method, path, role=role, json=body)
                if role in allowed:
                    assert status not in (401, 403), (method, path, role, answer)
                else:
                    assert (status, answer["error"]) == (403, "forbidden"), (method, path, role)
        for method, path in PUBLIC:
            assert (await ne.call(method, path, role=None))[0] == 200


async def test_every_route_has_an_access_policy(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        # Workspace pages carry a page policy instead (tests/test_workspace_core.py checks them).
        routes = [r for r in ne.client.app.router.routes() if not r.resource.canonical.startswith("/workspace")]
        assert routes and all(policy_of(r.handler) is not None for r in routes)
        pages = [r for r in ne.client.app.router.routes() if r.resource.canonical.startswith("/workspace")]
        assert pages and all(page_policy_of(r.handler) is not None and policy_of(r.handler) is None for r in pages)
        documented = {(m, p.split("?")[0]) for m, p in MATRIX} | set(PUBLIC)
        documented |= {("HEAD", p) for m, p in documented if m == "GET"}  # HEAD works where GET does
        templated = {(r.method, r.resource.canonical.replace("{id}", SOME_ID).replace("{case_ref}", SOME_CASE)
                      .replace("{name}", "sex"))
                     for r in routes}
        assert templated == documented  # a new route needs a row in MATRIX (and in docs/api.md)


async def test_missing_and_wrong_tokens_are_401_and_audited_without_the_token(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        wrong = "wrong-" + ne.tokens["caseworker"][::-1]
        with capture_logs() as logs:
            cases = [
                ({}, "missing_token"),
                ({"Authorization": f"Bearer {wrong}"}, "invalid_token"),
                ({"Authorization": f"Basic {wrong}"}, "malformed_header"),
                ({"Authorization": "Bearer "}, "malformed_header"),
                ({"Authorization": f"Bearer {ng.tokens['caseworker']}"}, "invalid_token"),  # the other agency's
            ]
            for headers, _ in cases:
                status, body = await ne.call("GET", f"/inbox/{SOME_ID}", role=None, headers=headers,
                                             params={"purpose": "x"})
                assert (status, body["error"]) == (401, "unauthorized")
                assert ne.responses[-1][1]["WWW-Authenticate"].startswith("Bearer")
        failed = await _audit(ne, "auth.failed")
        assert [json.loads(a.detail_json) for a in failed] == [
            {"path": "/inbox/{id}", "method": "GET", "reason": reason} for _, reason in cases]
        assert {a.actor for a in failed} == {"anonymous"}
        everything = repr(await ne.gateway.store.read_audit(1, 10_000)) + repr(logs) + repr(ne.responses)
        for token in (wrong, ng.tokens["caseworker"], *ne.tokens.values()):
            assert token not in everything
        assert SOME_ID not in repr(failed)  # the route template, not the raw path


async def test_wrong_role_is_403_and_audited(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        body = {"recipient": NIGERIA, "case_ref": "ne-ng-authcase00001", "payload": load_example("referral.request")}
        status, answer = await ne.call("POST", "/referrals", role="auditor", json=body)
        assert (status, answer["error"]) == (403, "forbidden")
        status, _ = await ne.call("GET", "/metrics", role="caseworker")
        assert status == 403
        forbidden = await _audit(ne, "auth.forbidden")
        assert [(a.actor, json.loads(a.detail_json)) for a in forbidden] == [
            ("auditor.ne-anltp-tim", {"path": "/referrals", "method": "POST", "role": "auditor",
                                      "permission": "submit"}),
            ("caseworker.ne-anltp-tim", {"path": "/metrics", "method": "GET", "role": "caseworker",
                                         "permission": "operate"}),
        ]
        assert all(t not in repr(forbidden) for t in ne.tokens.values())
        assert await _audit(ne, "message.created") == []  # nothing was queued


async def test_auditor_and_admin_never_get_plaintext(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        body = {"recipient": NIGERIA, "case_ref": "ne-ng-authcase00002", "payload": load_example("referral.request")}
        status, queued = await ne.call("POST", "/referrals", json=body)
        assert status == 202
        mid = queued["message_id"]
        async def arrived() -> bool:
            _, page = await ng.call("GET", "/inbox", role="auditor")
            return any(i["message_id"] == mid for i in page["items"])
        await eventually(arrived)
        for role in ("auditor", "admin"):
            status, answer = await ng.call("GET", f"/inbox/{mid}", role=role, params={"purpose": "curiosity"})
            assert status == 403 and "payload" not in answer
        # The auditor's listing is metadata only.
        _, page = await ng.call("GET", "/inbox", role="auditor")
        assert set(page["items"][0]) == {"message_id", "sender", "type", "case_ref", "received_at", "status"}
        assert all("Testfixture" not in text for _, _, text in ng.responses)
        assert [a for a in await _audit(ng, "message.read")] == []  # refused reads decrypt nothing


def test_authenticate_decides_without_io() -> None:
    tokens, users = users_for("NE-ANLTP-TIM")
    assert authenticate(None, users) is AuthFailure.MISSING
    assert authenticate("Bearer", users) is AuthFailure.MALFORMED
    assert authenticate("Token abc", users) is AuthFailure.MALFORMED
    assert authenticate("Bearer " + "a" * 600, users) is AuthFailure.MALFORMED
    assert authenticate("Bearer nope", users) is AuthFailure.INVALID
    found = authenticate(f"bearer {tokens['auditor']}", users)
    assert isinstance(found, User) and found.role == "auditor"


@pytest.mark.parametrize("role", ["caseworker", "supervisor"])
async def test_case_roles_may_submit(tmp_path, role) -> None:
    async with api_pair(tmp_path) as (ne, _):
        body = {"recipient": NIGERIA, "case_ref": "ne-ng-authcase00003", "payload": load_example("referral.request")}
        status, _ = await ne.call("POST", "/referrals", role=role, json=body)
        assert status == 202
        created = await _audit(ne, "message.created")
        assert [a.actor for a in created] == [f"{role}.ne-anltp-tim"]
