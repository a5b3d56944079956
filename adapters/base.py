"""Country adapters: the interface, the declarative mapping engine, and the adapter errors.

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

import copy
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Protocol

from jsonschema import Draft202012Validator

from gateway.errors import GatewayError
from gateway.schema import PURPOSES, disallowed_person_fields, load_schema, validate_payload

MESSAGE_TYPE = "referral.request"
COMMON_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "v1" / "common.schema.json"
_ECHO_MAX = 40
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- errors ----------------------------------------------------------------------------


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


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DroppedField:
    """A local field that is not in the shared payload, and why (never its value)."""

    local_field: str
    shared_path: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.local_field} -> {self.shared_path or '-'}: {self.reason}"


@dataclass(frozen=True)
class AdaptResult:
    """A schema-valid ``referral.request`` payload and the local fields left out of it."""

    payload: dict[str, Any]
    dropped: tuple[DroppedField, ...] = ()


class Adapter(Protocol):
    """What the gateway needs from a country adapter."""

    format_id: str

    def to_shared(self, local_record: dict[str, Any], purposes: Iterable[str] | None = None) -> AdaptResult:
        """Map a local record to a schema-valid shared payload for these purposes."""
        ...

    def from_shared(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Map a shared ``referral.request`` payload to a local record."""
        ...


# --- normalisation and code lists ------------------------------------------------------


def normalise(text: str) -> str:
    """Fold a local value for matching: case, accents, hyphens, apostrophes and spaces do not matter."""
    text = text.replace("œ", "oe").replace("Œ", "oe").replace("æ", "ae").replace("Æ", "ae")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[\s'’`\-_]+", " ", text.casefold()).strip()


def _echo(value: object) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return repr(shown if len(shown) <= _ECHO_MAX else shown[:_ECHO_MAX] + "…")


@cache
def _common_defs() -> dict[str, Any]:
    return json.loads(COMMON_SCHEMA.read_text(encoding="utf-8"))["$defs"]


@dataclass(frozen=True)
class CodeList:
    """Local spellings -> shared codes. Lookup ignores case and accents; the first spelling listed
    for a code is the one written back by ``from_shared``."""

    name: str
    label: str
    codes: Mapping[str, Any]
    target: str | None = None
    accept_codes: bool = False
    _index: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _reverse: Mapping[Any, str] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, name: str, spec: Mapping[str, Any], folder: Path) -> CodeList:
        _check_keys(f"code_lists.{name}", spec, {"label", "target", "codes", "file", "accept_codes", "description"})
        codes = dict(spec.get("codes", {}))
        if "file" in spec:
            loaded = json.loads((folder / spec["file"]).read_text(encoding="utf-8"))
            codes.update(loaded["codes"] if "codes" in loaded else loaded)
        target = spec.get("target")
        allowed = None
        if target is not None:
            defs = _common_defs()
            if target not in defs or "enum" not in defs[target]:
                raise MappingDefinitionError(f"code_lists.{name}: target {target!r} is not an enum in common.schema.json")
            allowed = defs[target]["enum"]
        index: dict[str, Any] = {}
        reverse: dict[Any, str] = {}
        for local, shared in codes.items():
            if allowed is not None and shared not in allowed:
                raise MappingDefinitionError(f"code_lists.{name}: {shared!r} is not a code of {target}")
            key = normalise(local)
            if key in index and index[key] != shared:
                raise MappingDefinitionError(f"code_lists.{name}: {local!r} clashes with another spelling")
            index[key] = shared
            reverse.setdefault(_hashable(shared), local)
        if spec.get("accept_codes"):
            # The shared code itself is a valid spelling ("NG" for a country, "fr" for French).
            for shared in allowed if allowed is not None else list(codes.values()):
                if isinstance(shared, str):
                    index.setdefault(normalise(shared), shared)
        return cls(name, spec.get("label", name), codes, target, bool(spec.get("accept_codes")), index, reverse)

    def to_shared(self, value: Any) -> Any:
        """The shared code for a local value; KeyError when there is none."""
        if isinstance(value, str):
            return self._index[normalise(value)]
        # A non-text local value that already is one of the shared values (a JSON true for
        # a yes/no list) is taken as it is.
        if any(v == value and type(v) is type(value) for v in self.codes.values()):
            return value
        raise KeyError(value)

    def to_local(self, code: Any) -> str:
        """The preferred local spelling of a shared code (the code itself if ``accept_codes``); KeyError if none."""
        if _hashable(code) in self._reverse:
            return self._reverse[_hashable(code)]
        if self.accept_codes and isinstance(code, str) and self._index.get(normalise(code)) == code:
            return code
        raise KeyError(code)

    def missing_codes(self) -> list[Any]:
        """Shared codes of the target enum that have no local spelling (from_shared cannot write them)."""
        if self.target is None:
            return []
        return [c for c in _common_defs()[self.target]["enum"] if _hashable(c) not in self._reverse]


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True)


