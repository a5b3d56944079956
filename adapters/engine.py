"""The declarative mapping engine: :class:`MappingAdapter` applies a mapping table.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

from jsonschema import Draft202012Validator

from gateway.schema import PURPOSES_BY_VERSION, disallowed_person_fields, load_schema, validate_payload

from adapters.codes import _common_defs, _echo
from adapters.errors import (
    AdapterError,
    LocalRecordInvalidError,
    MissingFieldError,
    PurposesError,
    UnmappableValueError,
)
from adapters.paths import _MISSING, _join, delete_path, get_path, set_path
from adapters.results import AdaptResult, DroppedField
from adapters.table import _UNSET, MESSAGE_TYPE, MappingTable, Rule
from adapters.transforms import TRANSFORMS, Transform, TransformFailed

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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
        # The local formats map to schema version 1 (the v2 purposes are not theirs yet).
        known = PURPOSES_BY_VERSION["1"]
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise PurposesError(f"purposes: {', '.join(map(repr, unknown))} not one of: {', '.join(known)}")
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
