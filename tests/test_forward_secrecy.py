"""Forward secrecy (issue 12, part 3): short-lived encryption keys destroyed once no message
sealed to them can be valid, outbox bodies deleted once delivered or withdrawn, quarantined
bodies under keys that retention destroys. docs/keys.md, docs/consent.md."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import AsyncIterator

import pytest
from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from nacl.signing import SigningKey

from gateway import keyfile
from gateway.b64 import b64url_decode
from gateway.bootstrap import open_gateway
from gateway.cli import main as cli_main
from gateway.clock import format_ts, utcnow
from gateway.demo_identities import NOT_AFTER, NOT_BEFORE, demo_directory_document, demo_seed
from gateway.directory import sign_directory
from gateway.envelope import parse_envelope, seal
from gateway.key_lifecycle import destruction_due
from gateway.outbox_body import body_sha256, is_deleted, outbox_header
from gateway.schema import load_example
from gateway.schema_versions import upgrade_to_v2
from gateway.service import Actor, Gateway
from gateway.store import AuditQuery
from gateway.transport import Delivery, MemoryBroker, WireMessage
from gateway.clock import parse_ts

from testkit.gateway_pair import NIGER, NIGERIA, eventually, settings_for

WORKER = Actor("amina.caseworker", "caseworker")
OFFICER = Actor("officer.ng", "caseworker")
WITHDRAWAL = {"withdrawn_at": "2026-11-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
              "erasure_requested": True}
PERIOD = timedelta(days=7)
LIFETIME_AND_SKEW = timedelta(days=30, minutes=5)
GRACE = timedelta(days=1)


class Clock:
    """The injectable clock of both gateways: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


def _enc_keys(start: datetime, count: int) -> list[keyfile.KeyPair]:
    keys, begin = [], start
    for _ in range(count):
        keys.append(keyfile.generate_key(NIGERIA, "enc", not_before=begin, not_after=begin + PERIOD))
        begin += PERIOD
    return keys


@asynccontextmanager
async def short_key_world(tmp: Path, *, held_late: bool = True) -> AsyncIterator[tuple[Gateway, Gateway, list, Clock, list]]:
    """NE (demo keys) and NG, whose encryption keys are 7-day keys in a key directory,
    published ahead in a directory signed by a fresh authority. ``held_late=False``: NG's key
    directory lacks the second key at first (an operator who forgot to install it)."""
    t0 = utcnow()
    enc = _enc_keys(t0 - timedelta(days=1), 12)
    key_dir = tmp / "ng-keys"
    key_dir.mkdir()
    sig = keyfile.KeyPair(NIGERIA, "sig", demo_seed(NIGERIA, "sig"), parse_ts(NOT_BEFORE), parse_ts(NOT_AFTER))
    for pair in [sig, *(k for i, k in enumerate(enc) if held_late or i != 1)]:
        keyfile.write_key_file(keyfile.key_path(key_dir, pair), pair)
    document = demo_directory_document()
    for agency in document["agencies"]:
        if agency["id"] == NIGERIA:
            agency["keys"] = [k for k in agency["keys"] if k["use"] == "sig"] + [keyfile.public_entry(k) for k in enc]
    authority = SigningKey.generate()
    (tmp / "directory.json").write_bytes(sign_directory(document, authority))
    (tmp / "authority.pub.json").write_text(json.dumps(keyfile.authority_public_document(
        document["authority"], bytes(authority.verify_key))))
    broker, clock, published = MemoryBroker(), Clock(), []
    gateways = []
    for agency, own in ((NIGER, {}), (NIGERIA, {"demo_keys": False, "key_dir": key_dir})):
        settings = dataclasses.replace(settings_for(agency, tmp, transport="memory", run_id="fs"), **own,
                                       directory_path=tmp / "directory.json",
                                       authority_key_path=tmp / "authority.pub.json")
        gw = await open_gateway(settings, broker=broker)
        gw.clock = clock
        gateways.append(gw)
    ne, ng = gateways
    original_publish = ne.transport.publish

    async def capturing_publish(message: WireMessage) -> None:
        await original_publish(message)
        published.append(message.body)  # what the broker (or its backup) now holds a copy of

    ne.transport.publish = capturing_publish  # type: ignore[method-assign]
    try:
        for gw in gateways:
            await gw.start()
            await gw.wait_ready(30)
        yield ne, ng, enc, clock, published
    finally:
        for gw in gateways:
            await gw.stop()
            await gw.store.close()


async def _status(gw: Gateway, message_id: str, status: str) -> None:
    async def check() -> bool:
        record = await gw.store.get_outgoing(message_id)
        return record is not None and record.status == status
    await eventually(check)


