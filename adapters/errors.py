"""The adapter errors: why a local record (or a shared payload) could not be adapted.

Messages never carry personal data: they name the local field and say why; values are
quoted only for coded fields (see ``adapters/base.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

from gateway.errors import GatewayError


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


class UnmappableValueError(AdapterError):
    """A local value has no shared equivalent (not in the code list, not a date, ...).

    The reason quotes the value only when the field is coded (has a code list); free-text
    and name fields are never echoed, since their values may be personal data.
    """

    code = "unmappable_value"

    def __init__(self, local_field: str, reason: str, *, reason_code: str | None = None,
                 params: Mapping[str, Any] | None = None, quoted: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"{local_field}: {reason}", local_field, reason_code=reason_code, params=params,
                         quoted=quoted)


class MissingFieldError(AdapterError):
    """A field the shared schema requires is absent or holds a missing value ("inconnu", "")."""

    code = "missing_field"

    def __init__(self, local_field: str, reason: str = "is required and has no value", *,
                 reason_code: str = "required", params: Mapping[str, Any] | None = None) -> None:
        self.reason = reason
        super().__init__(f"{local_field}: {reason}", local_field, reason_code=reason_code, params=params)


class LocalRecordInvalidError(AdapterError):
    """The local record does not have the shape its local JSON Schema describes."""

    code = "local_record_invalid"

    def __init__(self, local_field: str, reason: str, *, reason_code: str | None = None,
                 params: Mapping[str, Any] | None = None, quoted: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"{local_field}: {reason}", local_field, reason_code=reason_code, params=params,
                         quoted=quoted)


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


def _check_keys(where: str, spec: Mapping[str, Any], known: set[str]) -> None:
    """Refuse a mapping definition with keys this engine does not know (a typo is not ignored)."""
    unknown = set(spec) - known
    if unknown:
        raise MappingDefinitionError(f"{where}: unknown keys {sorted(unknown)}")