# --- transforms ------------------------------------------------------------------------


class TransformFailed(ValueError):
    """Raised by a transform with a reason that never contains the value."""


@dataclass(frozen=True)
class Transform:
    """A named value transform: ``to_shared`` and its inverse ``to_local``.

    Both take ``(value, args)`` and raise :class:`TransformFailed` with a reason that must
    not contain the value (transforms run on names, dates of birth and phone numbers).
    """

    to_shared: Callable[[Any, Mapping[str, Any]], Any]
    to_local: Callable[[Any, Mapping[str, Any]], Any]


def _text(value: Any, args: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise TransformFailed("must be text")
    text = " ".join(value.split())
    if not text:
        raise TransformFailed("is empty")
    if len(text) > int(args.get("max_length", 200)):
        raise TransformFailed(f"is longer than {args.get('max_length', 200)} characters")
    return text


def _integer(value: Any, args: Mapping[str, Any]) -> int:
    if isinstance(value, bool):
        raise TransformFailed("must be a whole number")
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,4}\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise TransformFailed("must be a whole number")
    low, high = args.get("min"), args.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        raise TransformFailed(f"must be between {low} and {high}")
    return value


_DMY = re.compile(r"^\s*([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4})(?:\s+([0-9]{1,2})[:h]([0-9]{2})(?::([0-9]{2}))?)?\s*$")


def _parse_dmy(value: Any, with_time: bool) -> tuple[date, tuple[int, int, int] | None]:
    match = _DMY.match(value) if isinstance(value, str) else None
    if not match or (match.group(4) is not None and not with_time):
        raise TransformFailed("must be a date JJ/MM/AAAA" + (" [HH:MM[:SS]]" if with_time else ""))
    day, month, year = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not 1900 <= year <= 2100:
        raise TransformFailed("has a year outside 1900-2100")
    try:
        parsed = date(year, month, day)
    except ValueError:
        raise TransformFailed("is not a calendar date (JJ/MM/AAAA)") from None
    time = (int(match.group(4)), int(match.group(5)), int(match.group(6) or 0)) if match.group(4) is not None else None
    if time and not (time[0] < 24 and time[1] < 60 and time[2] < 60):
        raise TransformFailed("has an impossible time (HH:MM[:SS])")
    return parsed, time


def _date_dmy(value: Any, args: Mapping[str, Any]) -> str:
    return _parse_dmy(value, with_time=False)[0].isoformat()


def _date_dmy_back(value: Any, args: Mapping[str, Any]) -> str:
    return date.fromisoformat(value).strftime("%d/%m/%Y")


def _offset(args: Mapping[str, Any]) -> timezone:
    sign, hours, minutes = re.fullmatch(r"([+-])([0-9]{2}):([0-9]{2})", args.get("utc_offset", "+00:00")).groups()  # type: ignore[union-attr]
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(delta if sign == "+" else -delta)


def _datetime_dmy(value: Any, args: Mapping[str, Any]) -> str:
    """``JJ/MM/AAAA [HH:MM[:SS]]`` local time (``utc_offset``) -> RFC 3339 UTC; a date alone takes ``default_time``."""
    day, time = _parse_dmy(value, with_time=True)
    hh, mm, ss = time or map(int, args.get("default_time", "00:00:00").split(":"))
    local = datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=_offset(args))
    return local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _datetime_dmy_back(value: Any, args: Mapping[str, Any]) -> str:
    local = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(_offset(args))
    if local.strftime("%H:%M:%S") == args.get("default_time", "00:00:00"):
        return local.strftime("%d/%m/%Y")
    return local.strftime("%d/%m/%Y %H:%M" if local.second == 0 else "%d/%m/%Y %H:%M:%S")