async def _audit(gw: Gateway, event: str) -> list:
    return await gw.store.query_audit(AuditQuery(event_types=(event,)), 1000)


def _opens_with(envelope: bytes, private_keys) -> bool:
    _, ciphertext, _ = parse_envelope(envelope)
    for key in private_keys:
        try:
            SealedBox(key).decrypt(ciphertext)
        except CryptoError:
            continue
        return True
    return False


async def test_withdrawn_copies_open_with_no_key_the_receiver_still_holds(tmp_path, capsys) -> None:
    async with short_key_world(tmp_path) as (ne, ng, enc, clock, published):
        first = enc[0]
        withdrawn = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                    case_ref="ne-ng-fsecrecy0001", actor=WORKER)
        kept = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                               case_ref="ne-ng-fsecrecy0002", actor=WORKER)
        assert withdrawn.enc_kid == kept.enc_kid == first.kid  # the key valid at sealing time
        await _status(ne, withdrawn.id, "delivered")
        await _status(ne, kept.id, "delivered")
        broker_copy = next(body for body in published if parse_envelope(body)[0].id == withdrawn.id)
        assert _opens_with(broker_copy, ng.identity.encryption_keys.values())  # before: readable

        # The signed receipt came: the sender keeps the digest and the header, not the body.
        outbox = await ne.store.get_outgoing(withdrawn.id)
        assert is_deleted(outbox.envelope) and body_sha256(outbox.envelope) == hashlib.sha256(broker_copy).hexdigest()
        assert outbox_header(outbox.envelope) == withdrawn
        assert parse_envelope(broker_copy)[1] not in outbox.envelope
        (deleted,) = [e for e in await _audit(ne, "message.body_deleted") if e.message_id == withdrawn.id]
        assert json.loads(deleted.detail_json) == {"digest": hashlib.sha256(broker_copy).hexdigest(),
                                                   "reason": "delivered"}
        _, trail = await ne.outgoing_status(withdrawn.id)
        assert [s for s, _ in trail] == ["queued", "sent", "delivered"]

        result = await ne.withdraw_consent("ne-ng-fsecrecy0001", WITHDRAWAL, actor=WORKER)
        (withdrawal,) = result.headers
        await _status(ne, withdrawal.id, "accepted")  # the acknowledgement arrived

        # Key period + lifetime (+ skew + grace) pass: the retention pass destroys the first key.
        due = destruction_due(first.not_after, max_lifetime=timedelta(days=30), skew=timedelta(minutes=5), grace=GRACE)
        clock.offset = due - utcnow() + timedelta(minutes=1)
        await ng.apply_retention()
        assert first.kid not in ng.identity.encryption_keys
        assert not keyfile.key_path(tmp_path / "ng-keys", first).exists()
        on_disk = [p.private_key() for p in keyfile.read_key_dir(tmp_path / "ng-keys") if p.use == "enc"]
        for copy in (broker_copy, (await ne.store.get_outgoing(withdrawn.id)).envelope):
            if is_deleted(copy):
                assert parse_envelope(broker_copy)[1] not in copy  # nothing sealed is left to open
                continue
            assert not _opens_with(copy, ng.identity.encryption_keys.values())
            assert not _opens_with(copy, on_disk)

        (destroyed,) = await _audit(ng, "key.destroyed")
        detail = json.loads(destroyed.detail_json)
        assert detail["kid"] == first.kid and detail["not_after"] == format_ts(first.not_after)
        assert isinstance(detail["case_keys_rewrapped"], int)
        text = destroyed.detail_json
        assert keyfile.public_entry(first)["public_key"] not in text and first.secret.hex() not in text

        # Nothing is lost for what the receiver keeps: the other case's referral still reads.
        opened = await ng.read_incoming(kept.id, actor=OFFICER, purpose="safety_assessment")
        # (the demo agencies negotiate schema v2, so it arrived upgraded)
        assert opened.payload == upgrade_to_v2(load_example("referral.request"), "referral.request",
                                               recipient=NIGERIA, recipient_country="NG").payload

        # A copy sealed to the destroyed key arriving late is quarantined with its own reason.
        late_header, late = seal(load_example("referral.request"), message_type="referral.request",
                                 sender=ne.identity, recipient=NIGERIA, directory=ne.directory,
                                 case_ref="ne-ng-fsecrecy0003", now=first.not_before + timedelta(hours=1))
        assert late_header.enc_kid == first.kid
        await ng.handle_delivery(Delivery(late_header.id, NIGER, NIGERIA, late, {}, False))
        reasons = {e.message_id: json.loads(e.detail_json)["reason"] for e in await _audit(ng, "message.quarantined")}
        assert reasons[late_header.id] == "enc_key_destroyed"

        # A key file restored from a backup is destroyed again, and a restart (a fresh
        # identity from the key directory) learns from the audit log what was destroyed.
        keyfile.write_key_file(keyfile.key_path(tmp_path / "ng-keys", first), first)
        await ng.apply_retention()
        assert not keyfile.key_path(tmp_path / "ng-keys", first).exists()
        keyfile.write_key_file(keyfile.key_path(tmp_path / "ng-keys", first), first)
        fresh = keyfile.load_identity(tmp_path / "ng-keys", at=clock(), agency_id=NIGERIA)
        assert first.kid in fresh.encryption_keys
        await dataclasses.replace(ng._encryption_keys(), identity=fresh).remember_destroyed()
        assert first.kid not in fresh.encryption_keys and first.kid in fresh.destroyed_encryption_kids

        # No personal data in any log line or audit entry of all this.
        logged = capsys.readouterr().out
        entries = " ".join([e.detail_json for e in await ne.store.read_audit(1, 10_000)]
                           + [e.detail_json for e in await ng.store.read_audit(1, 10_000)])
        for name in ("Amaka", "Testfixture", "Ngozi"):
            assert name not in logged and name not in entries


