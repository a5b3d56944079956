"""Validate message payloads against the shared v1 and v2 JSON Schemas, with path-and-rule errors.

A payload declares its version: a v2 payload has ``"schema_version": "2"``, a v1 payload has
no such member (:func:`payload_version`). Validators, minimal-data tables and examples are
chosen by version.

Pure apart from reading the schema files once (cached). Violation messages are built from
the schema side only -- the keyword, the rule and property *names* -- and never quote the
instance value, because payloads carry personal data and errors end up in logs and audit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.errors import SchemaInvalidError, Violation

#: Every payload version this code reads and writes, oldest first.
SCHEMA_VERSIONS: tuple[str, ...] = ("1", "2")
LATEST_SCHEMA_VERSION: str = SCHEMA_VERSIONS[-1]
#: The versions whose payloads carry a ``schema_version`` member (all but version 1).
_DECLARED_VERSIONS: tuple[str, ...] = SCHEMA_VERSIONS[1:]
#: The version of a payload without a ``schema_version`` member (version 1).
SCHEMA_VERSION: str = "1"
SCHEMA_BASE_URI: str = "https://schemas.referral-gateway.example/v1/"
SCHEMA_BASE_URIS: dict[str, str] = {v: f"https://schemas.referral-gateway.example/v{v}/" for v in SCHEMA_VERSIONS}
MESSAGE_TYPES: tuple[str, ...] = (
    "referral.request",
    "referral.response",
    "safety_assessment.result",
    "family_tracing.result",
    "return.plan",
    "return.arrival",
    "case.followup",
    "case.closure",
    "consent.withdrawal",
    "receipt",
    "consent.withdrawal.ack",
    "audit.checkpoint",
)
#: The purposes of each version; v2 adds two to v1's five.
PURPOSES_BY_VERSION: dict[str, tuple[str, ...]] = {
    "1": ("assistance", "safety_assessment", "family_tracing", "assisted_return", "reintegration_handover"),
    "2": (
        "assistance",
        "safety_assessment",
        "family_tracing",
        "assisted_return",
        "reintegration_handover",
        "criminal_justice_cooperation",
        "international_protection",
    ),
}
#: Every purpose some version knows (a superset of each version's; v1's first).
PURPOSES: tuple[str, ...] = PURPOSES_BY_VERSION[LATEST_SCHEMA_VERSION]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
_EXAMPLES = SCHEMA_DIR / "examples"
_EXAMPLE_DIRS = {"1": _EXAMPLES, "2": _EXAMPLES / "v2"}
_MAX_NAME = 64
#: Errors explained per payload; enough to fix a form, small enough to never block the loop.
MAX_EXPLAINED = 25
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- loading and compiling (once) ------------------------------------------------------


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def version_dir(version: str) -> Path:
    """The folder of one version's schema files (``schemas/v2``)."""
    _check_version(version)
    return SCHEMA_DIR / f"v{version}"


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    """The schema documents of every version by $id."""
    docs = (_read(p) for v in SCHEMA_VERSIONS for p in sorted(version_dir(v).glob("*.schema.json")))
    return {doc["$id"]: doc for doc in docs}


def _check_version(version: object) -> str:
    if version not in SCHEMA_VERSIONS:
        raise SchemaInvalidError(
            "schema",
            [Violation("$.schema_version", "schema_version", "unknown schema version; expected one of: " + ", ".join(SCHEMA_VERSIONS))],
        )
    return str(version)


def payload_version(payload: object) -> str:
    """The schema version a payload declares: its ``schema_version`` member, or "1" without one.

    A declared value this code does not know is returned as is; validation then refuses it.
    """
    if isinstance(payload, Mapping) and "schema_version" in payload:
        declared = payload["schema_version"]
        return declared if isinstance(declared, str) else "?"
    return SCHEMA_VERSION


