"""FHIR R4B export of referral requests and audit entries (see docs/fhir.md)."""

from adapters.fhir.audit import AuditExportError, audit_event
from adapters.fhir.codes import TASK_STATUS, code_system
from adapters.fhir.export import FHIR_RELEASE, FhirExportError, referral_bundle

__all__ = [
    "FHIR_RELEASE",
    "TASK_STATUS",
    "AuditExportError",
    "FhirExportError",
    "audit_event",
    "code_system",
    "referral_bundle",
]