async def test_rollover_with_messages_in_flight_loses_nothing(tmp_path) -> None:
    async with short_key_world(tmp_path) as (ne, ng, enc, clock, _):
        first, second = enc[0], enc[1]
        before, after = first.not_after - timedelta(minutes=1), first.not_after + timedelta(minutes=1)
        sealed = []
        for i, moment in enumerate((before, after)):
            header, envelope = seal(load_example("referral.request"), message_type="referral.request",
                                    sender=ne.identity, recipient=NIGERIA, directory=ne.directory,
                                    case_ref=f"ne-ng-rollover000{i}", now=moment)
            sealed.append((header, envelope))
        assert [h.enc_kid for h, _ in sealed] == [first.kid, second.kid]
        # Both arrive two days after the switch (a broker outage): the previous key is still held.
        clock.offset = first.not_after + timedelta(days=2) - utcnow()
        await ng.apply_retention()
        assert first.kid in ng.identity.encryption_keys
        for header, envelope in sealed:
            await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, envelope, {}, False))
            opened = await ng.read_incoming(header.id, actor=OFFICER, purpose="safety_assessment")
            assert opened.header == header
        # A row stored by an older version (envelope only: it re-opens only with the transport key).
        legacy_id = sealed[0][0].id
        current = await ng.store.get_incoming(legacy_id)
        legacy = await ng.at_rest.seal(legacy_id, current.case_ref, current.message_type, sealed[0][1],
                                       current.received_at)
        assert legacy[:5] == b"RGAR1"
        assert await ng.store.replace_incoming_envelope(legacy_id, current.envelope, legacy)
        # A sender with a stale directory sealing to the ended key is refused, precisely.
        stale_header, stale = seal(load_example("referral.request"), message_type="referral.request",
                                   sender=ne.identity, recipient=NIGERIA, directory=ne.directory,
                                   case_ref="ne-ng-rollover0009", now=before)
        forged = json.loads(stale)
        assert forged["header"]["enc_kid"] == first.kid
        # (re-sealed with created after the key's end: seal() itself would pick the next key)
        from gateway.envelope import Header
        late = Header(**{**stale_header.__dict__, "created": first.not_after + timedelta(hours=1),
                         "expires": first.not_after + timedelta(days=2)})
        body = _reseal(ne, late, first)
        await ng.handle_delivery(Delivery(late.id, NIGER, NIGERIA, body, {}, False))
        reasons = {e.message_id: json.loads(e.detail_json)["reason"] for e in await _audit(ng, "message.quarantined")}
        assert reasons[late.id] == "enc_key_expired"
        # Past the destruction date the stored messages of both keys still read.
        clock.offset = destruction_due(first.not_after, max_lifetime=timedelta(days=30),
                                       skew=timedelta(minutes=5), grace=GRACE) - utcnow() + timedelta(hours=1)
        await ng.apply_retention()
        assert first.kid not in ng.identity.encryption_keys and second.kid in ng.identity.encryption_keys
        assert (await ng.store.get_incoming(legacy_id)).envelope[:5] == b"RGAR2"  # re-stored before
        for header, _ in sealed:
            assert (await ng.read_incoming(header.id, actor=OFFICER, purpose="case_followup")).header == header


