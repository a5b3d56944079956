"""The adapter errors: why a local record (or a shared payload) could not be adapted.

Messages never carry personal data: they name the local field and say why; values are
quoted only for coded fields (see ``adapters/base.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

from gateway.errors import GatewayError
from gateway.i18n import Message, msg


class AdapterError(GatewayError):
    """A local record (or a shared payload) could not be adapted; the subclass says why.

    Structured so a translation layer can render it in the reader's language without parsing
    the English text: ``local_field`` is the dotted local path (``type_exploitation[1]``) or
    ``None``; ``reason_code`` is a stable code for the reason (``not_in_code_list``,
    ``not_a_date``...); ``params`` are the reason's parameters (a date hint, a code list's
    label and accepted spellings, a length limit) and never hold a submitted value.
    ``quoted`` is the submitted value of a *coded* field (vocabulary, e.g. ``'pêche'``),
    kept apart from ``params`` so an HTTP answer can leave it out. ``str(error)`` is English.
    """

    code = "adapter_error"

    def __init__(self, message: str, local_field: str | None = None, *, reason_code: str | None = None,
                 params: Mapping[str, Any] | None = None, quoted: str | None = None) -> None:
        self.local_field = local_field
        self.reason_code = reason_code or self.code
        self.params: dict[str, Any] = dict(params or {})
        self.quoted = quoted
        super().__init__(message)

    @property
    def errors(self) -> tuple[AdapterError, ...]:
        """Every problem this error stands for (itself, or each one of a :class:`RecordErrors`)."""
        return (self,)

    def as_dict(self) -> dict[str, Any]:
        """The error as data (no submitted value): code, reason code, local field, parameters."""
        return {"code": self.code, "reason_code": self.reason_code, "local_field": self.local_field,
                "params": dict(self.params)}


class FieldError(AdapterError):
    """A problem with one named local field: ``str(error)`` is ``"<local field>: <reason>"``."""

    code = "field_error"

    def __init__(self, local_field: str, reason: str, *, reason_code: str | None = None,
                 params: Mapping[str, Any] | None = None, quoted: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"{local_field}: {reason}", local_field, reason_code=reason_code, params=params,
                         quoted=quoted)


class UnmappableValueError(FieldError):
    """A local value has no shared equivalent (not in the code list, not a date, ...).

    The reason quotes the value only when the field is coded (has a code list); free-text
    and name fields are never echoed, since their values may be personal data.
    """

    code = "unmappable_value"


class MissingFieldError(FieldError):
    """A field the shared schema requires is absent or holds a missing value ("inconnu", "")."""

    code = "missing_field"

    def __init__(self, local_field: str, reason: str = "is required and has no value", *,
                 reason_code: str | None = "required", params: Mapping[str, Any] | None = None,
                 quoted: str | None = None) -> None:
        super().__init__(local_field, reason, reason_code=reason_code, params=params, quoted=quoted)


class LocalRecordInvalidError(FieldError):
    """The local record does not have the shape its local JSON Schema describes."""

    code = "local_record_invalid"


class RecordErrors(AdapterError):
    """Several problems in one record, all reported at once (a clerk fixes them in one go).

    ``errors`` lists them in the order of the form (local shape first, then the table's
    rows, then the rules across fields); at most one per local field.
    """

    code = "record_invalid"

    def __init__(self, errors: Sequence[AdapterError]) -> None:
        self._errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self._errors),
                         reason_code="several", params={"count": len(self._errors)})

    @property
    def errors(self) -> tuple[AdapterError, ...]:
        """Each problem, in form order."""
        return self._errors

    def as_dict(self) -> dict[str, Any]:
        """The problems as data: ``{"code": "record_invalid", "errors": [...]}``."""
        return {**super().as_dict(), "errors": [e.as_dict() for e in self._errors]}


def flatten(errors: Iterable[AdapterError]) -> list[AdapterError]:
    """The single problems behind these errors, at most one per local field, first one kept."""
    out: list[AdapterError] = []
    seen: set[str] = set()
    for error in errors:
        for one in error.errors:
            if one.local_field is not None and one.local_field in seen:
                continue
            if one.local_field is not None:
                seen.add(one.local_field)
            out.append(one)
    return out


def raise_all(errors: Iterable[AdapterError]) -> None:
    """Raise nothing, the one problem itself, or a :class:`RecordErrors` holding all of them."""
    flat = flatten(errors)
    if len(flat) == 1:
        raise flat[0]
    if flat:
        raise RecordErrors(flat)


def raise_group(errors: Iterable[AdapterError]) -> NoReturn:
    """Like :func:`raise_all` for a non-empty list."""
    raise_all(errors)
    raise AssertionError("raise_group needs at least one error")


class PurposesError(AdapterError):
    """The requested purposes are unknown, empty, or not covered by the recorded consent."""

    code = "purposes_invalid"


class UnknownFormatError(AdapterError):
    """No adapter is registered for this format id."""

    code = "unknown_format"


class MappingDefinitionError(AdapterError):
    """The mapping table itself is wrong (unknown transform or code list, code not in the shared enum).

    A programming error in the adapter, raised when the table is loaded, never per record.
    """

    code = "mapping_definition"


# --- FHIR export ------------------------------------------------------------------------


class FhirExportError(GatewayError, ValueError):
    """The input cannot be exported to FHIR (``adapters/fhir/export.py``); the message names
    the field, never a payload value. Also a ValueError, as it always was."""

    code = "fhir_export_invalid"


class AuditExportError(GatewayError, ValueError):
    """An audit entry cannot be exported as a FHIR AuditEvent (``adapters/fhir/audit.py``);
    the message names the field, never its value. Also a ValueError, as it always was."""

    code = "audit_export_invalid"


# --- the text of an adapter error, for a reader in another language ----------------------

#: Today's reasons (adapters/engine.py, adapters/transforms.py, the country adapters) as
#: translatable templates: (pattern of the English reason, template marked with ``msg``). Parameters keep field
#: names, code-list names and limits; a value quoted for a coded field is left out, so an
#: answer never echoes a submitted value. A reason that is already a ``Message`` (see
#: ``adapter_detail``) needs no entry here.
_REASONS: tuple[tuple[re.Pattern[str], Message], ...] = (
    (re.compile(r"must be a date written (?P<hint>.+)"),
     msg("must be a date written {hint}")),
    (re.compile(r"is required and has no value"),
     msg("is required and has no value")),
    (re.compile(r"is required by the local format"),
     msg("is required by the local format")),
    (re.compile(r"is required: the consent record travels with every referral"),
     msg("is required: the consent record travels with every referral")),
    (re.compile(r"is required when (?P<other>\S+) is given"),
     msg("is required when {other} is given")),
    (re.compile(r"is required unless (?P<other>\S+) is given"),
     msg("is required unless {other} is given")),
    (re.compile(r"is needed when the age is unknown \(presume minority: say the person is a minor when there are "
                r"reasons to believe so\)"),
     msg("is needed when the age is unknown (presume minority: say the person is a minor when there are reasons "
         "to believe so)")),
    (re.compile(r"contradicts (?P<other>\S+)"),
     msg("contradicts {other}")),
    (re.compile(r"is after the date of identification \(or of consent\)"),
     msg("is after the date of identification (or of consent)")),
    (re.compile(r"implies an age over 120"),
     msg("implies an age over 120")),
    (re.compile(r"a minor cannot consent alone: .*"),
     msg("a minor cannot consent alone: a parent/guardian, the child protection service or a judge of minors "
         "must give the consent")),
    (re.compile(r"must be an object"),
     msg("must be an object")),
    (re.compile(r"must be a list"),
     msg("must be a list")),
    (re.compile(r"must be a single value"),
     msg("must be a single value")),
    (re.compile(r"must be text"),
     msg("must be text")),
    (re.compile(r"is empty"),
     msg("is empty")),
    (re.compile(r"is longer than (?P<limit>\d+) characters"),
     msg("is longer than {limit} characters")),
    (re.compile(r"must be a whole number"),
     msg("must be a whole number")),
    (re.compile(r"must be between (?P<low>-?\d+) and (?P<high>-?\d+)"),
     msg("must be between {low} and {high}")),
    (re.compile(r"has a year outside 1900-2100"),
     msg("has a year outside 1900-2100")),
    (re.compile(r"is not a calendar date \((?P<form>[^)]*)\)"),
     msg("is not a calendar date ({form})")),
    (re.compile(r"must be a date (?P<form>.+)"),
     msg("must be a date {form}")),
    (re.compile(r"has an impossible time \(HH:MM\[:SS\]\)"),
     msg("has an impossible time (HH:MM[:SS])")),
    (re.compile(r"is not an international phone number \(\+ country code, 7-15 digits\)"),
     msg("is not an international phone number (+ country code, 7-15 digits)")),
    (re.compile(r"is not an ISO 3166-1 alpha-2 country code"),
     msg("is not an ISO 3166-1 alpha-2 country code")),
    (re.compile(r".* is not in the code list for (?P<codes>.+?) \(accepted: (?P<accepted>[^)]*)\)"),
     msg("is not in the code list for {codes} (accepted: {accepted})")),
    (re.compile(r".* is not in the code list for (?P<codes>.+?) \(see the code list '(?P<name>[^']+)' in "
                r"docs/adapters\.md\)"),
     msg("is not in the code list for {codes} (see the code list '{name}' in docs/adapters.md)")),
    (re.compile(r"\[(?P<index>\d+)\]\.(?P<key>\w+): .* is not in the code list for (?P<codes>.+)"),
     msg("[{index}].{key}: is not in the code list for {codes}")),
    (re.compile(r".* is not in the code list for (?P<codes>.+)"),
     msg("is not in the code list for {codes}")),
    (re.compile(r".* has no local spelling in the code list for (?P<codes>.+)"),
     msg("has no local spelling in the code list for {codes}")),
    (re.compile(r"is not a field of the local format"),
     msg("is not a field of the local format")),
    (re.compile(r"must be of type (?P<types>[a-z ]+)"),
     msg("must be of type {types}")),
    (re.compile(r"is not an allowed value"),
     msg("is not an allowed value")),
    (re.compile(r"must match the pattern (?P<pattern>.+)"),
     msg("must match the pattern {pattern}")),
    (re.compile(r"must be at most (?P<limit>\d+) characters long"),
     msg("must be at most {limit} characters long")),
    (re.compile(r"must be at least (?P<limit>\d+) characters long"),
     msg("must be at least {limit} characters long")),
    (re.compile(r"must have at most (?P<limit>\d+) items"),
     msg("must have at most {limit} items")),
    (re.compile(r"must have at least (?P<limit>\d+) items"),
     msg("must have at least {limit} items")),
    (re.compile(r"is written year first: write the date as (?P<hint>.+)"),
     msg("is written year first: write the date as {hint}")),
    (re.compile(r"must be written as (?P<hint>.+)"),
     msg("must be written as {hint}")),
    (re.compile(r"is not written the way the form expects"),
     msg("is not written the way the form expects")),
    (re.compile(r"has no valid country code"),
     msg("has no valid country code")),
    (re.compile(r"is too short for a phone number of (?P<country>[A-Z]{2})"),
     msg("is too short for a phone number of {country}")),
    (re.compile(r"is too long for a phone number of (?P<country>[A-Z]{2})"),
     msg("is too long for a phone number of {country}")),
    (re.compile(r"is too short for a phone number( of its country)?"),
     msg("is too short for a phone number")),
    (re.compile(r"is too long for a phone number( of its country)?"),
     msg("is too long for a phone number")),
    (re.compile(r"does not have a length phone numbers of (?P<country>[A-Z]{2}) have"),
     msg("does not have a length phone numbers of {country} have")),
    (re.compile(r"does not have a length phone numbers of its country have"),
     msg("does not have the length of a phone number of its country")),
    (re.compile(r"is not a number in use in (?P<country>[A-Z]{2})'s numbering plan"),
     msg("is not a number in use in the numbering plan of {country}")),
    (re.compile(r"is not a number in use in its country's numbering plan"),
     msg("is not a number in use in its country's numbering plan")),
    (re.compile(r"is not a phone number"),
     msg("is not a phone number")),
    (re.compile(r"does not name the recipient agency, nor does the consent name its country: the consent does "
                r"not cover this recipient"),
     msg("does not name the recipient agency, nor does the consent name its country: the consent does not cover "
         "this recipient")),
    (re.compile(r"is required for a schema v2 referral \(v2 consent names the recipient agencies\) unless the "
                r"recipient agency is given"),
     msg("is required for a schema v2 referral (v2 consent names the recipient agencies) unless the recipient "
         "agency is given")),
    (re.compile(r"is not an HTCDS 2\.0 field: use (?P<use>\S+)"),
     msg("is not an HTCDS 2.0 field: use {use}")),
    # the local schema's other rules (engine._describe_local)
    (re.compile(r"must be one of: (?P<accepted>.+)"),
     msg("must be one of: {accepted}")),
    (re.compile(r"must be >= (?P<limit>-?[\d.]+)"),
     msg("must be at least {limit}")),
    (re.compile(r"must be <= (?P<limit>-?[\d.]+)"),
     msg("must be at most {limit}")),
    (re.compile(r"breaks the local format's '(?P<rule>\w+)' rule"),
     msg("breaks the local format's '{rule}' rule")),
    # the consent and the purposes (engine)
    (re.compile(r"is required: the consent names the recipient agencies and their purposes"),
     msg("is required: the consent names the recipient agencies and their purposes")),
    (re.compile(r"(?P<purposes>'\w+'(, '\w+')*) not consented for any recipient"),
     msg("{purposes} not consented for any recipient")),
    (re.compile(r"(?P<purposes>'\w+'(, '\w+')*) not consented"),
     msg("{purposes} not consented")),
    # Nigeria and Mali: the place of origin
    (re.compile(r"is required when state_of_origin is given \(unless the state of origin is a Nigerian state\)"),
     msg("is required when state_of_origin is given (unless the state of origin is a Nigerian state)")),
    (re.compile(r"is required when region_origine, cercle or commune is given"),
     msg("is required when region_origine, cercle or commune is given")),
    # HTCDS (adapters/htcds/)
    (re.compile(r".* is not in the HTCDS 2\.0 picklist for (?P<field>\S+)"),
     msg("is not in the HTCDS 2.0 picklist for {field}")),
    (re.compile(r"must be a checkbox value \(true or false\)"),
     msg("must be a checkbox value (true or false)")),
    (re.compile(r"is false: without the person's consent nothing can be referred"),
     msg("is false: without the person's consent nothing can be referred")),
    (re.compile(r"give the consent either as (?P<recipients>\S+) or as (?P<agencies>\S+) with (?P<purposes>\S+), not both"),
     msg("give the consent either as {recipients} or as {agencies} with {purposes}, not both")),
    (re.compile(r"is required when (?P<other>\S+) is given \(or use (?P<alternative>\S+)\)"),
     msg("is required when {other} is given (or use {alternative})")),
    (re.compile(r"is required when any of (?P<fields>.+) is given"),
     msg("is required when any of {fields} is given")),
    (re.compile(r"disagrees with (?P<other>\S+): list the same values in both"),
     msg("disagrees with {other}: list the same values in both")),
    (re.compile(r"child protection fields are for a minor only \(x_rgw_IsMinor, prs_Birthdate or the age say the "
                r"person is an adult\)"),
     msg("child protection fields are for a minor only (x_rgw_IsMinor, prs_Birthdate or the age say the person is "
         "an adult)")),
    (re.compile(r"must be other than None when (?P<other>\S+) is given"),
     msg("must be other than None when {other} is given")),
    (re.compile(r"is required when (?P<other>\S+) is Yes"),
     msg("is required when {other} is Yes")),
    (re.compile(r"is required \(and not Pending\) when the determination is completed"),
     msg("is required (and not Pending) when the determination is completed")),
    (re.compile(r"is given only once (?P<other>\S+) is Completed"),
     msg("is given only once {other} is Completed")),
    (re.compile(r"is required for the purpose (?P<purpose>\w+)"),
     msg("is required for the purpose {purpose}")),
    (re.compile(r"criminal_justice_cooperation needs the person's agreement \(the person keeps every assistance "
                r"purpose without it\)"),
     msg("criminal_justice_cooperation needs the person's agreement (the person keeps every assistance purpose "
         "without it)")),
    (re.compile(r"must be a date-time (?P<form>.+)"),
     msg("must be a date-time {form}")),
    (re.compile(r"has an impossible UTC offset"),
     msg("has an impossible UTC offset")),
    (re.compile(r"is not an ISO 639 language code \(ISO 639-2, e\.g\. hau, fre/fra, eng; mis:<name> for a "
                r"language without a code\)"),
     msg("is not an ISO 639 language code (ISO 639-2, e.g. hau, fre/fra, eng; mis:<name> for a language without "
         "a code)")),
    (re.compile(r"has a language name longer than (?P<limit>\d+) characters"),
     msg("has a language name longer than {limit} characters")),
    (re.compile(r"must be a list of children \(AgeBand, Documents, NeedsEscort, Relationship\) or a number"),
     msg("must be a list of children (AgeBand, Documents, NeedsEscort, Relationship) or a number")),
    (re.compile(r"\[(?P<index>\d+)\]\.(?P<key>\w+) is required"),
     msg("[{index}].{key} is required")),
    (re.compile(r"\[(?P<index>\d+)\] must be an object"),
     msg("[{index}] must be an object")),
)


def reason_text(reason: str) -> str:
    """An adapter error's reason as a translatable text (gateway/i18n.py); unknown reasons as they are."""
    if isinstance(reason, Message):
        return reason
    for pattern, template in _REASONS:
        found = pattern.fullmatch(reason)
        if found:
            params: dict[str, Any] = dict(found.groupdict())
            if isinstance(params.get("codes"), str):
                params["codes"] = msg(params["codes"])  # a code list's label (adapters.codes.extract_labels)
            return msg(template.template, **params)
    return reason


def adapter_detail(exc: AdapterError) -> str:
    """The text of an adapter error for an API answer: field and rule, translatable, no submitted value.

    A :class:`FieldError` is rendered as "<local field>: <reason>", with coded values left
    out; an unknown field's name is not echoed either.
    """
    if isinstance(exc, PurposesError) and exc.local_field and str(exc).startswith(f"{exc.local_field}: "):
        # "<consent field>: 'assistance' not consented": a field and a reason like a FieldError's
        return msg("{field}: {reason}", field=exc.local_field,
                   reason=reason_text(str(exc).removeprefix(f"{exc.local_field}: ")))
    if not isinstance(exc, FieldError):
        return str(exc)
    if isinstance(exc, LocalRecordInvalidError) and exc.reason.startswith("is not a field"):
        return msg("$.record: has a field the local format does not have (names are not echoed)")
    return msg("{field}: {reason}", field=exc.local_field, reason=reason_text(exc.reason))


def _check_keys(where: str, spec: Mapping[str, Any], known: set[str]) -> None:
    """Refuse a mapping definition with keys this engine does not know (a typo is not ignored)."""
    unknown = set(spec) - known
    if unknown:
        raise MappingDefinitionError(f"{where}: unknown keys {sorted(unknown)}")
