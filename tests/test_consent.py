"""gateway.consent: the consent policy on its own (no gateway, no clock but the one given)."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from gateway import consent
from gateway.schema import load_example
from gateway.store import Withdrawal

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
WID = "9a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"


def request(**consent_changes):
    payload = copy.deepcopy(load_example("referral.request"))
    payload["consent"].update(consent_changes)
    for key, value in list(payload["consent"].items()):
        if value is None:
            del payload["consent"][key]
    return payload


def check(payload, *, recipient="NG-NAPTIP", country="NG", now=NOW, withdrawals=()):
    consent.check_referral_consent(payload, recipient=recipient, recipient_country=country, now=now,
                                   withdrawals=withdrawals)


def withdrawal(at: str, scope="all_purposes", purposes=()):
    when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return Withdrawal(WID, "ne-ng-case000001", "outgoing", "NG-NAPTIP", when, scope, purposes, (), when)


def test_the_example_consent_covers_naptip() -> None:
    check(request())


def test_recipient_covered_by_agency_list_alone() -> None:
    check(request(recipient_countries=None, recipient_agencies=["NG-NAPTIP"]))


@pytest.mark.parametrize(("payload", "kwargs", "error", "path"), [
    (request(), {"recipient": "ML-DNPEF", "country": "ML"}, consent.ConsentRecipientError, "$.consent"),
    (request(recipient_countries=None, recipient_agencies=["NG-IOM"]), {}, consent.ConsentRecipientError, "$.consent"),
    (request(purposes=["safety_assessment"]), {}, consent.ConsentPurposeError, "$.consent.purposes"),
    (request(expires_at="2026-05-31T23:59:59Z"), {}, consent.ConsentExpiredError, "$.consent.expires_at"),
    (request(given_at="2026-06-02T00:00:00Z"), {}, consent.ConsentNotYetValidError, "$.consent.given_at"),
    (request(given_at="2030-12-31T23:59:59Z"), {}, consent.ConsentExpiredError, "$.consent.expires_at"),
    (request(given_at="yesterday"), {}, consent.ConsentMissingError, "$.consent.given_at"),
])
def test_refusals_name_the_reason_and_the_field(payload, kwargs, error, path) -> None:
    with pytest.raises(error) as info:
        check(payload, **kwargs)
    assert info.value.path == path and str(info.value).startswith(path)
    assert "Amaka" not in str(info.value) and "Testfixture" not in str(info.value)


def test_missing_consent_is_refused() -> None:
    payload = request()
    del payload["consent"]
    with pytest.raises(consent.ConsentMissingError):
        check(payload)


def test_expiry_is_exclusive() -> None:
    with pytest.raises(consent.ConsentExpiredError):
        check(request(expires_at="2026-06-01T12:00:00Z"))


def test_a_minor_needs_a_guardian_or_judge() -> None:
    payload = load_example("referral.request", "minor_guardian")
    check(payload)
    payload["consent"]["decision_maker"] = "self"
    with pytest.raises(consent.ConsentDecisionMakerError) as info:
        check(payload)
    assert info.value.code == "consent_decision_maker"


def test_withdrawal_after_the_consent_refuses_it() -> None:
    with pytest.raises(consent.ConsentWithdrawnError) as info:
        check(request(), withdrawals=[withdrawal("2026-04-01T00:00:00Z")])
    assert WID in str(info.value)


def test_consent_given_after_the_withdrawal_stands() -> None:
    check(request(given_at="2026-05-01T00:00:00Z"), withdrawals=[withdrawal("2026-04-01T00:00:00Z")])


def test_partial_withdrawal_refuses_only_overlapping_purposes() -> None:
    partial = withdrawal("2026-04-01T00:00:00Z", "some_purposes", ("assistance",))
    check(request(), withdrawals=[partial])  # the example asks safety_assessment + family_tracing
    overlapping = withdrawal("2026-04-01T00:00:00Z", "some_purposes", ("family_tracing",))
    with pytest.raises(consent.ConsentWithdrawnError):
        check(request(), withdrawals=[overlapping])


def test_a_date_of_birth_under_18_makes_a_minor_even_if_the_flag_says_otherwise() -> None:
    payload = request()
    payload["person"]["age"] = {"minor": False, "date_of_birth": "2010-06-02", "estimated": False}
    with pytest.raises(consent.ConsentDecisionMakerError):
        check(payload)  # 15 on NOW (turns 16 the next day)
    payload["person"]["age"]["date_of_birth"] = "2008-06-01"
    check(payload)  # 18 exactly on NOW


# --- version 2: consent scoped to recipient agencies and purposes -------------------------


def request_v2(recipients, purposes=("assistance",)):
    payload = copy.deepcopy(load_example("referral.request", "interpreter_uncoded_language", "2"))
    payload["purposes"] = list(purposes)
    payload["consent"]["recipients"] = recipients
    payload["consent"]["given_at"] = "2026-05-01T09:00:00Z"
    return payload


def test_v2_consent_for_naptip_assistance_does_not_cover_an_ng_police_agency() -> None:
    payload = request_v2([{"agency": "NG-NAPTIP", "purposes": ["assistance"]}])
    check(payload, recipient="NG-NAPTIP", country="NG")
    with pytest.raises(consent.ConsentRecipientError) as info:
        check(payload, recipient="NG-POLICE", country="NG")
    assert info.value.path == "$.consent.recipients"
    assert "Dogon" not in str(info.value)


def test_v2_consent_covers_only_the_purposes_granted_to_that_agency() -> None:
    recipients = [{"agency": "NG-NAPTIP", "purposes": ["assistance"]},
                  {"agency": "NG-POLICE", "purposes": ["criminal_justice_cooperation"]}]
    payload = request_v2(recipients, purposes=("criminal_justice_cooperation",))
    check(payload, recipient="NG-POLICE")
    with pytest.raises(consent.ConsentPurposeError) as info:
        check(payload, recipient="NG-NAPTIP")
    assert info.value.path == "$.consent.recipients[0].purposes"
    assert "criminal_justice_cooperation" in str(info.value)


def test_v2_entries_for_one_agency_add_up() -> None:
    recipients = [{"agency": "NG-NAPTIP", "purposes": ["assistance"]},
                  {"agency": "NG-NAPTIP", "purposes": ["family_tracing"]}]
    check(request_v2(recipients, purposes=("assistance", "family_tracing")))


def test_v2_country_of_the_recipient_is_not_enough() -> None:
    # v1 could consent to "Nigeria"; a v2 consent always names the agency.
    with pytest.raises(consent.ConsentRecipientError):
        check(request_v2([{"agency": "NG-IOM", "purposes": ["assistance"]}]), recipient="NG-NAPTIP", country="NG")


def test_v1_consent_keeps_its_country_rule() -> None:
    check(request(recipient_countries=["NG"], recipient_agencies=None), recipient="NG-POLICE", country="NG")


def test_v2_minor_may_consent_through_an_appointed_guardian() -> None:
    payload = copy.deepcopy(load_example("referral.request", "minor_guardian", "2"))
    payload["consent"]["decision_maker"] = "appointed_guardian"
    check(payload)
    payload["consent"]["decision_maker"] = "self"
    with pytest.raises(consent.ConsentDecisionMakerError):
        check(payload)