def _reseal(sender: Gateway, header, enc_pair: keyfile.KeyPair) -> bytes:
    """Seal by hand to ``enc_pair`` with the given header (what a stale or faulty sender does)."""
    from nacl.public import PublicKey

    from gateway.b64 import b64url_encode
    from gateway.canonical import canonical_bytes
    from gateway.envelope import FORMAT, envelope_signing_input, payload_signing_input

    header_bytes = canonical_bytes(header.to_json())
    payload_bytes = canonical_bytes(load_example("referral.request"))
    inner = sender.identity.signing_key.sign(payload_signing_input(header_bytes, payload_bytes)).signature
    ciphertext = SealedBox(PublicKey(enc_pair.public_key)).encrypt(inner + payload_bytes)
    outer = sender.identity.signing_key.sign(envelope_signing_input(header_bytes, ciphertext)).signature
    return canonical_bytes({"format": FORMAT, "header": header.to_json(), "ciphertext": b64url_encode(ciphertext),
                            "signature": b64url_encode(outer)})


async def test_withdrawal_deletes_a_queued_body_at_once(tmp_path) -> None:
    async with short_key_world(tmp_path) as (ne, ng, enc, clock, published):
        ne.transport.broker.available = False  # type: ignore[attr-defined]
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-fsqueued001", actor=WORKER)
        record = await ne.store.get_outgoing(header.id)
        assert not is_deleted(record.envelope)
        digest = hashlib.sha256(record.envelope).hexdigest()
        await ne.withdraw_consent("ne-ng-fsqueued001", WITHDRAWAL, actor=WORKER)
        record = await ne.store.get_outgoing(header.id)
        assert is_deleted(record.envelope) and record.status == "failed" and body_sha256(record.envelope) == digest
        reasons = [json.loads(e.detail_json)["reason"] for e in await _audit(ne, "message.body_deleted")
                   if e.message_id == header.id]
        assert reasons == ["consent_withdrawn"]
        ne.transport.broker.available = True  # type: ignore[attr-defined]
        await ne.publish_due(include_backoff=True)
        assert all(parse_envelope(body)[0].id != header.id for body in published)


async def test_quarantined_body_is_encrypted_redrivable_then_gone(tmp_path) -> None:
    async with short_key_world(tmp_path, held_late=False) as (ne, ng, enc, clock, _):
        second = enc[1]
        header, envelope = seal(load_example("referral.request"), message_type="referral.request",
                                sender=ne.identity, recipient=NIGERIA, directory=ne.directory,
                                case_ref="ne-ng-fsquarant01", now=second.not_before + timedelta(hours=1))
        clock.offset = second.not_before + timedelta(hours=2) - utcnow()
        await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, envelope, {}, False))
        (entry,) = await ng.transport.list_quarantine(10)
        assert entry.reason_code == "wrong_recipient"
        queue = ng.transport.broker._queues[ng.transport.config.quarantine_queue(NIGERIA)]  # type: ignore[attr-defined]
        (held,) = list(queue.ready)
        assert parse_envelope(envelope)[1] not in held.body and held.body[:4] == b"RGQ1"
        assert await ng.quarantine_vault.state(entry.headers.get("rgw-quarantine-key")) == "encrypted"

        # The operator installs the missing key; the next pass loads it; the re-drive is accepted.
        keyfile.write_key_file(keyfile.key_path(tmp_path / "ng-keys", second), second)
        await ng.apply_retention()
        assert second.kid in ng.identity.encryption_keys
        (loaded,) = await _audit(ng, "keys.loaded")
        assert json.loads(loaded.detail_json) == {"enc": [second.kid]}
        assert await ng.transport.redrive(header.id)

        async def stored() -> bool:
            return await ng.store.get_incoming(header.id) is not None
        await eventually(stored)

        # A second quarantined copy, left alone past quarantine_retention_days: its body is gone.
        other, other_envelope = seal(load_example("referral.request"), message_type="referral.request",
                                     sender=ne.identity, recipient=NIGERIA, directory=ne.directory,
                                     case_ref="ne-ng-fsquarant02", now=second.not_before + timedelta(hours=1))
        tampered = other_envelope.replace(b'"signature":"', b'"signature":"A', 1)
        await ng.handle_delivery(Delivery(other.id, NIGER, NIGERIA, tampered, {}, False))
        (entry,) = [q for q in await ng.transport.list_quarantine(10) if q.message_id == other.id]
        key_id = entry.headers.get("rgw-quarantine-key")
        clock.offset += timedelta(days=32)
        await ng.apply_retention()
        assert await ng.quarantine_vault.state(key_id) == "destroyed"
        shredded = [json.loads(e.detail_json)["reason"] for e in await _audit(ng, "data.shredded")]
        assert "quarantine_expired" in shredded
        assert await ng.transport.redrive(other.id)

        async def requarantined() -> bool:
            return any(q.message_id == other.id and q.reason_code == "quarantine_body_destroyed"
                       for q in await ng.transport.list_quarantine(10))
        await eventually(requarantined)