def _split_names(value: Any, args: Mapping[str, Any]) -> dict[str, str]:
    """``"Amaka Joy"`` -> ``{"given": "Amaka", "middle": "Joy"}`` (first name, then the rest)."""
    parts = _text(value, args).split(" ", 1)
    return {"given": parts[0], **({"middle": parts[1]} if len(parts) > 1 else {})}


def _join_names(value: Any, args: Mapping[str, Any]) -> str | None:
    parts = [value.get("given"), value.get("middle")] if isinstance(value, dict) else []
    return " ".join(p for p in parts if p) or None


def _phone(value: Any, args: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise TransformFailed("must be text")
    compact = re.sub(r"[\s().-]", "", value)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", compact):
        raise TransformFailed("is not an international phone number (+ country code, 7-15 digits)")
    return compact


def _country_code(value: Any, args: Mapping[str, Any]) -> str:
    code = value.strip().upper() if isinstance(value, str) else None
    if code not in _common_defs()["country_code"]["enum"]:
        raise TransformFailed("is not an ISO 3166-1 alpha-2 country code")
    return code


def _same(value: Any, args: Mapping[str, Any]) -> Any:
    return value


def _case(method: str) -> Callable[[Any, Mapping[str, Any]], str]:
    def apply(value: Any, args: Mapping[str, Any]) -> str:
        return getattr(_text(value, args), method)()

    return apply


#: The fixed set of named transforms a mapping table may use. An adapter may extend it
#: (``MappingAdapter.transforms``) for a genuinely odd local format.
TRANSFORMS: Mapping[str, Transform] = {
    "text": Transform(_text, _same),
    "upper": Transform(_case("upper"), _same),
    "lower": Transform(_case("lower"), _same),
    "int": Transform(_integer, _same),
    "date_dmy": Transform(_date_dmy, _date_dmy_back),
    "datetime_dmy": Transform(_datetime_dmy, _datetime_dmy_back),
    "split_names": Transform(_split_names, _join_names),
    "phone_e164": Transform(_phone, _same),
    "country_code": Transform(_country_code, _same),
}


# --- the mapping table -----------------------------------------------------------------

_UNSET: Any = object()
_RULE_KEYS = {"local", "shared", "codes", "transform", "required", "unknown", "default", "fields", "items",
              "scalar", "note"}


def _check_keys(where: str, spec: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(spec) - known
    if unknown:
        raise MappingDefinitionError(f"{where}: unknown keys {sorted(unknown)}")


@dataclass(frozen=True)
class Rule:
    """One row of the mapping table (or the element rule of a list).

    ``local`` and ``shared`` are dotted paths relative to the enclosing object. The value is
    either a scalar (``transform`` then ``codes``), an object (``fields``: nested rules) or a
    list (``items``: the rule for each element).
    """

    local: str | None
    shared: str | None
    codes: CodeList | None = None
    transform: str | None = None
    transform_args: Mapping[str, Any] = field(default_factory=dict)
    required: bool = False
    unknown: Any = _UNSET
    default: Any = _UNSET
    fields: tuple[Rule, ...] | None = None
    items: Rule | None = None
    scalar: str | None = None

    @classmethod
    def build(cls, spec: Mapping[str, Any], table: MappingTable, where: str, element: bool = False) -> Rule:
        _check_keys(where, spec, _RULE_KEYS)
        if not element and not (isinstance(spec.get("local"), str) and isinstance(spec.get("shared"), str)):
            raise MappingDefinitionError(f"{where}: a field needs 'local' and 'shared' paths")
        codes = None
        if "codes" in spec:
            if spec["codes"] not in table.code_lists:
                raise MappingDefinitionError(f"{where}: unknown code list {spec['codes']!r}")
            codes = table.code_lists[spec["codes"]]
        transform, args = spec.get("transform"), {}
        if isinstance(transform, dict):
            args = {k: v for k, v in transform.items() if k != "name"}
            transform = transform.get("name")
        if transform is not None and transform not in table.transforms:
            raise MappingDefinitionError(f"{where}: unknown transform {transform!r}")
        name = spec.get("local", where)
        fields = (
            tuple(cls.build(s, table, f"{where}.fields[{i}]") for i, s in enumerate(spec["fields"]))
            if "fields" in spec else None
        )
        items = cls.build(spec["items"], table, f"{where}.items", element=True) if "items" in spec else None
        if sum(x is not None for x in (fields, items, codes or transform)) > 1:
            raise MappingDefinitionError(f"{name}: use one of fields, items, or codes/transform")
        return cls(
            local=spec.get("local"),
            shared=spec.get("shared"),
            codes=codes,
            transform=transform,
            transform_args=args,
            required=bool(spec.get("required", False)),
            unknown=spec.get("unknown", _UNSET),
            default=spec.get("default", _UNSET),
            fields=fields,
            items=items,
            scalar=spec.get("scalar"),
        )


@dataclass(frozen=True)
class MappingTable:
    """A parsed ``mapping.json``: code lists, missing-value spellings, and the field rules."""

    format_id: str
    rules: tuple[Rule, ...]
    code_lists: Mapping[str, CodeList]
    missing_values: frozenset[str]
    missing_local: str
    local_only: Mapping[str, str]
    transforms: Mapping[str, Transform]

    @classmethod
    def load(cls, path: Path, transforms: Mapping[str, Transform] = TRANSFORMS) -> MappingTable:
        """Read and check a mapping table; a mistake in it raises MappingDefinitionError."""
        spec = json.loads(path.read_text(encoding="utf-8"))
        return cls.from_dict(spec, path.parent, transforms)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], folder: Path, transforms: Mapping[str, Transform] = TRANSFORMS) -> MappingTable:
        _check_keys("mapping", spec, {"format_id", "description", "message_type", "missing_values", "missing_local",
                                      "local_only", "code_lists", "fields"})
        if spec.get("message_type", MESSAGE_TYPE) != MESSAGE_TYPE:
            raise MappingDefinitionError(f"mapping: only {MESSAGE_TYPE} is supported")
        lists = {name: CodeList.build(name, s, folder) for name, s in spec.get("code_lists", {}).items()}
        table = cls(
            format_id=spec["format_id"],
            rules=(),
            code_lists=lists,
            missing_values=frozenset(normalise(v) for v in spec.get("missing_values", [""])) | {""},
            missing_local=spec.get("missing_local", "inconnu"),
            local_only=dict(spec.get("local_only", {})),
            transforms=transforms,
        )
        rules = tuple(Rule.build(s, table, f"fields[{i}]") for i, s in enumerate(spec.get("fields", [])))
        object.__setattr__(table, "rules", rules)
        return table

    def is_missing(self, value: Any) -> bool:
        """None, an empty list/object, or a missing-value spelling ("inconnu", "NSP", "")."""
        if value is None or value == [] or value == {}:
            return True
        return isinstance(value, str) and normalise(value) in self.missing_values

    def local_for(self, shared_path: str) -> str:
        """The local field a top-level shared path comes from (for messages); the shared path if none."""
        best = None
        for rule, local, shared in _walk_rules(self.rules):
            if shared == shared_path or (best is None and shared_path.startswith(shared + ".")):
                best = local
                if shared == shared_path:
                    break
        return best or shared_path


