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

An adapter turns one agency's local case record into the shared ``referral.request``
payload (``to_shared``) and back (``from_shared``). Most of that is *data*: a mapping
table (``mapping.json`` beside the adapter) that says which local field goes to which
shared path, through which code list or named transform, and what a missing value
becomes. Code is only for the genuinely odd cases (hooks on :class:`MappingAdapter`).
See ``docs/adapters.md``.

``to_shared`` works in five steps, each with its own error:

1. the local record is checked against the adapter's local JSON Schema
   (:class:`LocalRecordInvalidError`, :class:`MissingFieldError`);
2. the table is applied (:class:`UnmappableValueError`, :class:`MissingFieldError`);
3. fields the purposes do not allow are removed and *reported* in
   :attr:`AdaptResult.dropped` -- never silently;
4. the shared rules that span fields (age and minor flag, consent covers the purposes, a
   minor cannot consent alone) are checked and named by *local* field;
5. the payload is validated with :func:`gateway.schema.validate_payload`. Anything that
   still fails there is a mapping bug and surfaces as ``SchemaInvalidError``.

Errors never carry personal data: a message names the local field (``contacts_famille[0].telephone``)
and says why, and quotes the offending value only for *coded* fields (a field with a code
list, whose legitimate values are vocabulary such as ``'pêche'``). Free-text, name, date,
phone and number fields are never echoed, because a clerk's value there may be a name.
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
