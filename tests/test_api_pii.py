"""No personal data leaves through logs, metrics, headers, errors or the audit log.

A referral for a person with a unique name goes through the whole HTTP flow (including
refused and failing requests); the name must then appear only where it belongs: in the
decrypted payload answered to an authorised reader.
"""

from __future__ import annotations

import json
import logging

from structlog.testing import capture_logs

from gateway.schema import load_example

from testkit.gateway_pair import NIGERIA, eventually
from .test_api_world import api_pair

GIVEN, FAMILY = "Zyxwvuta", "Qwertyfixture"
NEEDLES = (GIVEN, FAMILY)


def _referral() -> dict:
    payload = load_example("referral.request")
    payload["person"]["names"] = {"given": GIVEN, "family": FAMILY}
    return payload


def _clean(text: str) -> bool:
    return not any(n.lower() in text.lower() for n in NEEDLES)


async def test_a_unique_name_appears_nowhere_but_the_authorised_read(tmp_path, caplog, capsys, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    async with api_pair(tmp_path) as (ne, ng):
        with capture_logs() as logs:
            body = {"recipient": NIGERIA, "case_ref": "ne-ng-piicase000001", "payload": _referral()}
            status, queued = await ne.call("POST", "/referrals", json=body)
            assert status == 202
            mid = queued["message_id"]

            # Refused and failing submissions that carry the name.
            invalid = _referral()
            invalid["person"]["sex"] = GIVEN  # a name where a code belongs
            invalid["nickname"] = FAMILY  # and as the value of an unexpected property
            status, answer = await ne.call("POST", "/referrals", json={**body, "payload": invalid})
            assert status == 422 and {"$.person.sex", "$"} <= {v["path"] for v in answer["violations"]}
            assert "nickname" not in json.dumps(answer)  # an unknown member name is not echoed either
            status, _ = await ne.call("POST", "/referrals", json={**body, "recipient": "NE-IOM"})
            assert status == 422  # NE-IOM refuses the safety_assessment purpose
            status, _ = await ne.call("POST", "/referrals", role="auditor", json=body)
            assert status == 403
            status, _ = await ne.call("POST", "/referrals", role=None, json=body)
            assert status == 401
            status, _ = await ne.call("POST", "/referrals", data=json.dumps(body)[:-3],
                                      headers={"Content-Type": "application/json"})
            assert status == 400

            async def explode(*args, **kwargs):
                raise RuntimeError(f"unexpected failure about {GIVEN} {FAMILY}")
            monkeypatch.setattr(ne.gateway, "submit", explode)
            status, answer = await ne.call("POST", "/referrals", json=body)
            assert (status, answer["error"]) == (500, "internal_error")
            monkeypatch.undo()

            async def arrived() -> bool:
                _, page = await ng.call("GET", "/inbox")
                return any(i["message_id"] == mid for i in page["items"])
            await eventually(arrived)
            purpose = "family_tracing"
            status, opened = await ng.call("GET", f"/inbox/{mid}", params={"purpose": purpose})
            assert status == 200 and opened["payload"]["person"]["names"]["given"] == GIVEN  # the needle is real
            status, _ = await ng.call("GET", f"/inbox/{mid}", role="auditor", params={"purpose": purpose})
            assert status == 403
            decision = {"decision": "accepted", "accepted_purposes": ["safety_assessment"]}
            assert (await ng.call("POST", f"/inbox/{mid}/response", json=decision))[0] == 202

            async def accepted() -> bool:
                return (await ne.call("GET", f"/messages/{mid}"))[1]["status"] == "accepted"
            await eventually(accepted)
            metrics = [(await a.call("GET", "/metrics", role="admin"))[1] for a in (ne, ng)]
            quarantine = [(await a.call("GET", "/quarantine", role="admin"))[1] for a in (ne, ng)]

        # Logs: structlog events (all levels), stdlib records, anything printed.
        events = {e["event"] for e in logs}
        assert {"http.request", "http.unhandled", "message.queued", "message.received"} <= events
        assert _clean(json.dumps(logs, default=str))
        assert _clean("\n".join(r.getMessage() + str(r.args) + str(r.exc_text) for r in caplog.records))
        captured = capsys.readouterr()
        assert _clean(captured.out + captured.err)
        # Query strings (the read purpose) stay out of the access log.
        assert "purpose=" not in json.dumps(logs, default=str)
        # Metrics and the quarantine listing.
        assert all(isinstance(m, str) and "gateway_http_requests_total" in m and _clean(m) for m in metrics)
        assert _clean(json.dumps(quarantine))
        # Every response header; every response body except the one authorised read.
        for agency in (ne, ng):
            for status, headers, text in agency.responses:
                assert _clean(json.dumps(headers))
                if not (agency is ng and status == 200 and '"payload"' in text):
                    assert _clean(text), text[:300]
        # The audit logs of both agencies, every column.
        for agency in (ne, ng):
            entries = await agency.gateway.store.read_audit(1, 10_000)
            assert entries
            assert _clean(repr(entries) + "".join(e.detail_json for e in entries))
        # And the stored envelopes are ciphertext.
        record = await ne.gateway.store.get_outgoing(mid)
        assert all(n.encode() not in record.envelope for n in NEEDLES)