def test_enc_ahead_prints_back_to_back_keys_for_the_authority(tmp_path) -> None:
    key_dir = tmp_path / "keys"
    assert cli_main(["keys", "generate", "--agency", NIGERIA, "--out", str(key_dir), "--valid-days", "365"]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["keys", "enc-ahead", "--key-dir", str(key_dir), "--period-days", "7", "--periods", "3",
                         "--shorten-current"]) == 0
    printed = json.loads(out.getvalue())
    assert printed["format"] == "rgw-public-keys/1" and printed["agency"] == NIGERIA
    entries = sorted(printed["keys"], key=lambda k: k["not_before"])
    # The current key cut to end one period from now, then new keys up to three periods ahead.
    assert all(k["use"] == "enc" for k in entries) and len(entries) == 3
    assert parse_ts(entries[0]["not_after"]) - utcnow() <= PERIOD
    assert parse_ts(entries[-1]["not_after"]) - utcnow() > 2 * PERIOD
    for earlier, later in zip(entries, entries[1:]):
        assert earlier["not_after"] == later["not_before"]  # no gap, no long overlap
        assert parse_ts(later["not_after"]) - parse_ts(later["not_before"]) == PERIOD
    # Again (seconds later): three keys already end later than now; nothing new.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["keys", "enc-ahead", "--key-dir", str(key_dir), "--periods", "3"]) == 0
    assert json.loads(out.getvalue())["keys"] == []
    on_disk = {p.kid for p in keyfile.read_key_dir(key_dir)}
    assert {k["kid"] for k in entries} <= on_disk
    assert b64url_decode(entries[0]["public_key"])


async def test_case_keys_move_to_the_newest_key_before_the_old_one_is_destroyed(tmp_path) -> None:
    from nacl.public import PrivateKey

    from gateway.at_rest import AtRest
    from gateway.keys import AgencyIdentity
    from gateway.store import IncomingMessage, open_store

    store = await open_store(f"sqlite:///{tmp_path / 'rewrap.db'}")
    try:
        t0 = utcnow()
        old, new = PrivateKey.generate(), PrivateKey.generate()
        identity = AgencyIdentity.create(NIGERIA, SigningKey.generate())
        old_kid = identity.add_encryption_key(old, t0 - PERIOD, t0)
        at_rest = AtRest(identity, store)
        message_id = "0b0c6a38-57c4-4a4e-9a4c-3f0d2b7d4a11"
        blob = await at_rest.seal(message_id, "ne-ng-rewrap0001", "referral.request", b"envelope-bytes", t0,
                                  b"inner-and-payload")
        await store.add_incoming(IncomingMessage(message_id, NIGER, "referral.request", "ne-ng-rewrap0001", blob, t0))
        new_kid = identity.add_encryption_key(new, t0, t0 + PERIOD)
        assert await at_rest.rewrap_case_keys(old_kid) == 1
        assert await at_rest.rewrap_case_keys(old_kid) == 0
        identity.forget_encryption_key(old_kid)
        assert old_kid in identity.destroyed_encryption_kids and identity.newest_encryption_kid() == new_kid
        stored = await at_rest.open(await store.get_incoming(message_id))
        assert (stored.envelope, stored.plaintext) == (b"envelope-bytes", b"inner-and-payload")
        case = await store.live_case_key("ne-ng-rewrap0001")
        assert case.wrapped[:32] == new_kid.encode("ascii")
    finally:
        await store.close()


async def test_processes_sharing_a_store_wrap_case_keys_under_the_key_valid_now(tmp_path) -> None:
    """Review 12 H1: a process that picked up a key generated ahead must not wrap new case keys
    under it, or the other processes of the agency cannot read that case until their next pass."""
    from nacl.public import PrivateKey

    from gateway.at_rest import AtRest
    from gateway.demo_identities import demo_identity
    from gateway.store import IncomingMessage, open_store

    store = await open_store(f"sqlite:///{tmp_path / 'shared.db'}")
    try:
        now = utcnow()
        a, b = demo_identity(NIGERIA), demo_identity(NIGERIA)
        a.add_encryption_key(PrivateKey.generate(), now + PERIOD, now + 2 * PERIOD)  # ahead, only in A
        case = "ne-ng-twoproc0001"
        first = "00000000-0000-4000-8000-000000000001"
        blob = await AtRest(a, store).seal(first, case, "referral.request", b'{"x":1}', now, b"p")
        await store.add_incoming(IncomingMessage(first, NIGER, "referral.request", case, blob, now))
        at_b = AtRest(b, store)
        await at_b.seal("00000000-0000-4000-8000-000000000002", case, "referral.request", b'{"x":2}', now, b"q")
        stored = await at_b.open(await store.get_incoming(first))
        assert stored.plaintext == b"p"
    finally:
        await store.close()