@cache
def _registry() -> Registry:
    # No retrieve callable: an unknown $ref fails instead of fetching from the network.
    resources = [
        (uri, Resource.from_contents(doc, default_specification=DRAFT202012))
        for uri, doc in _schemas().items()
    ]
    return Registry().with_resources(resources)


@cache
def _def_names() -> dict[int, str]:
    """id() of each $defs subschema -> "$defs/name", to name the rule in messages."""
    return {
        id(node): f"$defs/{name}" for doc in _schemas().values() for name, node in doc.get("$defs", {}).items()
    }


# Format is an annotation in 2020-12 and jsonschema's date-time check needs an optional
# package, so the shape is enforced by `pattern` and only calendar validity is checked here.
_FORMATS = FormatChecker(formats=())


@cache
def _shape(def_name: str) -> re.Pattern[str]:
    return re.compile(_schemas()[f"{SCHEMA_BASE_URI}common.schema.json"]["$defs"][def_name]["pattern"])


@_FORMATS.checks("date", raises=ValueError)
def _is_calendar_date(value: object) -> bool:
    if isinstance(value, str) and _shape("date").match(value):
        date.fromisoformat(value)  # 2024-02-30 has the right shape but is no date
    return True


@_FORMATS.checks("date-time", raises=ValueError)
def _is_calendar_date_time(value: object) -> bool:
    if isinstance(value, str) and _shape("date_time").match(value):
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


def schema_id(message_type: str, version: str = SCHEMA_VERSION) -> str:
    """The $id of the schema for a message type in one version."""
    return f"{SCHEMA_BASE_URIS[_check_version(version)]}{message_type}.schema.json"


def load_schema(message_type: str, version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The schema document of a message type in one version (shared and cached: do not mutate)."""
    _check_type(message_type)
    return _schemas()[schema_id(message_type, version)]


@cache
def _validator(message_type: str, version: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(message_type, version), registry=_registry(), format_checker=_FORMATS)


def _calendar_date(value: str) -> bool:
    try:
        _is_calendar_date(value)
    except ValueError:
        return False
    return True


def _calendar_date_time(value: str) -> bool:
    try:
        _is_calendar_date_time(value)
    except ValueError:
        return False
    return True


@cache
def _fast_validator(message_type: str, version: str) -> jsonschema_rs.Draft202012Validator:
    # The Rust engine answers "valid?" ~100x faster; the Python engine above explains
    # failures (paths, rules, our own messages). Same schemas, same format rules: only
    # date and date-time are checked (uuid shape is enforced by `pattern`).
    registry = jsonschema_rs.Registry(list(_schemas().items()))
    return jsonschema_rs.Draft202012Validator(
        load_schema(message_type, version),
        registry=registry,
        validate_formats=True,
        formats={"date": _calendar_date, "date-time": _calendar_date_time, "uuid": lambda _: True},
        offline=True,
    )


def _check_type(message_type: str) -> None:
    if message_type not in MESSAGE_TYPES:
        raise SchemaInvalidError(
            str(message_type),
            [Violation("$", "message_type", "unknown message type; expected one of: " + ", ".join(MESSAGE_TYPES))],
        )


# --- validation ------------------------------------------------------------------------


def version_violations(payload: object, expected: str) -> list[Violation]:
    """A violation when the payload's declared version is not ``expected`` (e.g. the envelope's)."""
    declared = payload_version(payload)
    if declared == expected:
        return []
    if declared not in SCHEMA_VERSIONS:
        return [Violation("$.schema_version", "schema_version", "unknown schema version; expected one of: " + ", ".join(SCHEMA_VERSIONS))]
    if expected == SCHEMA_VERSION:
        return [Violation("$.schema_version", "schema_version", f"a version {declared} payload where version 1 (no schema_version member) is expected")]
    return [Violation("$.schema_version", "schema_version", f"a version {declared} payload where version {expected} is expected")]


def find_violations(message_type: str, payload: object, version: str | None = None) -> list[Violation]:
    """Every rule the payload breaks, sorted by path and deduplicated (empty when valid).

    The payload is validated against the schema of the version it declares; with ``version``
    given, a payload declaring another version is refused (its only violation says so).
    """
    _check_type(message_type)
    if version is not None:
        _check_version(version)
        mismatch = version_violations(payload, version)
        if mismatch:
            return mismatch
    declared = payload_version(payload)
    if isinstance(payload, Mapping) and "schema_version" in payload and declared not in _DECLARED_VERSIONS:
        return [Violation("$.schema_version", "schema_version", "unknown schema version; must be one of: "
                          + ", ".join(_DECLARED_VERSIONS) + " (a version 1 payload has no schema_version member)")]
    if _fast_validator(message_type, declared).is_valid(payload):
        return []
    validator = _validator(message_type, declared)
    found = set()
    # Explaining is slow (pure Python); a hostile payload can break thousands of rules,
    # so the first MAX_EXPLAINED errors are explained and the rest only counted as invalid.
    for error in islice(validator.iter_errors(payload), MAX_EXPLAINED):
        # Every error must yield a violation, or an invalid payload would pass.
        found.update(
            list(_violations(error, validator, payload))
            or [Violation(json_path(error.absolute_path), error.validator or "false", "breaks a schema rule")]
        )
    if not found:
        # The engines disagree; refusing is the safe side (and tests keep them in step).
        found.add(Violation("$", "schema", "breaks a schema rule"))
    return sorted(found, key=lambda v: (_path_key(v.path), v.rule, v.message))


def validate_payload(message_type: str, payload: object, version: str | None = None) -> None:
    """Raise SchemaInvalidError listing every violation unless the payload is valid (in ``version``, if given)."""
    violations = find_violations(message_type, payload, version)
    if violations:
        raise SchemaInvalidError(message_type, violations)


def json_path(parts: Iterable[str | int]) -> str:
    """Format a location as a JSON path: ``$.person.names.given``, ``$.exploitation[1].type``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}"
        else:
            out += "['" + part.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return out


