"""Quarantine copies under hostile input and re-drives (security review 12, L5 and L2)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.clock import utcnow
from gateway.envelope import seal
from gateway.quarantine_vault import sealed_key_id
from gateway.schema import load_example
from gateway.transport import Delivery

from testkit.gateway_pair import NIGER, NIGERIA, eventually, gateway_pair

CANARY = "CanaryKeyIdAmadouOkafor"


@pytest.mark.parametrize("key_id", [b"", CANARY.encode() * 11, b"case-../../etc", b"case-" + b"A" * 36])
async def test_a_forged_quarantine_format_is_refused_as_malformed_without_echoing_it(
        tmp_path: Path, key_id: bytes) -> None:
    body = b"RGQ1" + bytes([len(key_id[:255])]) + key_id[:255] + b"\x00" * 40
    assert sealed_key_id(body) is None
    async with gateway_pair(tmp_path) as (ne, ng):
        with capture_logs() as logs:
            await ng.handle_delivery(Delivery("forged-rgq1", NIGER, NIGERIA, body, {}, False))
        (entry,) = await ng.transport.list_quarantine(10)
        assert entry.reason_code == "malformed"
        assert CANARY not in repr(entry) and CANARY not in repr(logs)
        assert CANARY not in repr([a.detail_json for a in await ng.store.read_audit(1, 10_000)])


async def test_a_redriven_copy_quarantined_again_stays_under_its_first_days_key(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header, envelope = seal(load_example("referral.request"), message_type="referral.request",
                                sender=ne.identity, recipient=NIGERIA, directory=ne.directory,
                                case_ref="ne-ng-redrive0001", now=utcnow())
        tampered = envelope.replace(b'"signature":"', b'"signature":"A', 1)
        await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, tampered, {}, False))
        (first,) = await ng.transport.list_quarantine(10)
        first_key = first.headers.get("rgw-quarantine-key")
        assert first_key
        ng.clock = lambda: utcnow() + timedelta(days=1)  # the operator re-drives it the next day
        assert await ng.transport.redrive(header.id)

        async def requarantined() -> bool:
            return any(q.message_id == header.id for q in await ng.transport.list_quarantine(10))

        await eventually(requarantined)
        (again,) = await ng.transport.list_quarantine(10)
        assert again.reason_code == first.reason_code
        assert again.headers.get("rgw-quarantine-key") == first_key