async def test_a_case_key_wrapped_by_a_key_not_loaded_yet_reloads_the_key_directory(tmp_path) -> None:
    """Review 12 H1: on an unwrap miss the process reads its key directory once before failing."""
    from nacl.public import PrivateKey

    from gateway.at_rest import AtRest, AtRestError
    from gateway.demo_identities import demo_identity
    from gateway.key_lifecycle import EncryptionKeyLifecycle, KeyDirectory
    from gateway.metrics import Metrics
    from gateway.store import IncomingMessage, open_store

    store = await open_store(f"sqlite:///{tmp_path / 'shared.db'}")
    try:
        now = utcnow()
        kdir = tmp_path / "keys"
        kdir.mkdir()
        pair = keyfile.generate_key(NIGERIA, "enc", not_before=now - timedelta(hours=1), not_after=now + PERIOD)
        keyfile.write_key_file(keyfile.key_path(kdir, pair), pair)
        a, b = demo_identity(NIGERIA), demo_identity(NIGERIA)
        a.add_encryption_key(pair.private_key(), pair.not_before, pair.not_after)  # A's pass already ran
        case, first = "ne-ng-twoproc0002", "00000000-0000-4000-8000-000000000003"
        blob = await AtRest(a, store).seal(first, case, "referral.request", b'{"x":1}', now, b"p")
        await store.add_incoming(IncomingMessage(first, NIGER, "referral.request", case, blob, now))
        with pytest.raises(AtRestError):
            await AtRest(b, store).open(await store.get_incoming(first))  # no reload hook: the miss is final
        life = EncryptionKeyLifecycle(identity=b, at_rest=AtRest(b, store), store=store, clock=utcnow,
                                      source=KeyDirectory(kdir), max_lifetime=timedelta(days=30),
                                      skew=timedelta(minutes=5), grace=timedelta(days=1), period=PERIOD,
                                      metrics=Metrics())
        stored = await AtRest(b, store, reload_keys=life.load_new).open(await store.get_incoming(first))
        assert stored.plaintext == b"p" and pair.kid in b.encryption_keys
    finally:
        await store.close()


async def test_one_unreadable_key_file_does_not_stop_the_others(tmp_path) -> None:
    """Review 12 M4: each key file is read on its own; the bad one is audited once by kid."""
    import os

    from gateway.at_rest import AtRest
    from gateway.demo_identities import demo_identity
    from gateway.key_lifecycle import EncryptionKeyLifecycle, KeyDirectory
    from gateway.metrics import Metrics
    from gateway.store import open_store

    store = await open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        now = utcnow()
        ident = demo_identity(NIGERIA)
        kdir = tmp_path / "keys"
        kdir.mkdir()
        pairs = [keyfile.generate_key(NIGERIA, "enc", not_before=now + i * PERIOD, not_after=now + (i + 1) * PERIOD)
                 for i in range(1, 6)]
        for p in pairs:
            keyfile.write_key_file(keyfile.key_path(kdir, p), p)
        bad = sorted(pairs, key=lambda p: p.kid)[0]
        os.chmod(keyfile.key_path(kdir, bad), 0o644)  # copied with cp instead of install -m 600
        failures: dict[str, str] = {}
        life = EncryptionKeyLifecycle(identity=ident, at_rest=AtRest(ident, store), store=store, clock=utcnow,
                                      source=KeyDirectory(kdir), max_lifetime=timedelta(days=30),
                                      skew=timedelta(minutes=5), grace=timedelta(days=1), period=PERIOD,
                                      metrics=Metrics(), load_failures=failures)
        await life.apply()
        await life.apply()
        assert sorted(p.kid for p in pairs if p.kid in ident.encryption_keys) == sorted(
            p.kid for p in pairs if p is not bad)
        assert list(failures) == [bad.kid]
        audited = [json.loads(e.detail_json) for e in await store.query_audit(
            AuditQuery(event_types=("keys.load_failed",)), 100)]
        assert [d["kid"] for d in audited] == [bad.kid]
    finally:
        await store.close()


async def test_legacy_inbox_rows_that_cannot_be_restored_are_audited_not_skipped_silently(tmp_path) -> None:
    """Review 12 L8: before a key destruction, a legacy row that does not re-open is named."""
    from gateway.store import IncomingMessage
    from testkit.gateway_pair import gateway_pair

    async with gateway_pair(tmp_path) as (ne, ng):
        garbage = b"not an envelope at all"
        message_id = "0b0c6a38-57c4-4a4e-9a4c-3f0d2b7d4a12"
        blob = b"RGAR0" + hashlib.sha256(garbage).digest() + garbage  # older format, control type
        await ng.store.add_incoming(IncomingMessage(message_id, NIGER, "receipt", "ne-ng-legacy0001", blob, utcnow()))
        assert await ng.restore_legacy_inbox() == 0
        (entry,) = await _audit(ng, "inbox.unrestorable")
        assert entry.message_id == message_id and json.loads(entry.detail_json) == {"reason": "malformed"}
        assert "inbox_unrestorable_total 1" in ng.metrics.render()