def _walk_rules(rules: Iterable[Rule], local: str = "", shared: str = "") -> Iterable[tuple[Rule, str, str]]:
    for rule in rules:
        lp = f"{local}.{rule.local}" if local else rule.local or ""
        sp = f"{shared}.{rule.shared}" if shared else rule.shared or ""
        yield rule, lp, sp
        if rule.fields:
            yield from _walk_rules(rule.fields, lp, sp)


# --- dotted paths ----------------------------------------------------------------------

_MISSING: Any = object()


def get_path(data: Any, dotted: str) -> Any:
    """The value at a dotted path in nested dicts, or a private MISSING sentinel."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted path, creating objects; two objects at the same path are merged."""
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    if isinstance(value, dict) and isinstance(data.get(last), dict):
        data[last].update(value)
    else:
        data[last] = value


def delete_path(data: dict[str, Any], dotted: str) -> Any:
    """Remove a dotted path; return the removed value or MISSING. Empty parents stay."""
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    if isinstance(data, dict) and last in data:
        return data.pop(last)
    return _MISSING


def _join(base: str, part: str) -> str:
    return f"{base}.{part}" if base else part


# --- the engine ------------------------------------------------------------------------


@dataclass
class _Trace:
    """Where each shared value came from: (local path, shared path), in mapping order."""

    origins: list[tuple[str, str]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)

    def local_for(self, shared_path: str, table: MappingTable) -> str:
        for local, shared in self.origins:
            if shared == shared_path:
                return local
        return table.local_for(shared_path)


