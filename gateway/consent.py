"""The consent policy: may this referral go to (or be accepted from) this agency now?

The schema checks what the payload alone shows (purposes inside ``consent.purposes``, or in
v2 inside some ``consent.recipients`` entry; a minor's decision maker). This policy adds what needs the header, the directory, the
clock or the case history: the recipient is covered, the consent is in force, and no
withdrawal recorded for the case covers it. The sending gateway runs it before sealing
(refusal → HTTP 422, audited); the receiving gateway runs it again and quarantines what
fails, so a non-conforming sender cannot push data past it. See docs/consent.md.

Errors name JSON paths and codes only, never values from the person record.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Iterable

from gateway.clock import parse_ts
from gateway.errors import GatewayError
from gateway.store.base import Withdrawal

#: Who may consent for a child (schema: ``decision_maker`` enum without ``self``; v2 adds appointed_guardian).
MINOR_DECISION_MAKERS = frozenset(
    {"parent_guardian", "guardian_with_child_protection", "judge_of_minors", "appointed_guardian"}
)


class ConsentRefusedError(GatewayError):
    """The consent record does not allow this message; the subclass says why."""

    code = "consent_refused"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


class ConsentMissingError(ConsentRefusedError):
    code = "consent_missing"


class ConsentRecipientError(ConsentRefusedError):
    code = "consent_recipient_not_covered"


class ConsentPurposeError(ConsentRefusedError):
    code = "consent_purpose_not_covered"


class ConsentNotYetValidError(ConsentRefusedError):
    code = "consent_not_yet_valid"


class ConsentExpiredError(ConsentRefusedError):
    code = "consent_expired"


class ConsentDecisionMakerError(ConsentRefusedError):
    code = "consent_decision_maker"


class ConsentWithdrawnError(ConsentRefusedError):
    code = "consent_withdrawn"


def check_referral_consent(
    payload: dict[str, Any],
    *,
    recipient: str,
    recipient_country: str,
    now: datetime,
    withdrawals: Iterable[Withdrawal] = (),
) -> None:
    """Raise a ConsentRefusedError unless the request's consent covers ``recipient`` now.

    A v1 consent covers the recipient by agency or by country, for all its purposes; a v2
    consent names each recipient agency with the purposes granted to it, so consent given
    to one agency of a country never covers another (NAPTIP's protection work is not the
    police's investigation).
    """
    consent = payload.get("consent")
    if not isinstance(consent, dict):
        raise ConsentMissingError("$.consent", "a referral.request must carry a consent record")
    purposes = payload.get("purposes") or []
    if "schema_version" in payload:
        _check_recipient_v2(consent, recipient, purposes)
    else:
        _check_recipient_v1(consent, recipient, recipient_country, purposes)
    given_at, expires_at = _when(consent, "given_at"), _when(consent, "expires_at")
    if given_at >= expires_at:
        raise ConsentExpiredError("$.consent.expires_at", "is not after given_at")
    if now < given_at:
        raise ConsentNotYetValidError("$.consent.given_at", "is in the future")
    if now >= expires_at:
        raise ConsentExpiredError("$.consent.expires_at", "has passed")
    if _is_minor(payload, now) and consent.get("decision_maker") not in MINOR_DECISION_MAKERS:
        raise ConsentDecisionMakerError(
            "$.consent.decision_maker", f"a minor's consent must come from one of {sorted(MINOR_DECISION_MAKERS)}")
    for withdrawal in withdrawals:
        if _withdrawal_covers(withdrawal, given_at, purposes):
            raise ConsentWithdrawnError(
                "$.consent", f"was withdrawn on {withdrawal.withdrawn_at:%Y-%m-%d} (withdrawal {withdrawal.message_id});"
                " a new consent given after that date is needed")


def v1_consent_covers(payload: dict[str, Any], recipient: str, recipient_country: str) -> bool:
    """True if a v1 request's consent names the recipient agency or its country."""
    consent = payload.get("consent")
    if not isinstance(consent, dict):
        return False
    return recipient in (consent.get("recipient_agencies") or []) or recipient_country in (
        consent.get("recipient_countries") or [])


def _check_recipient_v1(consent: dict[str, Any], recipient: str, country: str, purposes: list[str]) -> None:
    if not v1_consent_covers({"consent": consent}, recipient, country):
        raise ConsentRecipientError(
            "$.consent", "covers neither the recipient agency ($.recipient) nor its country "
                         "(recipient_agencies, recipient_countries)")
    missing = sorted(set(purposes) - set(consent.get("purposes") or []))
    if missing:
        raise ConsentPurposeError("$.consent.purposes", f"does not include every purpose of $.purposes ({len(missing)} missing)")


def _check_recipient_v2(consent: dict[str, Any], recipient: str, purposes: list[str]) -> None:
    entries = [(i, e) for i, e in enumerate(consent.get("recipients") or [])
               if isinstance(e, dict) and e.get("agency") == recipient]
    if not entries:
        raise ConsentRecipientError(
            "$.consent.recipients", "does not name the recipient agency ($.recipient); consent to another agency, "
                                    "even of the same country, does not cover it")
    granted = {p for _, e in entries for p in e.get("purposes") or []}
    missing = sorted(set(purposes) - granted)
    if missing:
        raise ConsentPurposeError(
            f"$.consent.recipients[{entries[0][0]}].purposes",
            f"does not grant the recipient agency every purpose of $.purposes (not granted: {', '.join(missing)})")


def _is_minor(payload: dict[str, Any], now: datetime) -> bool:
    # The flag, or a date of birth less than 18 years before now: the schema cross-checks
    # years and band against the flag, not a date of birth, so the policy does.
    age = (payload.get("person") or {}).get("age") or {}
    if age.get("minor") is True:
        return True
    born = age.get("date_of_birth")
    if isinstance(born, str):
        try:
            birth = date.fromisoformat(born[:10])
        except ValueError:
            return False
        today = now.date()
        years = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
        return years < 18
    return False


def _withdrawal_covers(withdrawal: Withdrawal, given_at: datetime, purposes: Iterable[str]) -> bool:
    # A consent given after the withdrawal is a new decision and stands on its own.
    if withdrawal.withdrawn_at < given_at:
        return False
    if withdrawal.scope == "all_purposes":
        return True
    return bool(set(withdrawal.purposes) & set(purposes))


def _when(consent: dict[str, Any], name: str) -> datetime:
    try:
        return parse_ts(consent.get(name))  # type: ignore[arg-type]
    except ValueError:
        raise ConsentMissingError(f"$.consent.{name}", "must be a timestamp YYYY-MM-DDTHH:MM:SSZ") from None