async def test_a_shortened_current_key_takes_effect_without_a_restart(tmp_path) -> None:
    """Review 12 M5: `enc-ahead --shorten-current` rewrites the current key's file; the next
    retention pass follows the new end (and so the destruction schedule) without a restart."""
    from gateway.at_rest import AtRest
    from gateway.demo_identities import demo_identity
    from gateway.key_lifecycle import EncryptionKeyLifecycle, KeyDirectory
    from gateway.metrics import Metrics
    from gateway.store import open_store

    store = await open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        now = utcnow()
        ident = demo_identity(NIGERIA)
        kdir = tmp_path / "keys"
        kdir.mkdir()
        current = keyfile.generate_key(NIGERIA, "enc", not_before=now - timedelta(days=1),
                                       not_after=now + timedelta(days=365))
        keyfile.write_key_file(keyfile.key_path(kdir, current), current)
        ident.add_encryption_key(current.private_key(), current.not_before, current.not_after)  # read at start
        life = EncryptionKeyLifecycle(identity=ident, at_rest=AtRest(ident, store), store=store, clock=utcnow,
                                      source=KeyDirectory(kdir), max_lifetime=timedelta(days=30),
                                      skew=timedelta(minutes=5), grace=timedelta(days=1), period=PERIOD,
                                      metrics=Metrics())
        await life.apply()
        assert ident.encryption_validity[current.kid][1] == current.not_after
        cut = keyfile.shorten(current, now + PERIOD)
        keyfile.write_key_file(keyfile.key_path(kdir, cut), cut)
        await life.apply()
        assert ident.encryption_validity[current.kid] == (current.not_before, cut.not_after)
        (entry,) = await store.query_audit(AuditQuery(event_types=("key.shortened",)), 10)
        assert json.loads(entry.detail_json)["not_after"] == format_ts(cut.not_after)
        await life.apply()  # unchanged file: not read again, not audited again
        assert len(await store.query_audit(AuditQuery(event_types=("key.shortened",)), 10)) == 1
    finally:
        await store.close()


async def test_concurrent_key_directory_passes_load_a_new_key_once(tmp_path) -> None:
    """The retention task and an unwrap miss may read the key directory at the same time."""
    import asyncio

    from gateway.at_rest import AtRest
    from gateway.demo_identities import demo_identity
    from gateway.key_lifecycle import EncryptionKeyLifecycle, KeyDirectory
    from gateway.metrics import Metrics
    from gateway.store import open_store

    store = await open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        now = utcnow()
        ident = demo_identity(NIGERIA)
        kdir = tmp_path / "keys"
        kdir.mkdir()
        ahead = keyfile.generate_key(NIGERIA, "enc", not_before=now + PERIOD, not_after=now + 2 * PERIOD)
        keyfile.write_key_file(keyfile.key_path(kdir, ahead), ahead)
        source = KeyDirectory(kdir)

        def life() -> EncryptionKeyLifecycle:
            return EncryptionKeyLifecycle(identity=ident, at_rest=AtRest(ident, store), store=store, clock=utcnow,
                                          source=source, max_lifetime=timedelta(days=30),
                                          skew=timedelta(minutes=5), grace=timedelta(days=1), period=PERIOD,
                                          metrics=Metrics())
        added = await asyncio.gather(life().load_new(), life().load_new())
        assert sorted(added) == [[], [ahead.kid]]
        assert len(await store.query_audit(AuditQuery(event_types=("keys.loaded",)), 10)) == 1
    finally:
        await store.close()


async def test_readyz_and_metrics_warn_when_the_next_key_is_missing_or_a_key_file_is_unreadable(tmp_path) -> None:
    """Review 12 M4: what the operator sees, without the gateway leaving service."""
    from nacl.public import PrivateKey

    from tests.test_api_world import api_pair, assert_conforms

    async with api_pair(tmp_path) as (ne, _):
        gw = ne.gateway
        doc = (await ne.call("GET", "/openapi.json", role=None))[1]
        status, body = await ne.call("GET", "/readyz", role=None)
        assert "enc_key_next_missing" not in body.get("warnings", [])
        now = gw.clock()
        gw.identity.add_encryption_key(PrivateKey.generate(), now - timedelta(days=1), now + timedelta(days=2))
        gw.key_load_failures["0" * 32] = "key_file_error"
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 200 and {"enc_key_next_missing", "key_files_unreadable"} <= set(body["warnings"])
        assert_conforms(doc, "/readyz", "GET", 200, body)
        metrics = gw.metrics.render()
        assert "enc_key_next_missing 1" in metrics and "enc_key_files_unreadable 1" in metrics