class MappingAdapter:
    """An adapter driven by a mapping table; subclass it and point it at a folder.

    A country adapter is usually just::

        class NigerAdapter(MappingAdapter):
            format_id = "niger"
            folder = Path(__file__).parent      # mapping.json, fiche.schema.json, samples/

    and overrides :meth:`prepare_local` / :meth:`finish_local` only for odd local shapes.
    """

    format_id: ClassVar[str]
    folder: ClassVar[Path]
    mapping_file: ClassVar[str] = "mapping.json"
    local_schema_file: ClassVar[str | None] = "fiche.schema.json"
    transforms: ClassVar[Mapping[str, Transform]] = TRANSFORMS

    def __init__(self) -> None:
        self.table = MappingTable.load(self.folder / self.mapping_file, self.transforms)
        self.local_schema: dict[str, Any] | None = None
        self._local_validator: Draft202012Validator | None = None
        if self.local_schema_file:
            self.local_schema = json.loads((self.folder / self.local_schema_file).read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(self.local_schema)
            self._local_validator = Draft202012Validator(self.local_schema)

    # -- hooks for odd local formats (default: nothing to do) --

    def prepare_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """Reshape a (schema-checked) local record before the table is applied. Must not mutate it."""
        return record

    def finish_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """Adjust the local record ``from_shared`` built from the table."""
        return record

    # -- local -> shared --

    def check_local(self, record: Any) -> None:
        """Check the record against the local JSON Schema; errors name the field, never the value."""
        if self._local_validator is None:
            return
        errors = sorted(self._local_validator.iter_errors(record), key=lambda e: [str(p) for p in e.absolute_path])
        if not errors:
            return
        error = errors[0]
        where = _local_path(error.absolute_path)
        if error.validator == "required":
            missing = next((k for k in error.validator_value if k not in error.instance), "?")
            raise MissingFieldError(_local_join(where, missing), "is required by the local format")
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
            extra = [k for k in error.instance if k not in known]
            shown = extra[0] if extra and _IDENTIFIER.fullmatch(extra[0]) and len(extra[0]) <= 64 else "?"
            raise LocalRecordInvalidError(_local_join(where, shown), "is not a field of the local format")
        raise LocalRecordInvalidError(where or "$", _describe_local(error.validator, error.validator_value))

    def to_shared(self, local_record: dict[str, Any], purposes: Iterable[str] | None = None) -> AdaptResult:
        """Map a local record to a schema-valid ``referral.request`` for ``purposes``.

        ``purposes`` defaults to the request purposes the record names (mapped to ``purposes``),
        else to every purpose its consent records. Fields the purposes do not allow are
        dropped and listed in ``AdaptResult.dropped``.
        """
        self.check_local(local_record)
        local = self.prepare_local(copy.deepcopy(local_record))
        payload, trace, failed = self._map_record(local)
        wanted = self._purposes(purposes, payload, trace, failed)
        payload = {"purposes": wanted, **payload}
        dropped: list[DroppedField] = []
        dropped_values = self._drop_disallowed(payload, wanted, trace, failed, dropped)
        self._settle_age(payload, trace, dropped_values, dropped)
        self._check_consent(payload, wanted, trace)
        dropped.extend(
            DroppedField(name, None, f"local only: {why}")
            for name, why in self.table.local_only.items()
            if not self.table.is_missing(get_path(local, name)) and get_path(local, name) is not _MISSING
        )
        validate_payload(MESSAGE_TYPE, payload)
        return AdaptResult(payload, tuple(dropped))

    def trace(self, local_record: dict[str, Any]) -> dict[str, Any]:
        """Every mapped local field (``lieu_origine.pays``, ``langues``) -> the shared value it produced.

        All fields, no purpose filter, no age or consent checks.

        What round-trip tests compare: two local records that carry the same shared
        meaning have the same trace, whatever their spelling ("NIGÉRIANE" vs "Nigeria").
        """
        self.check_local(local_record)
        local = self.prepare_local(copy.deepcopy(local_record))
        _, trace, _ = self._map_record(local)
        return dict(trace.values)

    def _map_record(self, local: dict[str, Any]) -> tuple[dict[str, Any], _Trace, dict[str, AdapterError]]:
        payload: dict[str, Any] = {}
        trace = _Trace()
        failed: dict[str, AdapterError] = {}
        for rule in self.table.rules:
            try:
                self._map_field(rule, local, payload, "", "", trace)
            except AdapterError as exc:
                # Kept until the purposes are known: a field they do not allow is dropped,
                # not fatal, so a broken value nobody will receive does not block a referral.
                failed[rule.shared or ""] = exc
                trace.origins.append((rule.local or "", rule.shared or ""))
        return payload, trace, failed

    def _map_field(self, rule: Rule, src: dict[str, Any], out: dict[str, Any], local_base: str,
                   shared_base: str, trace: _Trace, local_name: str | None = None) -> bool:
        """Apply one rule; returns True when a real (not defaulted) value was written."""
        assert rule.local is not None and rule.shared is not None
        canonical = _local_join(local_base, rule.local)
        where = local_name or canonical  # errors name what the clerk wrote: "type_exploitation[1]"
        shared_where = _join(shared_base, rule.shared)
        raw = get_path(src, rule.local)
        value = _MISSING if raw is _MISSING else self._to_shared_value(rule, raw, where, shared_where, trace)
        real = value is not _MISSING
        if not real:
            if rule.unknown is not _UNSET:
                value = rule.unknown
            elif rule.default is not _UNSET:
                value = rule.default
            elif rule.required:
                raise MissingFieldError(where)
            else:
                return False
        set_path(out, rule.shared, value)
        trace.origins.append((canonical, shared_where))
        trace.values[canonical] = copy.deepcopy(value)
        return real

    def _to_shared_value(self, rule: Rule, raw: Any, where: str, shared_where: str, trace: _Trace) -> Any:
        if rule.fields is not None:
            scalar_item = rule.scalar is not None and raw is not None and not isinstance(raw, (dict, list))
            if scalar_item:
                raw = {rule.scalar: raw}
            if self.table.is_missing(raw):
                return _MISSING
            if not isinstance(raw, dict):
                raise UnmappableValueError(where, "must be an object")
            obj: dict[str, Any] = {}
            real = 0
            missing_required: list[str] = []
            for sub in rule.fields:
                is_scalar = scalar_item and sub.local == rule.scalar
                try:
                    written = self._map_field(sub, raw, obj, where, shared_where, trace, where if is_scalar else None)
                except MissingFieldError as exc:
                    missing_required.append(exc.local_field or where)
                    continue
                # ["inconnu"] is an item of unknown kind (e.g. exploitation type undetermined),
                # not "no item": the scalar's unknown value counts as a real value.
                real += written or (is_scalar and sub.unknown is not _UNSET)
            if not real:
                return _MISSING
            if missing_required:
                raise MissingFieldError(missing_required[0], f"is required when {where} is given")
            return obj
        if self.table.is_missing(raw):
            return _MISSING
        if rule.items is not None:
            if not isinstance(raw, list):
                raw = [raw] if rule.items.fields is None and not isinstance(raw, dict) else raw
            if not isinstance(raw, list):
                raise UnmappableValueError(where, "must be a list")
            out: list[Any] = []
            for i, item in enumerate(raw):
                item_where = f"{where}[{i}]"
                value = self._to_shared_value(rule.items, item, item_where, f"{shared_where}[{len(out)}]", trace)
                if value is _MISSING and rule.items.unknown is not _UNSET:
                    value = rule.items.unknown
                if value is not _MISSING and value not in out:
                    out.append(value)
            return out or _MISSING
        value = raw
        if rule.transform is not None:
            try:
                value = self.table.transforms[rule.transform].to_shared(value, rule.transform_args)
            except TransformFailed as exc:
                raise UnmappableValueError(where, str(exc)) from None
        if rule.codes is not None:
            try:
                value = rule.codes.to_shared(value)
            except KeyError:
                # Coded fields hold vocabulary, not personal data: the value is quoted.
                raise UnmappableValueError(where, f"{_echo(value)} is not in the code list for {rule.codes.label}") from None
        elif rule.transform is None and isinstance(value, (dict, list)):
            raise UnmappableValueError(where, "must be a single value")
        return value

    def _purposes(self, purposes: Iterable[str] | None, payload: dict[str, Any], trace: _Trace,
                  failed: Mapping[str, AdapterError]) -> list[str]:
        if purposes is None:
            for shared, exc in failed.items():
                if shared == "purposes" or _within("consent.purposes", shared):
                    raise exc
            named = payload.pop("purposes", None)
            purposes = named if named else get_path(payload, "consent.purposes")
            if purposes is _MISSING:
                raise MissingFieldError(trace.local_for("consent.purposes", self.table))
        else:
            payload.pop("purposes", None)
        wanted = list(dict.fromkeys(purposes))
        if isinstance(purposes, str) or not wanted:
            raise PurposesError("purposes: at least one purpose is required")
        unknown = [p for p in wanted if p not in PURPOSES]
        if unknown:
            raise PurposesError(f"purposes: {', '.join(map(repr, unknown))} not one of: {', '.join(PURPOSES)}")
        return wanted

    def _drop_disallowed(self, payload: dict[str, Any], purposes: list[str], trace: _Trace,
                         failed: Mapping[str, AdapterError], dropped: list[DroppedField]) -> dict[str, Any]:
        reason = f"not allowed for purposes [{', '.join(purposes)}]"
        disallowed = sorted(disallowed_person_fields(purposes))
        removed: dict[str, Any] = {}
        for path in disallowed:
            value = delete_path(payload, path)
            if value is not _MISSING:
                removed[path] = value
        for shared, exc in failed.items():
            if not any(_within(shared, p) for p in disallowed):
                raise exc
        hits = [
            (local, shared, path)
            for local, shared in trace.origins
            for path in [next((p for p in disallowed if _within(shared, p)), None)]
            if path is not None and (path in removed or shared in failed)
        ]
        for local, shared, path in hits:
            # Report the outermost local field only: "type_exploitation", not each item.
            if any(other != local and _within(local, other) for other, _, _ in hits):
                continue
            extra = "; age in years sent instead" if path == "person.age.date_of_birth" else ""
            dropped.append(DroppedField(local, shared, reason + extra))
        return removed

    def _settle_age(self, payload: dict[str, Any], trace: _Trace, removed: Mapping[str, Any],
                    dropped: list[DroppedField]) -> None:
        """One of date of birth, years, band; a minor flag that agrees; ``band: unknown`` if nothing is known."""
        person = payload.setdefault("person", {})
        age = person.setdefault("age", {})
        kinds = [k for k in ("date_of_birth", "years", "band") if k in age and not (k == "band" and age[k] == "unknown")]
        for extra in kinds[1:]:
            del age[extra]
            dropped.append(DroppedField(trace.local_for(f"person.age.{extra}", self.table), f"person.age.{extra}",
                                        f"superseded by person.age.{kinds[0]}: the shared schema carries one age"))
        if kinds and age.get("band") == "unknown":
            del age["band"]
        dob = age.get("date_of_birth", removed.get("person.age.date_of_birth"))
        years_from_dob = self._age_at(dob, payload, trace) if isinstance(dob, str) else None
        years_source = "person.age.years"
        if years_from_dob is not None and not kinds:
            age["years"] = years_from_dob
            years_source = "person.age.date_of_birth"
        if not any(k in age for k in ("date_of_birth", "years", "band")):
            age["band"] = "unknown"
        minor_field = trace.local_for("person.age.minor", self.table)
        implied = None
        if "years" in age:
            implied = age["years"] < 18
        elif age.get("band", "unknown") != "unknown":
            implied = age["band"] in ("0-8", "9-17")
        elif years_from_dob is not None:
            implied = years_from_dob < 18
        if "minor" not in age:
            if implied is None:
                raise MissingFieldError(minor_field, "is needed when the age is unknown (presume minority: "
                                                     "say the person is a minor when there are reasons to believe so)")
            age["minor"] = implied
        elif implied is not None and age["minor"] != implied and "date_of_birth" not in age:
            source = years_source if "years" in age else "person.age.band"
            raise UnmappableValueError(minor_field, f"contradicts {trace.local_for(source, self.table)}")

    def _age_at(self, dob: str, payload: dict[str, Any], trace: _Trace) -> int:
        reference = get_path(payload, "identification.identified_on")
        if not isinstance(reference, str):
            reference = str(get_path(payload, "consent.given_at"))[:10]
        try:
            born, ref = date.fromisoformat(dob), date.fromisoformat(reference)
        except ValueError:
            return 0
        years = ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))
        where = trace.local_for("person.age.date_of_birth", self.table)
        if years < 0:
            raise UnmappableValueError(where, "is after the date of identification (or of consent)")
        if years > 120:
            raise UnmappableValueError(where, "implies an age over 120")
        return years

    def _check_consent(self, payload: dict[str, Any], purposes: list[str], trace: _Trace) -> None:
        consent = payload.get("consent")
        if not isinstance(consent, dict):
            raise MissingFieldError(trace.local_for("consent", self.table), "is required: the consent record travels with every referral")
        consented = consent.get("purposes", [])
        missing = [p for p in purposes if p not in consented]
        if missing:
            where = trace.local_for("consent.purposes", self.table)
            raise PurposesError(f"{where}: {', '.join(map(repr, missing))} not consented", where)
        if "recipient_countries" not in consent and "recipient_agencies" not in consent:
            countries = trace.local_for("consent.recipient_countries", self.table)
            agencies = trace.local_for("consent.recipient_agencies", self.table)
            raise MissingFieldError(countries, f"is required unless {agencies} is given")
        if get_path(payload, "person.age.minor") is True and consent.get("decision_maker") == "self":
            where = trace.local_for("consent.decision_maker", self.table)
            raise UnmappableValueError(where, "a minor cannot consent alone: a parent/guardian, the child protection "
                                              "service or a judge of minors must give the consent")

    # -- shared -> local --

    def from_shared(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Map a valid shared ``referral.request`` to a local record (codes in their preferred spelling)."""
        validate_payload(MESSAGE_TYPE, payload)
        local: dict[str, Any] = {}
        for rule in self.table.rules:
            self._from_field(rule, payload, local, "")
        return self.finish_local(local)

    def _from_field(self, rule: Rule, src: dict[str, Any], out: dict[str, Any], shared_base: str) -> None:
        assert rule.local is not None and rule.shared is not None
        value = get_path(src, rule.shared)
        if value is _MISSING:
            return
        local = self._from_value(rule, value, _join(shared_base, rule.shared))
        if local is not _MISSING:
            set_path(out, rule.local, local)

    def _from_value(self, rule: Rule, value: Any, where: str) -> Any:
        if rule.fields is not None:
            obj: dict[str, Any] = {}
            for sub in rule.fields:
                self._from_field(sub, value, obj, where)
            return obj or _MISSING
        if rule.items is not None:
            items = [self._from_value(rule.items, v, f"{where}[{i}]") for i, v in enumerate(value)]
            return [i for i in items if i is not _MISSING] or _MISSING
        if rule.codes is not None:
            try:
                value = rule.codes.to_local(value)
            except KeyError:
                if rule.unknown is not _UNSET and value == rule.unknown:
                    return self.table.missing_local
                raise UnmappableValueError(where, f"{_echo(value)} has no local spelling in the code list for {rule.codes.label}") from None
        elif rule.unknown is not _UNSET and value == rule.unknown:
            return self.table.missing_local
        if rule.transform is not None:
            value = self.table.transforms[rule.transform].to_local(value, rule.transform_args)
            if value is None:
                return _MISSING
        return value


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def _local_join(base: str, part: str) -> str:
    return f"{base}.{part}" if base else part


def _local_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if _IDENTIFIER.fullmatch(str(part)) and len(str(part)) <= 64 else "?"
            out = _local_join(out, shown)
    return out


def _describe_local(rule: str, expected: Any) -> str:
    """A reason from the local schema's side only (the value is never quoted)."""
    if rule == "type":
        return f"must be of type {' or '.join(expected) if isinstance(expected, list) else expected}"
    if rule == "enum":
        return "must be one of: " + ", ".join(map(str, expected)) if len(expected) <= 12 else "is not an allowed value"
    if rule == "pattern":
        return f"must match the pattern {expected}"
    if rule in ("maxLength", "minLength"):
        return f"must be at {'most' if rule == 'maxLength' else 'least'} {expected} characters long"
    if rule in ("maxItems", "minItems"):
        return f"must have at {'most' if rule == 'maxItems' else 'least'} {expected} items"
    if rule in ("minimum", "maximum"):
        return f"must be {'>=' if rule == 'minimum' else '<='} {expected}"
    return f"breaks the local format's '{rule}' rule"


def shared_request_fields() -> frozenset[str]:
    """Every dotted path a referral.request can carry (for mapping-coverage tests)."""
    defs = _common_defs()
    out: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if isinstance(node, dict) and node.get("type") == "array" and "items" in node:
            walk(node["items"], prefix)
            return
        if isinstance(node, dict) and "properties" in node:
            for name, sub in node["properties"].items():
                path = _join(prefix, name)
                out.add(path)
                walk(sub, path)

    walk(load_schema(MESSAGE_TYPE), "")
    return frozenset(out)