def _path_key(path: str) -> tuple[tuple[int, int | str], ...]:
    parts = re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]", path)
    return tuple((0, int(i)) if i else (1, name or quoted) for name, i, quoted in parts)


def _name(key: str) -> str:
    # Property names are schema vocabulary or sender mistakes; one with spaces or other
    # non-identifier characters could be someone's name, and violations reach quarantine
    # records and logs, so only identifier-like names are shown.
    return key if len(key) <= _MAX_NAME and _IDENTIFIER.fullmatch(key) else "?"


def _violations(error: ValidationError, validator: Draft202012Validator, payload: object) -> Iterator[Violation]:
    """Turn one jsonschema error into violations (one per unexpected or missing property)."""
    where = list(error.absolute_path)
    # jsonschema reports a false subschema with validator None (its stubs say str).
    rule = error.validator if isinstance(error.validator, str) else "false"
    # A boolean root schema has no subschema to describe.
    root: Mapping[str, Any] = validator.schema if isinstance(validator.schema, Mapping) else {}
    reason = _rule_description(root, error.absolute_schema_path)
    suffix = f": {reason}" if reason else ""
    # The schemas close every object with additionalProperties (see docs/schema.md), so
    # the unexpected names are the ones outside "properties" and "patternProperties".
    if rule == "additionalProperties" and isinstance(error.instance, dict):
        for key in _unexpected(error, error.instance):
            shown = _name(key)
            what = f"unexpected property '{shown}'" if shown != "?" else "unexpected property (its name is not an identifier, not shown)"
            yield Violation(json_path([*where, shown]), rule, what)
        return
    if rule == "required" and isinstance(error.instance, dict) and isinstance(error.validator_value, list):
        for key in error.validator_value:
            if key not in error.instance:
                yield Violation(json_path([*where, key]), rule, f"required property '{key}' is missing{suffix}")
        return
    if rule == "false" and error.absolute_schema_path and error.absolute_schema_path[-1] == "properties":
        # jsonschema 4.26 leaves the property name off both paths of a false subschema's
        # error (descend() returns before adding them), so find the forbidden names here.
        for key in _forbidden_present(root, error.absolute_schema_path, payload, where):
            yield Violation(json_path([*where, key]), rule, f"property '{key}' is not allowed{suffix}")
        return
    if rule == "false":
        last = where[-1] if where else None
        what = f"property '{_name(last)}' is not allowed" if isinstance(last, str) else "no value is allowed here"
        yield Violation(json_path(where), rule, what + suffix)
        return
    yield Violation(json_path(where), rule, _describe(rule, error.validator_value, error.schema) + suffix)


