"""Country adapters: the interface, the declarative mapping engine, and the adapter errors.

This module is a facade: the code lives in one module per concern, and every name that
was importable from ``adapters.base`` still is:

- ``adapters/errors.py``: the adapter errors;
- ``adapters/results.py``: :class:`AdaptResult`, :class:`DroppedField`, the :class:`Adapter` interface;
- ``adapters/codes.py``: :func:`normalise` and :class:`CodeList`;
- ``adapters/transforms.py``: the named transforms (:data:`TRANSFORMS`);
- ``adapters/table.py``: the mapping table (:class:`MappingTable`, :class:`Rule`);
- ``adapters/paths.py``: dotted paths (:func:`get_path`, :func:`set_path`, :func:`delete_path`);
- ``adapters/engine.py``: :class:`MappingAdapter`, which applies a table.

What an adapter does, in five steps, and why errors never carry personal data: see
the docstring of ``adapters/engine.py`` and ``docs/adapters.md``.
"""

from __future__ import annotations

from adapters.codes import _ECHO_MAX, COMMON_SCHEMA, CodeList, _common_defs, _echo, _hashable, normalise
from adapters.engine import (
    _IDENTIFIER,
    MappingAdapter,
    _describe_local,
    _local_join,
    _local_path,
    _Trace,
    _within,
    shared_request_fields,
)
from adapters.errors import (
    AdapterError,
    LocalRecordInvalidError,
    MappingDefinitionError,
    MissingFieldError,
    PurposesError,
    RecordErrors,
    UnknownFormatError,
    UnmappableValueError,
    _check_keys,
)
from adapters.paths import _MISSING, _join, delete_path, get_path, set_path
from adapters.results import Adapter, AdaptResult, DroppedField
from adapters.table import _RULE_KEYS, _UNSET, MESSAGE_TYPE, MappingTable, Rule, _walk_rules
from adapters.transforms import TRANSFORMS, Transform, TransformFailed

__all__ = [
    "COMMON_SCHEMA",
    "MESSAGE_TYPE",
    "TRANSFORMS",
    "AdaptResult",
    "Adapter",
    "AdapterError",
    "CodeList",
    "DroppedField",
    "LocalRecordInvalidError",
    "MappingAdapter",
    "MappingDefinitionError",
    "MappingTable",
    "MissingFieldError",
    "PurposesError",
    "RecordErrors",
    "Rule",
    "Transform",
    "TransformFailed",
    "UnknownFormatError",
    "UnmappableValueError",
    "delete_path",
    "get_path",
    "normalise",
    "set_path",
    "shared_request_fields",
    # private helpers that adapters and tests import from here
    "_ECHO_MAX",
    "_IDENTIFIER",
    "_MISSING",
    "_RULE_KEYS",
    "_UNSET",
    "_Trace",
    "_check_keys",
    "_common_defs",
    "_describe_local",
    "_echo",
    "_hashable",
    "_join",
    "_local_join",
    "_local_path",
    "_walk_rules",
    "_within",
]
