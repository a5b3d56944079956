"""Directory distribution (issue 12, part 1) on the in-process broker: hot reload, revocation,
rollback refused (broker and restart), bad signatures refused and audited, nothing lost."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache as _cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from nacl.signing import SigningKey
from structlog.testing import capture_logs

from gateway import keyfile
from gateway.clock import format_ts, utcnow
from gateway.bootstrap import StartupError, open_gateway
from gateway.demo_identities import demo_authority_key, demo_directory_document, demo_identity
from gateway.directory import directory_digest, sign_directory
from gateway.envelope import seal
from gateway.schema import load_example
from gateway.service import Actor
from gateway.store import StoreUnavailableError
from gateway.transport import Delivery, MemoryBroker
from gateway.transport import directory_feed
from gateway.transport.directory_feed import publish_directory_memory

from testkit.gateway_pair import NIGER, NIGERIA, eventually, gateway_pair, settings_for
from tests.support.hypothesis_profiles import scaled

WORKER = Actor("amina.caseworker", "caseworker")
CANARY = "Canary Amadou-Okafor"


def signed_directory(serial: int, *, revoke: tuple[str, ...] = (), key: SigningKey | None = None,
                     name: str | None = None, issued: str | None = None) -> bytes:
    """The demo directory with another serial (and revocations), signed by the demo authority."""
    doc: dict[str, Any] = demo_directory_document()
    doc["serial"] = serial
    if issued:
        doc["issued"] = issued
    if name:
        doc["agencies"][0]["name"] = name
    doc["revocations"] = [{"kid": kid, "revoked_at": "2026-06-01T00:00:00Z", "reason": "compromised"}
                          for kid in revoke]
    return sign_directory(doc, key or demo_authority_key())


def exchange_of(gw) -> str:
    return gw.settings.exchange + ".directory"


async def audited(gw, event: str) -> list[dict[str, Any]]:
    return [json.loads(a.detail_json) for a in await gw.store.read_audit(1, 10_000) if a.event_type == event]


async def test_a_revocation_reaches_running_gateways_within_seconds(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        broker = ne.transport.broker
        old_directory = ng.directory
        ne_sig = demo_identity(NIGER).signing_kid
        assert ng.directory.serial == 1

        started = time.perf_counter()
        publish_directory_memory(broker, exchange_of(ng), signed_directory(2, revoke=(ne_sig,)))
        await eventually(lambda: _serial_is(ng, 2), timeout=5)
        await eventually(lambda: _serial_is(ne, 2), timeout=5)
        elapsed = time.perf_counter() - started
        assert elapsed < 5

        # A message signed with the revoked key (its sender still trusts the old directory) is quarantined.
        header, envelope = seal(load_example("referral.request"), message_type="referral.request",
                                sender=ne.identity, recipient=NIGERIA, directory=old_directory,
                                case_ref="ne-ng-dircase00001", now=ng.clock())
        await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, envelope, {}, False))
        assert [(q.message_id, q.reason_code) for q in await ng.transport.list_quarantine(10)] == \
            [(header.id, "key_revoked")]
        assert await ng.list_inbox() == []
        # And NE's own gateway no longer signs with it.
        with pytest.raises(Exception) as refused:
            await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                            case_ref="ne-ng-dircase00002", actor=WORKER)
        assert getattr(refused.value, "code", "") == "key_revoked"

        updated = await audited(ng, "directory.updated")
        assert updated[-1]["serial"] == 2 and updated[-1]["previous_serial"] == 1
        assert updated[-1]["source"] == "broker"
        assert updated[-1]["digest"] == directory_digest(signed_directory(2, revoke=(ne_sig,)))
        assert ng.directory_status()["serial"] == 2
        metrics = ng.metrics.render()
        assert "gateway_directory_serial 2\n" in metrics and "gateway_directory_updates_total 1" in metrics
        assert broker.queue_length(ng.directory_feed.names.queue) == 0  # acked


async def _serial_is(gw, serial: int) -> bool:
    return gw.directory.serial == serial


async def test_rollbacks_and_forgeries_are_refused_audited_and_acked(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        broker = ne.transport.broker
        current = signed_directory(3)
        publish_directory_memory(broker, exchange_of(ng), current)
        await eventually(lambda: _serial_is(ng, 3), timeout=5)
        with capture_logs() as logs:
            for data in (
                current,  # the same publication again: nothing happens
                signed_directory(3, name=CANARY),  # same serial, other content
                signed_directory(2),  # older
                signed_directory(9, key=SigningKey.generate()),  # not the pinned authority
                signed_directory(9)[:-30] + b"}}",  # broken JSON
                signed_directory(9).replace(b'"serial":9', b'"serial":10'),  # tampered after signing
            ):
                publish_directory_memory(broker, exchange_of(ng), data)
            await eventually(lambda: _refusals(ng, 5), timeout=5)
        assert ng.directory.serial == 3
        refused = await audited(ng, "directory.refused")
        assert [(r["reason"], r["serial"]) for r in refused] == [
            ("rollback", 3), ("rollback", 2), ("bad_signature", 9), ("malformed", None), ("bad_signature", 10)]
        assert all(r["current_serial"] == 3 and r["source"] == "broker" for r in refused)
        assert len(await audited(ng, "directory.updated")) == 2  # the start (file) and serial 3
        assert broker.queue_length(ng.directory_feed.names.queue) == 0
        assert CANARY not in json.dumps(logs) and CANARY not in json.dumps(refused)
        assert 'reason="rollback"' in ng.metrics.render()


async def _refusals(gw, count: int) -> bool:
    return len(await audited(gw, "directory.refused")) >= count


async def test_restart_with_an_older_file_keeps_the_newer_directory(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        publish_directory_memory(ne.transport.broker, exchange_of(ng), signed_directory(4))
        await eventually(lambda: _serial_is(ng, 4), timeout=5)
    # The file on disk is still the demo directory, serial 1.
    broker = MemoryBroker()
    settings = settings_for(NIGERIA, tmp_path, transport="memory")
    gw = await open_gateway(settings, broker=broker)
    try:
        assert gw.directory.serial == 4
        refused = await audited(gw, "directory.refused")
        assert refused[-1] == {"reason": "rollback", "serial": 1, "current_serial": 4, "source": "file"}
    finally:
        await gw.store.close()

    # A newer file is taken at start-up (and recorded).
    newer = tmp_path / "directory-5.json"
    newer.write_bytes(signed_directory(5))
    gw = await open_gateway(replace(settings, directory_path=newer), broker=broker)
    try:
        assert gw.directory.serial == 5
        assert (await audited(gw, "directory.updated"))[-1] == {
            "serial": 5, "digest": directory_digest(newer.read_bytes()), "previous_serial": 4, "source": "file"}
    finally:
        await gw.store.close()

    # Equal serial, other bytes: refused like an older one.
    twin = tmp_path / "directory-5b.json"
    twin.write_bytes(signed_directory(5, name="Another name"))
    gw = await open_gateway(replace(settings, directory_path=twin), broker=broker)
    try:
        assert gw.directory.serial == 5 and gw.directory_keeper.current.digest == directory_digest(newer.read_bytes())
    finally:
        await gw.store.close()


async def test_start_is_refused_when_the_stored_newer_directory_no_longer_verifies(tmp_path: Path) -> None:
    settings = settings_for(NIGERIA, tmp_path, transport="memory")
    gw = await open_gateway(settings, broker=MemoryBroker())
    await gw.store.close()
    newer = tmp_path / "directory-7.json"
    newer.write_bytes(signed_directory(7))
    gw = await open_gateway(replace(settings, directory_path=newer), broker=MemoryBroker())
    await gw.store.close()
    # A new authority key is pinned, and its first directory has a lower serial.
    other = SigningKey.generate()
    pub = tmp_path / "other.pub.json"
    pub.write_text(json.dumps(keyfile.authority_public_document("DEMO-AUTHORITY", bytes(other.verify_key))))
    lower = tmp_path / "directory-other.json"
    lower.write_bytes(signed_directory(2, key=other))
    with pytest.raises(StartupError) as exc:
        await open_gateway(replace(settings, directory_path=lower, authority_key_path=pub), broker=MemoryBroker())
    assert exc.value.code == "directory_rollback"
    assert "serial 8 or higher" in str(exc.value)


async def test_a_gateway_down_during_a_publish_takes_it_when_it_comes_back(tmp_path: Path) -> None:
    broker = MemoryBroker()
    settings = settings_for(NIGERIA, tmp_path, transport="memory")
    gw = await open_gateway(settings, broker=broker)
    await gw.start()
    await gw.wait_ready(10)
    await eventually(lambda: _queue_exists(broker, gw.directory_feed.names.queue), timeout=5)
    queue = gw.directory_feed.names.queue
    await gw.stop()
    await gw.store.close()

    publish_directory_memory(broker, settings.exchange + ".directory", signed_directory(6))
    assert broker.queue_length(queue) == 1  # waiting in the durable queue

    gw = await open_gateway(settings, broker=broker)
    assert gw.directory.serial == 1
    await gw.start()
    try:
        await eventually(lambda: _serial_is(gw, 6), timeout=5)
        assert broker.queue_length(queue) == 0
    finally:
        await gw.stop()
        await gw.store.close()


async def _queue_exists(broker: MemoryBroker, name: str) -> bool:
    try:
        broker.queue_length(name)
    except KeyError:
        return False
    return True


async def test_a_store_outage_returns_the_publication_to_the_queue(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory_feed, "RETRY_SECONDS", 0.05)
    async with gateway_pair(tmp_path) as (ne, ng):
        real = ng.store.accept_directory
        calls = 0

        async def flaky(*args: Any, **kwargs: Any) -> bool:
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise StoreUnavailableError("store down for a moment")
            return await real(*args, **kwargs)

        monkeypatch.setattr(ng.store, "accept_directory", flaky)
        publish_directory_memory(ne.transport.broker, exchange_of(ng), signed_directory(2))
        await eventually(lambda: _serial_is(ng, 2), timeout=5)
        assert calls == 3
        assert [u["serial"] for u in await audited(ng, "directory.updated")] == [1, 2]


async def test_another_process_of_the_agency_accepted_a_newer_directory(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        # What another process sharing this store does when it takes a publication.
        from gateway.directory_updates import DirectoryKeeper

        other = DirectoryKeeper(ng.store, ng.directory_keeper.authority_keys, agency_id=NIGERIA,
                                allow_demo=True, clock=ng.clock)
        await other.startup(_demo_file())
        assert (await other.offer(signed_directory(8), "broker")).outcome == "updated"
        assert ng.directory.serial == 1
        await ng.check_directory()
        assert ng.directory.serial == 8


def _demo_file() -> bytes:
    from testkit.gateway_pair import ROOT

    return (ROOT / "keys" / "demo" / "directory.json").read_bytes()


async def test_freshness_is_reported_and_warned_about(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path, directory_max_age_hours=24.0) as (ne, ng):
        publish_directory_memory(ne.transport.broker, exchange_of(ng), signed_directory(2, issued=_hours_ago(ng, 1)))
        await eventually(lambda: _serial_is(ng, 2), timeout=5)
        status = ng.directory_status()
        assert not status["stale"] and 3500 <= status["age_seconds"] <= 3700
        assert "gateway_directory_stale 0\n" in ng.metrics.render()

        publish_directory_memory(ne.transport.broker, exchange_of(ng), signed_directory(3, issued=_hours_ago(ng, 30)))
        await eventually(lambda: _serial_is(ng, 3), timeout=5)
        with capture_logs() as logs:
            await ng.check_directory()
            await ng.check_directory()
        assert ng.directory_status()["stale"] is True
        assert "gateway_directory_stale 1\n" in ng.metrics.render()
        assert [entry["event"] for entry in logs if entry["event"] == "directory.stale"] == ["directory.stale"]
        stale = [(s["serial"], s["age_hours"]) for s in await audited(ng, "directory.stale")]
        assert stale[0][0] == 1 and stale[1:] == [(3, 30.0)]  # the demo file at start, then once per serial


def _hours_ago(gw, hours: int) -> str:
    return format_ts(gw.clock() - timedelta(hours=hours))


async def test_readyz_shows_the_directory_and_stays_ready_when_stale(tmp_path: Path) -> None:
    from tests.test_api_world import api_pair, assert_conforms

    async with api_pair(tmp_path) as (ne, _):
        gw = ne.gateway
        doc = (await ne.call("GET", "/openapi.json", role=None))[1]
        # The committed demo directory was issued long before the default 168 hours.
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 200 and body["status"] == "ready" and body["warnings"] == ["directory_stale"]
        assert body["directory"]["serial"] == 1 and body["directory"]["stale"] is True
        assert body["directory"]["digest"] == gw.directory_keeper.current.digest
        assert_conforms(doc, "/readyz", "GET", 200, body)

        publish_directory_memory(gw.transport.broker, exchange_of(gw), signed_directory(2, issued=_hours_ago(gw, 2)))
        await eventually(lambda: _serial_is(gw, 2), timeout=5)
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 200 and "warnings" not in body
        assert body["directory"]["serial"] == 2 and 7100 <= body["directory"]["age_seconds"] <= 7300
        assert_conforms(doc, "/readyz", "GET", 200, body)
        gw.transport.broker.available = False
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 503 and body["directory"]["serial"] == 2
        assert_conforms(doc, "/readyz", "GET", 503, body)
        gw.transport.broker.available = True


async def test_a_withdrawal_acknowledgement_that_failed_is_sent_once_a_directory_allows_it(tmp_path: Path) -> None:
    from tests.test_withdrawal import CASE, WITHDRAWAL

    async with gateway_pair(tmp_path) as (ne, ng):
        referral = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                   case_ref=CASE, actor=WORKER)
        await eventually(lambda: _has_incoming(ng, referral.id))
        # NG's directory lists no encryption key of NE: nothing can be sealed to NE.
        agency = ng.directory.agency(NIGER)
        ng.directory = replace(ng.directory, agencies={
            **ng.directory.agencies, NIGER: replace(agency, keys=tuple(k for k in agency.keys if k.use != "enc"))})
        (withdrawal,) = (await ne.withdraw_consent(CASE, WITHDRAWAL, actor=WORKER)).headers
        await eventually(lambda: _audited_any(ng, "consent.withdrawal_ack_failed"))
        assert (await ne.outgoing_status(withdrawal.id))[0].status != "accepted"

        # The authority publishes a directory with NE's keys: the acknowledgement goes out now.
        publish_directory_memory(ng.transport.broker, exchange_of(ng), signed_directory(2))

        async def acknowledged() -> bool:
            return (await ne.outgoing_status(withdrawal.id))[0].status == "accepted"

        await eventually(acknowledged, timeout=5)
        assert ng.directory.serial == 2


async def _has_incoming(gw, message_id: str) -> bool:
    return await gw.store.get_incoming(message_id) is not None


async def _audited_any(gw, event: str) -> bool:
    return bool(await audited(gw, event))


# --- the serial rule as a property: whatever arrives in whatever order, and restarts -----------



@_cache
def _variant(serial: int, variant: int) -> bytes:
    return signed_directory(serial, name=None if variant == 0 else f"Variant {variant}")


_OPS = st.lists(st.tuples(st.sampled_from(["offer", "restart"]), st.integers(1, 6), st.integers(0, 1)),
                min_size=1, max_size=12)


@hsettings(max_examples=scaled(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_the_serial_in_force_only_goes_up_whatever_the_order(tmp_path_factory, ops) -> None:
    from gateway.directory_updates import DirectoryKeeper
    from gateway.store import open_store

    path = tmp_path_factory.mktemp("serials") / "gw.db"
    key = bytes(demo_authority_key().verify_key)

    async def run() -> None:
        store = await open_store(f"sqlite:///{path}")
        keeper = DirectoryKeeper(store, (key,), agency_id=NIGERIA, allow_demo=True, clock=_now)
        await keeper.startup(_variant(1, 0))
        in_force = (1, directory_digest(_variant(1, 0)))
        try:
            for op, serial, variant in ops:
                data = _variant(serial, variant)
                if op == "restart":
                    await store.close()
                    store = await open_store(f"sqlite:///{path}")
                    keeper = DirectoryKeeper(store, (key,), agency_id=NIGERIA, allow_demo=True, clock=_now)
                    directory = await keeper.startup(data)
                    if serial > in_force[0]:
                        in_force = (serial, directory_digest(data))
                    assert (directory.serial, keeper.current.digest) == in_force
                    continue
                offer = await keeper.offer(data, "broker")
                if serial > in_force[0]:
                    assert offer.outcome == "updated"
                    in_force = (serial, directory_digest(data))
                elif (serial, directory_digest(data)) == in_force:
                    assert offer.outcome == "unchanged"
                else:
                    assert (offer.outcome, offer.reason) == ("refused", "rollback")
                assert (keeper.current.directory.serial, keeper.current.digest) == in_force
            stored = await store.current_directory()
            assert stored is not None and (stored.serial, stored.digest) == in_force
        finally:
            await store.close()

    asyncio.run(run())


def _now() -> datetime:
    return utcnow()


@hsettings(max_examples=scaled(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), value=st.integers(0, 255), junk=st.binary(max_size=64))
def test_whatever_arrives_on_the_feed_is_refused_or_taken_never_raised(tmp_path_factory, position, value,
                                                                       junk) -> None:
    from gateway.directory_updates import DirectoryKeeper
    from gateway.store import open_store

    good = _variant(2, 0)
    at = position % (len(good) - 1)  # not the final newline: whitespace outside the JSON is not signed
    mutated = good[:at] + bytes([value]) + good[at + 1:]
    path = tmp_path_factory.mktemp("feed") / "gw.db"

    async def run() -> None:
        store = await open_store(f"sqlite:///{path}")
        try:
            keeper = DirectoryKeeper(store, (bytes(demo_authority_key().verify_key),), agency_id=NIGERIA,
                                     allow_demo=True, clock=_now)
            await keeper.startup(_variant(1, 0))
            held = 1
            for data in (junk, mutated, good[:at]):
                offer = await keeper.offer(data, "broker")
                if data == good:
                    # the "mutation" may rewrite a byte with itself: then it is the genuine file
                    assert offer.outcome == "updated"
                    held = 2
                else:
                    assert offer.outcome == "refused" and offer.reason in {"bad_signature", "malformed"}
                assert keeper.current.directory.serial == held
        finally:
            await store.close()

    asyncio.run(run())