def _forbidden_present(
    root: Mapping[str, Any], schema_path: Iterable[str | int], payload: object, where: list[Any]
) -> list[str]:
    properties = _schema_at(root, schema_path)
    obj: Any = payload
    for part in where:
        obj = obj[part]
    if not isinstance(properties, dict) or not isinstance(obj, dict):
        return []
    return [key for key, sub in properties.items() if sub is False and key in obj]


def _unexpected(error: ValidationError, instance: dict[str, Any]) -> list[str]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    known = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]


def _walk(root: Mapping[str, Any], schema_path: Iterable[str | int]) -> Iterator[tuple[str | int | None, Any]]:
    """Follow a schema path from the root (through $refs), yielding (key, node) pairs."""
    resolver = _registry().resolver(base_uri=root.get("$id", ""))
    node: Any = root
    for key in schema_path:
        # jsonschema leaves "$ref" out of schema paths: step through a $ref when the
        # next keyword is not beside it.
        while isinstance(node, dict) and key not in node and "$ref" in node:
            resolved = resolver.lookup(node["$ref"])
            node, resolver = resolved.contents, resolved.resolver
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return
        yield key, node


def _schema_at(root: Mapping[str, Any], schema_path: Iterable[str | int]) -> Any:
    path = list(schema_path)
    walked = list(_walk(root, path))
    return walked[-1][1] if len(walked) == len(path) and walked else None


def _rule_description(root: Mapping[str, Any], schema_path: Iterable[str | int]) -> str | None:
    """The description of the innermost allOf rule the failing keyword sits in, if any."""
    found, previous = None, None
    for key, node in _walk(root, schema_path):
        if previous == "allOf" and isinstance(node, dict) and "description" in node:
            found = node["description"]
        previous = key
    return found


def _alternatives(options: list[Any]) -> list[str] | None:
    names = []
    for option in options:
        if not (isinstance(option, dict) and set(option) == {"required"} and len(option["required"]) == 1):
            return None
        names.append(option["required"][0])
    return names


