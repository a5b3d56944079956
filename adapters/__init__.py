"""Country adapters: local case formats <-> the shared ``referral.request`` payload.

``get_adapter("niger").to_shared(record, purposes)`` -> :class:`AdaptResult`;
``.from_shared(payload)`` -> local record. See ``docs/adapters.md``.
"""

from adapters.base import (
    AdaptResult,
    Adapter,
    AdapterError,
    DroppedField,
    LocalRecordInvalidError,
    MappingAdapter,
    MappingDefinitionError,
    MissingFieldError,
    PurposesError,
    RecordErrors,
    UnknownFormatError,
    UnmappableValueError,
)
from adapters.registry import available_formats, get_adapter

__all__ = [
    "AdaptResult",
    "Adapter",
    "AdapterError",
    "DroppedField",
    "LocalRecordInvalidError",
    "MappingAdapter",
    "MappingDefinitionError",
    "MissingFieldError",
    "PurposesError",
    "RecordErrors",
    "UnknownFormatError",
    "UnmappableValueError",
    "available_formats",
    "get_adapter",
]
