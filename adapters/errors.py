"""The adapter errors: why a local record (or a shared payload) could not be adapted.

Messages never carry personal data: they name the local field and say why; values are
quoted only for coded fields (see ``adapters/base.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.errors import GatewayError


class AdapterError(GatewayError):
    """A local record (or a shared payload) could not be adapted; the subclass says why.

    ``local_field`` is the dotted local path (``type_exploitation[1]``) or ``None``.
    Messages never carry personal data: values are quoted only for coded fields.
    """

    code = "adapter_error"

    def __init__(self, message: str, local_field: str | None = None) -> None:
        self.local_field = local_field
        super().__init__(message)


class UnmappableValueError(AdapterError):
    """A local value has no shared equivalent (not in the code list, not a date, ...).

    The reason quotes the value only when the field is coded (has a code list); free-text
    and name fields are never echoed, since their values may be personal data.
    """

    code = "unmappable_value"

    def __init__(self, local_field: str, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{local_field}: {reason}", local_field)


class MissingFieldError(AdapterError):
    """A field the shared schema requires is absent or holds a missing value ("inconnu", "")."""

    code = "missing_field"

    def __init__(self, local_field: str, reason: str = "is required and has no value") -> None:
        self.reason = reason
        super().__init__(f"{local_field}: {reason}", local_field)


class LocalRecordInvalidError(AdapterError):
    """The local record does not have the shape its local JSON Schema describes."""

    code = "local_record_invalid"

    def __init__(self, local_field: str, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{local_field}: {reason}", local_field)


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