async def test_an_encryption_key_off_the_short_lived_schedule_is_warned_about(tmp_path, capsys) -> None:
    """A key from ``generate --valid-days 365`` never cut by ``enc-ahead --shorten-current``
    keeps every envelope sealed to it readable for a year: /readyz, /metrics and the log say so."""
    from tests.test_api_world import api_pair, assert_conforms

    async with api_pair(tmp_path) as (ne, _):
        gw = ne.gateway
        doc = (await ne.call("GET", "/openapi.json", role=None))[1]
        # The demo keys end in 2030, but a demo directory's keys are public anyway: no warning.
        now = gw.clock()
        kid = gw.identity.current_encryption_kid(now)
        gw.identity.encryption_validity[kid] = (now - timedelta(days=1), now + timedelta(days=365))
        assert gw.directory.demo and not gw.enc_key_long_lived()
        gw.directory = dataclasses.replace(gw.directory, demo=False)
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 200 and "enc_key_long_lived" in body["warnings"]
        assert_conforms(doc, "/readyz", "GET", 200, body)
        assert "gateway_enc_key_long_lived 1" in gw.metrics.render()
        await gw.apply_retention()
        assert "keys.long_lived" in capsys.readouterr().out

        # Cut to one period (what enc-ahead --shorten-current does): the warning goes.
        gw.identity.encryption_validity[kid] = (gw.identity.encryption_validity[kid][0], now + PERIOD)
        status, body = await ne.call("GET", "/readyz", role=None)
        assert "enc_key_long_lived" not in body.get("warnings", [])
        assert "gateway_enc_key_long_lived 0" in gw.metrics.render()


async def test_short_lived_keys_published_ahead_raise_no_long_lived_warning(tmp_path) -> None:
    async with short_key_world(tmp_path) as (ne, ng, enc, clock, _):
        ng.directory = dataclasses.replace(ng.directory, demo=False)
        assert not ng.enc_key_long_lived()
        clock.offset = 3 * PERIOD  # later keys of the schedule: still one period each
        assert not ng.enc_key_long_lived()


async def test_a_gateway_whose_next_keys_are_not_published_says_so(tmp_path, capsys) -> None:
    """Keys generated ahead are useless until the authority publishes them: before the listed
    keys run out (senders would get no_valid_key), /readyz, /metrics and the log warn."""
    from gateway.directory import Revocation

    async with short_key_world(tmp_path) as (ne, ng, enc, clock, _):
        assert not ng.next_enc_key_unpublished()
        assert "gateway_enc_key_next_unpublished 0" in ng.metrics.render()
        # The directory in force lists only the first two keys (the authority never merged the rest).
        agency = ng.directory.agency(NIGERIA)
        listed = tuple(k for k in agency.keys if k.use == "sig" or k.kid in {enc[0].kid, enc[1].kid})
        ng.directory = dataclasses.replace(ng.directory, agencies={**ng.directory.agencies,
                                                                   NIGERIA: dataclasses.replace(agency, keys=listed)})
        assert not ng.next_enc_key_unpublished()  # enc[1] still ends more than a period from now
        clock.offset = enc[1].not_after - PERIOD - utcnow() + timedelta(hours=1)
        assert ng.next_enc_key_unpublished() and not ng.next_enc_key_missing()  # held, not published
        assert "gateway_enc_key_next_unpublished 1" in ng.metrics.render()
        await ng.apply_retention()
        assert "keys.none_published_ahead" in capsys.readouterr().out
        # A revoked key does not count as published.
        clock.offset = timedelta(0)
        assert not ng.next_enc_key_unpublished()
        ng.directory = dataclasses.replace(ng.directory, revocations={
            **ng.directory.revocations, enc[1].kid: Revocation(enc[1].kid, clock(), "test")})
        assert ng.next_enc_key_unpublished()

        # The directory lists the current key uncut (a year), but the gateway cut it to one
        # period and the keys ahead were never merged: after the cut senders would be refused.
        uncut = dataclasses.replace(next(k for k in agency.keys if k.kid == enc[0].kid),
                                    not_after=enc[0].not_after + timedelta(days=365))
        ng.directory = dataclasses.replace(ng.directory, revocations={}, agencies={
            **ng.directory.agencies, NIGERIA: dataclasses.replace(agency, keys=tuple(
                k for k in agency.keys if k.use == "sig") + (uncut,))})
        assert ng.next_enc_key_unpublished()
