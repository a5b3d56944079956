"""The declarative mapping engine: :class:`MappingAdapter` applies a mapping table.

An adapter turns one agency's local case record into the shared ``referral.request``
payload (``to_shared``) and back (``from_shared``). Most of that is *data*: a mapping
table (``mapping.json`` beside the adapter) that says which local field goes to which
shared path, through which code list or named transform, and what a missing value
becomes. Code is only for the genuinely odd cases (hooks on :class:`MappingAdapter`).
See ``docs/adapters.md``.

``to_shared`` works in five steps; the problems of steps 1, 2 and 4 are collected and
reported together (one error, or a :class:`~adapters.errors.RecordErrors` holding each):

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
from functools import cache
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

from jsonschema import Draft202012Validator

from gateway.languages import UNCODED
from gateway.schema import (PURPOSES_BY_VERSION, disallowed_person_fields, load_schema, payload_version,
                            validate_payload, version_dir)
from gateway.schema_versions import (
    V2_ONLY_ORGANISATION_TYPES,
    V2_ONLY_PURPOSES,
    V2_ONLY_REFERRAL_SOURCES,
    DowngradeError,
    downgrade_to_v1,
    upgrade_to_v2,
)

#: The table builds a v1 payload (``to_shared``); ``to_shared_v2`` upgrades it.
PURPOSES = PURPOSES_BY_VERSION["1"]

from adapters.codes import CodeList, _echo, normalise
from adapters.errors import (
    AdapterError,
    LocalRecordInvalidError,
    MissingFieldError,
    PurposesError,
    UnmappableValueError,
    raise_all,
    raise_group,
)
from adapters.paths import _MISSING, _join, delete_path, get_path, set_path
from adapters.results import AdaptResult, DroppedField
from adapters.table import _UNSET, MESSAGE_TYPE, MappingTable, Rule, _walk_rules
from adapters.transforms import _YEAR_FIRST, TRANSFORMS, Transform, TransformFailed

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

@dataclass
class _Trace:
    """Where each shared value came from: (local path, shared path), in mapping order."""

    origins: list[tuple[str, str]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    #: (local field, shared path, code list label): a value the form has and v1 cannot say.
    unsent: list[tuple[str, str, str]] = field(default_factory=list)

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
    #: The shared schema version this adapter writes ("1", or "2": payloads then carry ``schema_version``).
    schema_version: ClassVar[str] = "1"
    #: ``from_shared`` reads a v2 payload itself, whatever it writes: what v1 cannot carry but the form can
    #: (v2_spellings, uncoded languages, ``finish_local_v2``) is kept, the rest left out
    #: (``gateway.schema_versions.for_adapter`` then hands it the v2 payload, not a v1 downgrade).
    reads_v2_payloads: ClassVar[bool] = True

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

    def check_shared(self, payload: dict[str, Any], trace: _Trace) -> None:
        """Rules across fields the adapter adds, checked before validation and named by local field."""

    # -- local -> shared --

    def check_local(self, record: Any) -> None:
        """Check the record against the local JSON Schema; errors name the field, never the value.

        Every problem is reported at once (:class:`~adapters.errors.RecordErrors` when there are several).
        """
        raise_all(self.local_errors(record))

    def local_errors(self, record: Any) -> list[AdapterError]:
        """Every way the record breaks its local JSON Schema, in form order (no value quoted)."""
        if self._local_validator is None:
            return []
        found = sorted(self._local_validator.iter_errors(record), key=lambda e: [str(p) for p in e.absolute_path])
        out: list[AdapterError] = []
        for error in found:
            where = _local_path(error.absolute_path)
            if error.validator == "required":
                out.extend(MissingFieldError(_local_join(where, k), "is required by the local format")
                           for k in error.validator_value if isinstance(error.instance, dict) and k not in error.instance)
            elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
                for extra in (k for k in error.instance if k not in known):
                    shown = extra if _IDENTIFIER.fullmatch(extra) and len(extra) <= 64 else "?"
                    out.append(LocalRecordInvalidError(_local_join(where, shown), "is not a field of the local format",
                                                       reason_code="not_a_field"))
            else:
                schema = error.schema if isinstance(error.schema, dict) else {}
                reason, code, params = _describe_local(error.validator, error.validator_value, schema.get("x-hint"),
                                                       error.instance)
                out.append(LocalRecordInvalidError(where or "$", reason, reason_code=code, params=params))
        return out

    def to_shared(self, local_record: dict[str, Any], purposes: Iterable[str] | None = None) -> AdaptResult:
        """Map a local record to a schema-valid ``referral.request`` for ``purposes``.

        ``purposes`` defaults to the request purposes the record names (mapped to ``purposes``),
        else to every purpose its consent records. Fields the purposes do not allow are
        dropped and listed in ``AdaptResult.dropped``.
        """
        errors: list[AdapterError] = self.local_errors(local_record)
        if errors and not isinstance(local_record, dict):
            raise_group(errors)
        try:
            local = self.prepare_local(copy.deepcopy(local_record))
            payload, trace, failed = self._map_record(local)
        except AdapterError as exc:
            raise_group([*errors, exc])
        except Exception:
            # A record of the wrong shape can trip a hook or the table; its shape errors say why.
            if errors:
                raise_group(errors)
            raise
        errors.extend(self._check_local_codes(local))
        purposes_known = True
        try:
            wanted = self._purposes(purposes, payload, trace, failed)
        except AdapterError as exc:
            # Keep going with every purpose so each other field is still checked and reported.
            errors.append(exc)
            wanted, purposes_known = list(PURPOSES_BY_VERSION[self.schema_version]), False
            payload.pop("purposes", None)
        payload = {**self._version_member(), "purposes": wanted, **payload}
        dropped: list[DroppedField] = []
        dropped_values = self._drop_disallowed(payload, wanted, trace, failed, dropped, errors)
        try:
            self._settle_age(payload, trace, dropped_values, dropped)
        except AdapterError as exc:
            # An age field that could not be read is already reported; what follows from it is noise.
            if not any(_within(shared, "person.age") for shared in failed):
                errors.append(exc)
        if not any(_within(shared, "consent") for shared in failed):
            errors.extend(self._consent_errors(payload, wanted if purposes_known else [], trace))
        if not errors:
            try:
                self.check_shared(payload, trace)
            except AdapterError as exc:
                errors.append(exc)
        raise_all(_in_form_order(errors, local_record, self.table))
        dropped.extend(
            DroppedField(local, shared, f"no shared code for this {label}: not sent")
            for local, shared, label in trace.unsent
        )
        dropped.extend(
            DroppedField(name, None, f"local only: {why}")
            for name, why in self.table.local_only.items()
            if not self.table.is_missing(get_path(local, name)) and get_path(local, name) is not _MISSING
        )
        validate_payload(MESSAGE_TYPE, payload)
        return AdaptResult(payload, tuple(dropped))

    def to_shared_v2(self, local_record: dict[str, Any], purposes: Iterable[str] | None = None, *,
                     recipient: str | None = None, recipient_country: str | None = None) -> AdaptResult:
        """The record as a schema v2 ``referral.request`` (``to_shared``, upgraded, plus what v2 adds).

        ``recipient`` (agency id) and its country let a consent that names recipient countries
        cover that agency (v2 consent names agencies). What the upgrade leaves out is reported in
        ``dropped`` like any other field; :meth:`extend_v2` adds what only v2 can say.
        """
        record, v2_codes = self._v2_spelled(local_record)
        result = self.to_shared(record, purposes)
        upgraded = upgrade_to_v2(result.payload, MESSAGE_TYPE, recipient=recipient, recipient_country=recipient_country)
        payload = upgraded.payload
        for shared_path, code in v2_codes.items():
            set_path(payload, shared_path, code)
        dropped = list(result.dropped)
        for item in upgraded.dropped:
            shared = item.path.removeprefix("$.")
            dropped.append(DroppedField(self.table.local_for(re.sub(r"\[\d+\]", "", shared)), shared, item.reason))
        consent = payload.get("consent")
        if isinstance(consent, dict) and "recipients" not in consent:
            where = self.table.local_for("consent.recipient_agencies")
            if recipient is not None:
                raise MissingFieldError(where, "does not name the recipient agency, nor does the consent name its "
                                               "country: the consent does not cover this recipient",
                                        reason_code="consent_not_covering_recipient", params={"recipient": recipient})
            raise MissingFieldError(where, "is required for a schema v2 referral (v2 consent names the recipient "
                                           "agencies) unless the recipient agency is given", reason_code="required_for_v2")
        self._add_uncoded_languages(local_record, payload, dropped)
        self._add_care_status(local_record, payload, dropped)
        self.extend_v2(self.prepare_local(copy.deepcopy(local_record)), payload, dropped)
        validate_payload(MESSAGE_TYPE, payload)
        return AdaptResult(payload, tuple(dropped))

    #: Shared paths that hold a language: where ``uncoded_languages`` apply.
    _LANGUAGE_PATHS = ("person.languages", "consent.explained_in")

    def _add_uncoded_languages(self, record: Any, payload: dict[str, Any], dropped: list[DroppedField]) -> None:
        """A language the form names and ISO 639-3 has no one code for ("dogon": a cluster of languages) is
        not sent in v1 (its code-list value is null); v2 carries it by name (``{"code": "mis", "name": "Dogon"}``)."""
        names = {normalise(spelling): name for spelling, name in self.table.uncoded_languages.items()}
        if not names or not isinstance(record, dict):
            return
        for rule, local, shared in _walk_rules(self.table.rules):
            if shared not in self._LANGUAGE_PATHS:
                continue
            raw = get_path(record, local)
            if raw is _MISSING or self.table.is_missing(raw):
                continue
            listed = shared == "person.languages"
            items = self._items(rule, raw if isinstance(raw, list) else [raw]) if listed else [(None, raw)]
            carried: set[str] = set()
            for index, item in items:
                name = names.get(normalise(item)) if isinstance(item, str) else None
                if name is None:
                    continue
                language = {"code": UNCODED, "name": name}
                if listed:
                    languages = payload.setdefault("person", {}).setdefault("languages", [])
                    if language not in languages:
                        languages.append(language)
                elif isinstance(payload.get("consent"), dict):
                    payload["consent"]["explained_in"] = language
                carried.add(local if index is None else f"{local}[{index}]")
            dropped[:] = [d for d in dropped if not (d.local_field in carried and (d.shared_path or "").startswith(shared))]

    def _add_care_status(self, record: Any, payload: dict[str, Any], dropped: list[DroppedField]) -> None:
        """A child's care status (unaccompanied, separated...): a local-only field in v1, ``child_protection.care_status``
        in v2 (``care_status`` in the table; checked against its code list by ``local_checks``)."""
        where = self.table.care_status.get("local")
        if where is None or not isinstance(record, dict) or get_path(payload, "person.age.minor") is not True:
            return
        value = get_path(record, where)
        if value is _MISSING or self.table.is_missing(value):
            return
        status = self.table.code_lists[self.table.care_status["codes"]].to_shared(value)
        payload.setdefault("child_protection", {})["care_status"] = status
        dropped[:] = [d for d in dropped if d.local_field != where]

    def _write_care_status(self, payload: dict[str, Any], local: dict[str, Any]) -> None:
        where = self.table.care_status.get("local")
        status = get_path(payload, "child_protection.care_status")
        if where is not None and isinstance(status, str) and status != "unknown":
            set_path(local, where, self.table.code_lists[self.table.care_status["codes"]].to_local(status))

    def _write_uncoded_languages(self, payload: dict[str, Any], local: dict[str, Any]) -> None:
        """Back to the form: an uncoded v2 language the form has a spelling for (by name) is written in that spelling."""
        spellings: dict[str, str] = {}
        for spelling, name in self.table.uncoded_languages.items():
            spellings.setdefault(normalise(name), spelling)
        if not spellings:
            return
        for rule, where, shared in _walk_rules(self.table.rules):
            if shared not in self._LANGUAGE_PATHS:
                continue
            value = get_path(payload, shared)
            values = value if isinstance(value, list) else [value]
            found = [spellings[normalise(v["name"])] for v in values
                     if isinstance(v, dict) and isinstance(v.get("name"), str) and normalise(v["name"]) in spellings]
            if not found:
                continue
            if shared == "person.languages":
                current = get_path(local, where)
                current = current if isinstance(current, list) else [] if current is _MISSING else [current]
                set_path(local, where, current + [s for s in found if s not in current])
            else:
                set_path(local, where, found[0])

    def _v2_spelled(self, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Values spelled as a v2-only code (``v2_spellings``: "juge des mineurs" -> juvenile_judge) and
        the record with a v1 stand-in for the table (the v2 code replaces it after the upgrade)."""
        if not isinstance(record, dict):
            return record, {}
        out, codes = dict(record), {}
        for shared_path, spellings in self.table.v2_spellings.items():
            where = self.table.local_for(shared_path)
            value = out.get(where)
            found = [code for code, spelling in spellings.items()
                     if isinstance(value, str) and normalise(spelling) == normalise(value)]
            if found and "." not in where:
                codes[shared_path] = found[0]
                rule = next(r for r in self.table.rules if r.local == where)
                stand_in = rule.codes.to_local("third_person") if rule.codes and shared_path.endswith("referral_source") else None
                if stand_in is None:
                    del out[where]
                else:
                    out[where] = stand_in
        return out, codes

    def extend_v2(self, local: dict[str, Any], payload: dict[str, Any], dropped: list[DroppedField]) -> None:
        """Add to an upgraded v2 payload what only v2 can say (guardian role, best interests...). Default: nothing."""

    def finish_local_v2(self, record: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        """Write into the local record what only a v2 payload says (after the table ran). Default: nothing."""
        return record

    def _check_local_codes(self, local: dict[str, Any]) -> list[AdapterError]:
        """Local-only coded fields (``local_checks``) must hold a value of their code list, though they are not sent."""
        out: list[AdapterError] = []
        for name, list_name in self.table.local_checks.items():
            value = get_path(local, name)
            if value is _MISSING or self.table.is_missing(value):
                continue
            codes = self.table.code_lists[list_name]
            try:
                codes.to_shared(value)
            except KeyError:
                out.append(_not_in_code_list(name, value, codes))
        return out

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
            problems: list[AdapterError] = []
            for sub in rule.fields:
                is_scalar = scalar_item and sub.local == rule.scalar
                try:
                    written = self._map_field(sub, raw, obj, where, shared_where, trace, where if is_scalar else None)
                except MissingFieldError as exc:
                    if exc.reason_code == "required":
                        missing_required.append(exc.local_field or where)
                    else:
                        problems.append(exc)
                    continue
                except AdapterError as exc:
                    problems.append(exc)
                    continue
                # ["inconnu"] is an item of unknown kind (e.g. exploitation type undetermined),
                # not "no item": the scalar's unknown value counts as a real value.
                real += written or (is_scalar and sub.unknown is not _UNSET)
            if not real and not problems:
                return _MISSING
            problems.extend(MissingFieldError(m, f"is required when {where} is given", reason_code="required_with",
                                              params={"with": where}) for m in missing_required)
            if problems:
                raise_group(problems)
            return obj
        if self.table.is_missing(raw):
            return _MISSING
        if rule.items is not None:
            if not isinstance(raw, list):
                raw = [raw] if rule.items.fields is None and not isinstance(raw, dict) else raw
            if not isinstance(raw, list):
                raise UnmappableValueError(where, "must be a list")
            out: list[Any] = []
            item_problems: list[AdapterError] = []
            for i, item in self._items(rule, raw):
                item_where = f"{where}[{i}]"
                try:
                    value = self._to_shared_value(rule.items, item, item_where, f"{shared_where}[{len(out)}]", trace)
                except AdapterError as exc:
                    item_problems.append(exc)
                    continue
                if value is _MISSING and rule.items.unknown is not _UNSET:
                    value = rule.items.unknown
                if value is not _MISSING and value not in out:
                    out.append(value)
            if item_problems:
                raise_group(item_problems)
            return out or _MISSING
        value = raw
        if rule.transform is not None:
            try:
                value = self.table.transforms[rule.transform].to_shared(value, self.table.transform_args(rule))
            except TransformFailed as exc:
                raise UnmappableValueError(where, str(exc), reason_code=exc.reason_code, params=exc.params) from None
        if rule.codes is not None:
            try:
                value = rule.codes.to_shared(value)
            except KeyError:
                raise _not_in_code_list(where, value, rule.codes) from None
            if value is None:
                trace.unsent.append((where, shared_where, rule.codes.label))
                return _MISSING
        elif rule.transform is None and isinstance(value, (dict, list)):
            raise UnmappableValueError(where, "must be a single value")
        return value

    def _items(self, rule: Rule, raw: list[Any]) -> list[tuple[int, Any]]:
        """(index as the clerk wrote it, item): with ``split``, "Hausa, Yoruba" is two items of index 0."""
        if not rule.split or rule.items is None or rule.items.codes is None:
            return list(enumerate(raw))
        codes = rule.items.codes
        pattern = re.compile("|".join(
            rf"\s+{re.escape(sep.strip())}\s+" if sep.strip().isalpha() else rf"\s*{re.escape(sep.strip() or sep)}\s*"
            for sep in rule.split), re.IGNORECASE)
        out: list[tuple[int, Any]] = []
        for i, item in enumerate(raw):
            if isinstance(item, str) and not self.table.is_missing(item):
                try:
                    codes.to_shared(item)  # a spelling that itself holds a separator stays whole
                except KeyError:
                    out.extend((i, part) for part in pattern.split(item) if part.strip())
                    continue
            out.append((i, item))
        return out

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
        # Each adapter maps to its own schema version (v2 purposes only for a v2 adapter).
        known = PURPOSES_BY_VERSION[self.schema_version]
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise PurposesError(f"purposes: {', '.join(map(repr, unknown))} not one of: {', '.join(known)}")
        return wanted

    def _drop_disallowed(self, payload: dict[str, Any], purposes: list[str], trace: _Trace,
                         failed: Mapping[str, AdapterError], dropped: list[DroppedField],
                         errors: list[AdapterError]) -> dict[str, Any]:
        reason = f"not allowed for purposes [{', '.join(purposes)}]"
        disallowed = sorted(disallowed_person_fields(purposes, self.schema_version))
        removed: dict[str, Any] = {}
        for path in disallowed:
            value = delete_path(payload, path)
            if value is not _MISSING:
                removed[path] = value
        for shared, exc in failed.items():
            if not any(_within(shared, p) for p in disallowed):
                errors.append(exc)
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

    def _version_member(self) -> dict[str, str]:
        """``{"schema_version": "2"}`` for a v2 adapter; v1 payloads have no such member."""
        return {} if self.schema_version == "1" else {"schema_version": self.schema_version}

    def _consent_errors(self, payload: dict[str, Any], purposes: list[str], trace: _Trace) -> list[AdapterError]:
        """What is wrong with the consent for these purposes (each problem, not the first)."""
        consent = payload.get("consent")
        if not isinstance(consent, dict):
            return [MissingFieldError(trace.local_for("consent", self.table),
                                      "is required: the consent record travels with every referral")]
        if self.schema_version != "1":
            return self._consent_recipient_errors(payload, purposes, trace)
        out: list[AdapterError] = []
        consented = consent.get("purposes", [])
        missing = [p for p in purposes if p not in consented]
        if missing and "purposes" in consent:
            where = trace.local_for("consent.purposes", self.table)
            out.append(PurposesError(f"{where}: {', '.join(map(repr, missing))} not consented", where,
                                     reason_code="not_consented", params={"purposes": missing}))
        if "recipient_countries" not in consent and "recipient_agencies" not in consent:
            countries = trace.local_for("consent.recipient_countries", self.table)
            agencies = trace.local_for("consent.recipient_agencies", self.table)
            out.append(MissingFieldError(countries, f"is required unless {agencies} is given",
                                         reason_code="required_unless", params={"unless": agencies}))
        out.extend(self._minor_alone(payload, consent, trace))
        return out

    def _consent_recipient_errors(self, payload: dict[str, Any], purposes: list[str],
                                  trace: _Trace) -> list[AdapterError]:
        """v2 consent: every purpose is consented for some recipient agency; a minor cannot consent alone."""
        consent = payload["consent"]
        out: list[AdapterError] = []
        consented = {p for r in consent.get("recipients", []) for p in r.get("purposes", [])}
        where = trace.local_for("consent.recipients", self.table)
        if not consent.get("recipients"):
            out.append(MissingFieldError(where, "is required: the consent names the recipient agencies and their purposes"))
        else:
            missing = [p for p in purposes if p not in consented]
            if missing:
                out.append(PurposesError(f"{where}: {', '.join(map(repr, missing))} not consented for any recipient",
                                         where, reason_code="not_consented", params={"purposes": missing}))
        out.extend(self._minor_alone(payload, consent, trace))
        return out

    def _minor_alone(self, payload: dict[str, Any], consent: dict[str, Any], trace: _Trace) -> list[AdapterError]:
        """A minor cannot consent alone (v1 and v2 alike)."""
        if get_path(payload, "person.age.minor") is not True or consent.get("decision_maker") != "self":
            return []
        where = trace.local_for("consent.decision_maker", self.table)
        return [UnmappableValueError(where, "a minor cannot consent alone: a parent/guardian, the child protection "
                                            "service or a judge of minors must give the consent",
                                     reason_code="minor_consents_alone")]

    # -- shared -> local --

    def from_shared(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Map a valid shared ``referral.request`` to a local record (codes in their preferred spelling)."""
        validate_payload(MESSAGE_TYPE, payload)
        # A v2 table (schema_version "2") reads v2 codes itself; a v1 table reads the v1 shape.
        v2 = payload_version(payload) == "2" and self.schema_version == "1"
        v1, v2_codes = self._for_the_table(payload) if v2 else (payload, {})
        local: dict[str, Any] = {}
        for rule in self.table.rules:
            self._from_field(rule, v1, local, "")
        for shared_path, code in v2_codes.items():
            spelling = self.table.v2_spellings.get(shared_path, {}).get(code)
            where = self.table.local_for(shared_path)
            if spelling is None:
                raise UnmappableValueError(shared_path, f"'{code}' has no local spelling (schema v2 code)",
                                           reason_code="no_local_spelling", params={"label": shared_path})
            set_path(local, where, spelling)
        if v2:
            self._write_uncoded_languages(payload, local)
            self._write_care_status(payload, local)
        local = self.finish_local(local)
        return self.finish_local_v2(local, payload) if v2 else local

    def _for_the_table(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """A v2 payload in the v1 shape the table reads, and the v2-only codes the table cannot spell.

        What the local form has no field for (criminal justice, the needs beyond services, an
        uncoded language) is left to :meth:`finish_local_v2` or not written; v2-only purposes
        are not the form's and are left out.
        """
        body = copy.deepcopy(payload)
        for member in ("child_protection", "criminal_justice"):
            body.pop(member, None)
        body["purposes"] = [p for p in body.get("purposes", []) if p not in V2_ONLY_PURPOSES] or ["assistance"]
        needs = body.get("needs")
        if isinstance(needs, dict):
            body["needs"] = {"services": needs["services"]} if needs.get("services") else None
            if body["needs"] is None:
                del body["needs"]
        codes: dict[str, str] = {}
        identification = body.get("identification", {})
        if identification.get("referral_source") in V2_ONLY_REFERRAL_SOURCES:
            codes["identification.referral_source"] = identification["referral_source"]
            identification["referral_source"] = "third_person"  # a stand-in the spelling above replaces
        if identification.get("identified_by") in V2_ONLY_ORGANISATION_TYPES:
            codes["identification.identified_by"] = identification.pop("identified_by")
        for _ in range(2):
            try:
                return downgrade_to_v1(body, MESSAGE_TYPE), codes
            except DowngradeError as exc:
                # A field v1 cannot carry is not on the form either: leave it out.
                for refused in exc.fields:
                    _delete_json_path(body, refused.path)
        return downgrade_to_v1(body, MESSAGE_TYPE), codes

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
                raise UnmappableValueError(where, f"{_echo(value)} has no local spelling in the code list for {rule.codes.label}",
                                           reason_code="no_local_spelling", params={"label": rule.codes.label},
                                           quoted=_echo(value)) from None
        elif rule.unknown is not _UNSET and value == rule.unknown:
            return self.table.missing_local
        if rule.transform is not None:
            value = self.table.transforms[rule.transform].to_local(value, self.table.transform_args(rule))
            if value is None:
                return _MISSING
        return value


def _delete_json_path(body: dict[str, Any], path: str) -> None:
    """Remove ``$.a.b[2].c`` from a payload (nothing if absent)."""
    parts: list[Any] = [int(p[1:-1]) if p.startswith("[") else p
                        for p in re.findall(r"[^.\[\]$]+|\[\d+\]", path)]
    node: Any = body
    for part in parts[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)
    elif isinstance(node, list) and isinstance(parts[-1], int) and parts[-1] < len(node):
        node.pop(parts[-1])


def _in_form_order(errors: list[AdapterError], record: Mapping[str, Any], table: MappingTable) -> list[AdapterError]:
    """The problems in the order of the form (the record's own field order, then the table's)."""
    places = {name: i for i, name in enumerate(record)}
    for rule in table.rules:
        places.setdefault((rule.local or "").split(".")[0], len(places))

    def place(error: AdapterError) -> int:
        top = re.split(r"[.\[]", error.local_field or "", maxsplit=1)[0]
        return places.get(top, len(places))

    return sorted((one for e in errors for one in e.errors), key=place)


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


def _not_in_code_list(where: str, value: Any, codes: CodeList) -> UnmappableValueError:
    """A coded value that is not in its list; the accepted spellings are named (vocabulary, not personal data)."""
    accepted = codes.accepted()
    listing = (f" (accepted: {', '.join(accepted)})" if accepted
               else f" (see the code list '{codes.name}' in docs/adapters.md)")
    # Coded fields hold vocabulary, not personal data: the value is quoted.
    return UnmappableValueError(where, f"{_echo(value)} is not in the code list for {codes.label}{listing}",
                                reason_code="not_in_code_list",
                                params={"code_list": codes.name, "label": codes.label, "accepted": accepted},
                                quoted=_echo(value))


def _describe_local(rule: str, expected: Any, hint: str | None = None,
                    instance: Any = None) -> tuple[str, str, dict[str, Any]]:
    """A reason from the local schema's side only (the value is never quoted, nor a regular expression).

    Returns (English reason, reason code, parameters). ``hint`` is the schema's ``x-hint``: how
    the form writes the value, in the form's own language ("JJ/MM/AAAA").
    """
    if rule == "type":
        kinds = list(expected) if isinstance(expected, list) else [expected]
        return f"must be of type {' or '.join(kinds)}", "wrong_type", {"types": kinds}
    if rule == "enum":
        if len(expected) <= 12:
            return "must be one of: " + ", ".join(map(str, expected)), "not_allowed", {"accepted": list(expected)}
        return "is not an allowed value", "not_allowed", {}
    if rule == "pattern":
        if hint is None:
            return "is not written the way the form expects", "bad_format", {}
        # "written year first" helps a day-first form only (HTCDS dates are year first: "2003-4-9" is just malformed)
        if isinstance(instance, str) and _YEAR_FIRST.match(instance) and not hint.startswith(("YYYY", "AAAA")):
            return f"is written year first: write the date as {hint}", "date_year_first", {"hint": hint}
        return f"must be written as {hint}", "bad_format", {"hint": hint}
    if rule in ("maxLength", "minLength"):
        return (f"must be at {'most' if rule == 'maxLength' else 'least'} {expected} characters long",
                "too_long" if rule == "maxLength" else "too_short", {"limit": expected})
    if rule in ("maxItems", "minItems"):
        return (f"must have at {'most' if rule == 'maxItems' else 'least'} {expected} items",
                "too_many_items" if rule == "maxItems" else "too_few_items", {"limit": expected})
    if rule in ("minimum", "maximum"):
        return f"must be {'>=' if rule == 'minimum' else '<='} {expected}", rule, {"limit": expected}
    return f"breaks the local format's '{rule}' rule", "local_rule", {"rule": rule}


@cache
def shared_request_fields(version: str = "1") -> frozenset[str]:
    """Every dotted path a referral.request of a schema version can carry (for mapping-coverage tests)."""
    common = version_dir(version) / "common.schema.json"
    defs = json.loads(common.read_text(encoding="utf-8"))["$defs"]
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

    walk(load_schema(MESSAGE_TYPE, version), "")
    return frozenset(out)