def _describe(rule: str, expected: Any, schema: Any) -> str:
    """A message from the keyword and the schema side only."""
    def_name = _def_names().get(id(schema)) if isinstance(schema, dict) else None
    of_def = f" of {def_name}" if def_name else ""
    if rule == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return f"must be of type {' or '.join(kinds)}"
    if rule == "enum":
        if len(expected) <= 12:
            codes = ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in expected)
            return f"must be one of the codes{' in ' + def_name if def_name else ''}: {codes}"
        return f"must be one of the {len(expected)} codes in {def_name or 'the enumeration'}"
    if rule == "const":
        return f"must be {json.dumps(expected)}"
    if rule == "pattern":
        return f"must match the pattern{of_def} {expected}"
    if rule == "format":
        return f"must be a valid {expected}{of_def}"
    if rule in ("minLength", "maxLength"):
        return f"must be at {'least' if rule == 'minLength' else 'most'} {expected} characters long"
    if rule in ("minItems", "maxItems"):
        return f"must have at {'least' if rule == 'minItems' else 'most'} {expected} items"
    if rule in ("minProperties", "maxProperties"):
        return f"must have at {'least' if rule == 'minProperties' else 'most'} {expected} properties"
    if rule == "uniqueItems":
        return "items must be unique"
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"must be {words[rule]} {expected}"
    if rule in ("oneOf", "anyOf"):
        names = _alternatives(expected)
        count = "exactly one" if rule == "oneOf" else "at least one"
        if names:
            return f"must have {count} of: {', '.join(names)}"
        return f"must match {count} of {len(expected)} alternatives{of_def}"
    if rule == "not":
        if isinstance(expected, dict) and "const" in expected:
            return f"must not be {json.dumps(expected['const'])}"
        return "matches a forbidden schema"
    if rule == "contains":
        if isinstance(expected, dict) and "const" in expected:
            return f"must include {json.dumps(expected['const'])}"
        if isinstance(expected, dict) and "enum" in expected:
            return f"must include one of: {', '.join(map(str, expected['enum']))}"
        return "must contain a matching item"
    return f"breaks the '{rule}' rule{of_def}"


# --- minimal data ----------------------------------------------------------------------


@cache
def minimal_data_table(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The purpose -> allowed subject fields table of a version (schemas/v<N>/minimal-data.json)."""
    return _read(version_dir(version) / "minimal-data.json")


def _check_purposes(purposes: Iterable[str], version: str) -> list[str]:
    listed = list(purposes)
    unknown = sorted(set(listed) - set(PURPOSES_BY_VERSION[_check_version(version)]))
    if unknown:
        raise ValueError(f"unknown purposes in schema version {version}: {', '.join(unknown)}")
    return listed


def allowed_person_fields(purposes: Iterable[str], version: str = SCHEMA_VERSION) -> frozenset[str]:
    """Dotted subject fields (``person.names``, ``narrative``) a request with these purposes may carry."""
    table = minimal_data_table(version)
    allowed = set(table["always_allowed"])
    for purpose in _check_purposes(purposes, version):
        allowed.update(table["allowed_by_purpose"][purpose])
    return frozenset(allowed)


def disallowed_person_fields(purposes: Iterable[str], version: str = SCHEMA_VERSION) -> frozenset[str]:
    """Restricted subject fields a request with these purposes must not carry (adapters drop them)."""
    table = minimal_data_table(version)
    restricted = {f for fields in table["allowed_by_purpose"].values() for f in fields}
    return frozenset(restricted - allowed_person_fields(purposes, version))


def minimal_data_reason(purpose: str | None, field: str) -> str:
    """Why a v2 request may carry ``field`` for ``purpose`` (None: a field always allowed)."""
    reasons = minimal_data_table("2")["reasons"]
    if purpose is None:
        return str(reasons["always_allowed"][field])
    return str(reasons["by_purpose"][purpose][field])


# --- examples --------------------------------------------------------------------------


def example_names(version: str = SCHEMA_VERSION) -> tuple[str, ...]:
    """Names of one version's example payload files, e.g. ``referral.request.minor_guardian``."""
    folder = _EXAMPLE_DIRS[_check_version(version)]
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.glob("*.json")))


def example_message_type(name: str) -> str:
    """The message type an example file is for (its name is ``<message_type>[.<variant>]``)."""
    for message_type in sorted(MESSAGE_TYPES, key=len, reverse=True):
        if name == message_type or name.startswith(message_type + "."):
            return message_type
    raise ValueError(f"example {name!r} does not start with a message type")


def load_example(message_type: str, variant: str | None = None, version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """A fresh copy of a synthetic example payload from schemas/examples/ (v2: schemas/examples/v2/)."""
    _check_type(message_type)
    name = message_type if variant is None else f"{message_type}.{variant}"
    return _read(_EXAMPLE_DIRS[_check_version(version)] / f"{name}.json")
