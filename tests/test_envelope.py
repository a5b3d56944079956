"""Envelope seal/open: the happy path and one test per documented rejection."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from gateway import errors
from gateway.b64 import b64url_decode, b64url_encode
from gateway.canonical import canonical_bytes
from gateway.clock import format_ts
from gateway.envelope import (
    EnvelopePolicy,
    MemoryReplayGuard,
    RecipientRefusesError,
    open_sealed,
    parse_envelope,
    seal,
    verify_origin,
)
from gateway.keys import AgencyIdentity

from testkit.envelope_world import NOW, World, build_world, example_payload, forge, header_for


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


def sealed(world: World, **kw) -> bytes:
    args = dict(
        message_type="referral.request", sender=world.niger, recipient="NG-NAPTIP",
        directory=world.directory, case_ref="case-ne-ng-0001", now=NOW,
    )
    args.update(kw)
    payload = kw.pop("payload", None) or example_payload(args["message_type"])
    args.pop("payload", None)
    return seal(payload, **args)[1]


def open_at_naptip(world: World, data: bytes, *, now=NOW, guard=None, **kw):
    return open_sealed(data, recipient=world.nigeria, directory=world.directory, replay_guard=guard, now=now, **kw)


def test_round_trip_returns_payload_and_proof(world: World) -> None:
    payload = example_payload()
    header, data = seal(
        payload, message_type="referral.request", sender=world.niger, recipient="NG-NAPTIP",
        directory=world.directory, case_ref="case-ne-ng-0001", now=NOW,
    )
    opened = open_at_naptip(world, data, guard=MemoryReplayGuard())
    assert opened.payload == payload
    assert opened.header == header
    assert opened.header.sender == "NE-ANLTP-TIM" and opened.header.recipient == "NG-NAPTIP"
    assert opened.payload_bytes == canonical_bytes(payload)
    assert len(opened.payload_signature) == 64


def test_every_message_type_round_trips(world: World) -> None:
    from gateway.schema import MESSAGE_TYPES

    for message_type in MESSAGE_TYPES:
        data = sealed(world, message_type=message_type)
        assert open_at_naptip(world, data).payload == example_payload(message_type)


def test_header_and_wire_bytes_carry_no_plaintext(world: World) -> None:
    payload = example_payload()
    data = sealed(world, payload=payload)
    needles = {v for v in _strings(payload) if len(v) >= 4}
    assert needles, "the example payload should contain text to look for"
    text = data.decode("utf-8")
    leaked = [n for n in needles if n in text]
    assert leaked == []


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_relay_can_verify_origin_without_private_keys(world: World) -> None:
    data = sealed(world)
    header = verify_origin(data, world.directory, now=NOW)
    assert header.sender == "NE-ANLTP-TIM"


# --- rejections, one per error class ------------------------------------------------------


def test_tampered_ciphertext_is_bad_signature(world: World) -> None:
    doc = json.loads(sealed(world))
    ct = bytearray(b64url_decode(doc["ciphertext"]))
    ct[100] ^= 1
    doc["ciphertext"] = b64url_encode(bytes(ct))
    with pytest.raises(errors.BadSignatureError, match="outer"):
        open_at_naptip(world, canonical_bytes(doc))


def test_tampered_header_is_bad_signature(world: World) -> None:
    doc = json.loads(sealed(world))
    doc["header"]["case"] = "case-ne-ng-9999"
    with pytest.raises(errors.BadSignatureError):
        open_at_naptip(world, canonical_bytes(doc))


def test_signature_by_another_agency_key_is_bad_signature(world: World) -> None:
    # Claims to be Niger (Niger's kid) but signed with Mali's key.
    data = forge(header_for(world), canonical_bytes(example_payload()), signer=world.mali.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.BadSignatureError):
        open_at_naptip(world, data)


def test_bad_inner_signature_is_rejected_after_decryption(world: World) -> None:
    data = forge(header_for(world), canonical_bytes(example_payload()), signer=world.niger.signing_key,
                 inner_signer=world.mali.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.BadSignatureError, match="inner"):
        open_at_naptip(world, data)


def test_plaintext_resealed_under_another_header_fails_inner_signature(world: World) -> None:
    # A recipient cannot take a signed plaintext and pass it off under a new header.
    nigeria_enc = next(iter(world.nigeria.encryption_keys.values()))
    original = open_at_naptip(world, sealed(world))
    from gateway.envelope import envelope_signing_input
    new_header = header_for(world, id="0b5a0c36-8a39-4d4c-bb7a-3a9f6c1d2e33")
    h = canonical_bytes(new_header)
    from nacl.public import SealedBox
    ct = SealedBox(nigeria_enc.public_key).encrypt(original.payload_signature + original.payload_bytes)
    outer = world.niger.signing_key.sign(envelope_signing_input(h, ct)).signature  # attacker with outer key only
    data = canonical_bytes({"format": "rgw-envelope/1", "header": new_header,
                            "ciphertext": b64url_encode(ct), "signature": b64url_encode(outer)})
    with pytest.raises(errors.BadSignatureError, match="inner"):
        open_at_naptip(world, data)


def test_unknown_sender_agency(world: World) -> None:
    header = header_for(world, sender="XX-OUTSIDER", sig_kid=world.outsider.signing_kid)
    data = forge(header, canonical_bytes(example_payload()), signer=world.outsider.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.UnknownSenderError, match="XX-OUTSIDER"):
        open_at_naptip(world, data)


def test_unknown_signing_key_of_known_agency(world: World) -> None:
    header = header_for(world, sig_kid=world.outsider.signing_kid)
    data = forge(header, canonical_bytes(example_payload()), signer=world.outsider.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.UnknownSenderError, match="not a key of NE-ANLTP-TIM"):
        open_at_naptip(world, data)


def test_key_of_another_agency_is_unknown_sender(world: World) -> None:
    header = header_for(world, sig_kid=world.mali.signing_kid)
    data = forge(header, canonical_bytes(example_payload()), signer=world.mali.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.UnknownSenderError):
        open_at_naptip(world, data)


def test_revoked_key(world: World) -> None:
    identity = AgencyIdentity("NE-ANLTP-TIM", world.revoked_sig, {})
    header = header_for(world, sig_kid=identity.signing_kid)
    data = forge(header, canonical_bytes(example_payload()), signer=world.revoked_sig,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.KeyRevokedError):
        open_at_naptip(world, data)


def test_expired_key(world: World) -> None:
    identity = AgencyIdentity("NE-ANLTP-TIM", world.expired_sig, {})
    header = header_for(world, sig_kid=identity.signing_kid)
    data = forge(header, canonical_bytes(example_payload()), signer=world.expired_sig,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.KeyExpiredError):
        open_at_naptip(world, data)


def test_backdated_message_with_expired_key_is_still_refused(world: World) -> None:
    # created inside the key's validity, but the key has expired by now.
    identity = AgencyIdentity("NE-ANLTP-TIM", world.expired_sig, {})
    header = header_for(world, sig_kid=identity.signing_kid, created="2024-12-30T00:00:00Z",
                        expires="2025-01-05T00:00:00Z")
    data = forge(header, canonical_bytes(example_payload()), signer=world.expired_sig,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.KeyExpiredError, match="current time"):
        open_at_naptip(world, data)


def test_wrong_recipient_agency(world: World) -> None:
    data = sealed(world)  # to NG-NAPTIP
    with pytest.raises(errors.WrongRecipientError, match="addressed to NG-NAPTIP"):
        open_sealed(data, recipient=world.mali, directory=world.directory, replay_guard=None, now=NOW)


def test_encryption_key_not_held(world: World) -> None:
    stranger = AgencyIdentity.create("NG-NAPTIP", world.nigeria.signing_key, PrivateKey.generate())
    with pytest.raises(errors.WrongRecipientError, match="does not hold"):
        open_sealed(sealed(world), recipient=stranger, directory=world.directory, replay_guard=None, now=NOW)


def test_sealed_to_another_key_is_decryption_error(world: World) -> None:
    data = forge(header_for(world), canonical_bytes(example_payload()), signer=world.niger.signing_key,
                 seal_to=PrivateKey.generate().public_key)
    with pytest.raises(errors.DecryptionError):
        open_at_naptip(world, data)


def test_expired_message(world: World) -> None:
    data = sealed(world, lifetime=timedelta(days=1))
    open_at_naptip(world, data, now=NOW + timedelta(days=1))  # still valid at the instant of expiry
    with pytest.raises(errors.ExpiredMessageError):
        open_at_naptip(world, data, now=NOW + timedelta(days=1, seconds=1))


def test_message_from_the_future_is_clock_skew(world: World) -> None:
    data = sealed(world, now=NOW + timedelta(minutes=6))
    with pytest.raises(errors.ClockSkewError):
        open_at_naptip(world, data)
    open_at_naptip(world, sealed(world, now=NOW + timedelta(minutes=4)))  # within the allowed skew


def test_lifetime_longer_than_policy_is_refused(world: World) -> None:
    header = header_for(world, expires=format_ts(NOW + timedelta(days=31)))
    data = forge(header, canonical_bytes(example_payload()), signer=world.niger.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.MalformedEnvelopeError, match="lifetime"):
        open_at_naptip(world, data)


def test_replayed_message_id(world: World) -> None:
    guard = MemoryReplayGuard()
    data = sealed(world)
    open_at_naptip(world, data, guard=guard)
    with pytest.raises(errors.ReplayedMessageError):
        open_at_naptip(world, data, guard=guard)


def test_failed_open_does_not_consume_the_message_id(world: World) -> None:
    # A message quarantined for a transient reason (e.g. our key not loaded yet) can be re-driven.
    guard = MemoryReplayGuard()
    data = sealed(world)
    with pytest.raises(errors.WrongRecipientError):
        open_sealed(data, recipient=AgencyIdentity("NG-NAPTIP", world.nigeria.signing_key, {}),
                    directory=world.directory, replay_guard=guard, now=NOW)
    open_at_naptip(world, data, guard=guard)


def test_replay_guard_prunes_only_expired_ids(world: World) -> None:
    guard = MemoryReplayGuard()
    guard.remember("a", NOW)
    guard.remember("b", NOW + timedelta(days=1))
    assert guard.prune(NOW + timedelta(seconds=1)) == 1
    assert not guard.seen("a") and guard.seen("b")


def test_schema_invalid_payload_names_path_and_rule(world: World) -> None:
    payload = example_payload()
    payload["not_a_field"] = "Zebulon Quarantinovic"
    data = forge(header_for(world), canonical_bytes(payload), signer=world.niger.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.SchemaInvalidError) as info:
        open_at_naptip(world, data)
    assert any(v.path.startswith("$") and v.rule for v in info.value.violations)
    assert "not_a_field" in str(info.value)
    assert "Zebulon" not in str(info.value)


def test_seal_refuses_schema_invalid_payload(world: World) -> None:
    payload = example_payload()
    payload["not_a_field"] = 1
    with pytest.raises(errors.SchemaInvalidError):
        sealed(world, payload=payload)


def test_non_canonical_payload_is_malformed(world: World) -> None:
    payload_bytes = json.dumps(example_payload(), indent=1).encode()
    data = forge(header_for(world), payload_bytes, signer=world.niger.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.MalformedEnvelopeError, match="canonical"):
        open_at_naptip(world, data)


def test_non_object_payload_is_malformed(world: World) -> None:
    data = forge(header_for(world), b"[1,2,3]", signer=world.niger.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    with pytest.raises(errors.MalformedEnvelopeError, match="object"):
        open_at_naptip(world, data)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: b"not json", "JSON"),
        (lambda d: d.replace(b'"format"', b'"format":1,"format"', 1), "JSON"),  # duplicate member
        (lambda d: _edit(d, lambda doc: doc.pop("signature")), "missing"),
        (lambda d: _edit(d, lambda doc: doc.update(extra="x")), "unexpected"),
        (lambda d: _edit(d, lambda doc: doc.update(format="rgw-envelope/2")), "format"),
        (lambda d: _edit(d, lambda doc: doc.update(signature="AAAA")), "signature"),
        (lambda d: _edit(d, lambda doc: doc.update(signature=doc["signature"] + "=")), "base64url"),
        (lambda d: _edit(d, lambda doc: doc.update(ciphertext="AAAA")), "ciphertext"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(id="not-a-uuid")), "header.id"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(type="referral.gossip")), "header.type"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(schema="3")), "header.schema"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(sender="naptip")), "header.sender"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(case="x")), "header.case"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(case=doc["header"]["case"] + "\n")), "header.case"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(sender="NE-ANLTP-TIM\n")), "header.sender"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(id="3f0c2a9e-5b7d-1c1e-8f6a-1d2e3f4a5b6c")), "header.id"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(sig_kid=doc["header"]["sig_kid"].upper())), "sig_kid"),
        (lambda d: b"\xef\xbb\xbf" + d, "JSON"),  # byte order mark
        (lambda d: _edit(d, lambda doc: doc["header"].update(created="2026-11-23 12:00")), "created"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(expires=doc["header"]["created"])), "expires"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(sig_kid=7)), "string"),
        (lambda d: _edit(d, lambda doc: doc["header"].update(name="Amina")), "unexpected"),
        (lambda d: b"[" * 100_000, "JSON"),  # deep nesting
    ],
)
def test_malformed_envelopes(world: World, mutate, where) -> None:
    with pytest.raises(errors.MalformedEnvelopeError, match=where):
        open_at_naptip(world, mutate(sealed(world)))


def _edit(data: bytes, change) -> bytes:
    doc = json.loads(data)
    change(doc)
    return json.dumps(doc).encode()


def test_unexpected_member_names_are_not_echoed_raw(world: World) -> None:
    data = _edit(sealed(world), lambda doc: doc["header"].update({"Amina Garba Testfixture": "x"}))
    with pytest.raises(errors.MalformedEnvelopeError) as info:
        open_at_naptip(world, data)
    assert "Garba Testfixture" not in str(info.value)


def test_oversize_envelope_is_refused_before_parsing(world: World) -> None:
    policy = EnvelopePolicy(max_envelope_bytes=1000)
    data = sealed(world)
    assert len(data) > 1000
    with pytest.raises(errors.OversizeEnvelopeError):
        open_at_naptip(world, data, policy=policy)
    with pytest.raises(errors.OversizeEnvelopeError):
        parse_envelope(b"{" + b" " * 300_000 + b"}")


def test_oversize_payload_is_refused_when_sealing(world: World) -> None:
    with pytest.raises(errors.OversizeEnvelopeError):
        sealed(world, policy=EnvelopePolicy(max_payload_bytes=200))


def test_seal_refuses_recipient_that_does_not_accept_the_type(world: World) -> None:
    from dataclasses import replace

    naptip = world.directory.agency("NG-NAPTIP")
    limited = replace(world.directory, agencies={**world.directory.agencies,
                                                 "NG-NAPTIP": replace(naptip, message_types=frozenset({"receipt"}))})
    with pytest.raises(RecipientRefusesError):
        sealed(world, directory=limited)


def test_every_rejection_is_an_envelope_error() -> None:
    leaves = [
        errors.MalformedEnvelopeError, errors.OversizeEnvelopeError, errors.BadSignatureError,
        errors.UnknownSenderError, errors.KeyRevokedError, errors.KeyExpiredError, errors.WrongRecipientError,
        errors.ExpiredMessageError, errors.ClockSkewError, errors.ReplayedMessageError, errors.DecryptionError,
        errors.SchemaInvalidError,
    ]
    assert all(issubclass(cls, errors.EnvelopeError) for cls in leaves)
    assert len({cls.code for cls in leaves}) == len(leaves)


def test_seal_refuses_a_signing_key_the_recipient_would_refuse(world: World) -> None:
    rogue = AgencyIdentity.create("NE-ANLTP-TIM", SigningKey.generate(), PrivateKey.generate())
    with pytest.raises(errors.UnknownSenderError):
        sealed(world, sender=rogue)
    expired = AgencyIdentity("NE-ANLTP-TIM", world.expired_sig, {})
    with pytest.raises(errors.KeyExpiredError):
        sealed(world, sender=expired)
    revoked = AgencyIdentity("NE-ANLTP-TIM", world.revoked_sig, {})
    with pytest.raises(errors.KeyRevokedError):
        sealed(world, sender=revoked)


def test_stored_message_stays_readable_after_a_later_revocation(world: World) -> None:
    from dataclasses import replace

    from gateway.directory import Revocation

    data = sealed(world)
    kid = world.niger.signing_kid
    revoked_later = replace(world.directory, revocations={
        **world.directory.revocations, kid: Revocation(kid, NOW + timedelta(hours=1), "key_compromise")})
    with pytest.raises(errors.KeyRevokedError):  # a new delivery after the revocation
        open_sealed(data, recipient=world.nigeria, directory=revoked_later, replay_guard=None,
                    now=NOW + timedelta(hours=2))
    opened = open_sealed(data, recipient=world.nigeria, directory=revoked_later, replay_guard=None,
                         now=NOW, stored_at=NOW)  # stored before the revocation
    assert opened.header.sender == "NE-ANLTP-TIM"
    with pytest.raises(errors.KeyRevokedError):  # stored after it: no exception
        open_sealed(data, recipient=world.nigeria, directory=revoked_later, replay_guard=None,
                    now=NOW, stored_at=NOW + timedelta(hours=2))
