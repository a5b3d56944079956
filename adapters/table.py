"""The mapping table: rules read from an adapter's ``mapping.json`` and checked when loaded."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.codes import CodeList, normalise
from adapters.errors import MappingDefinitionError, _check_keys
from adapters.transforms import TRANSFORMS, Transform

#: Schema v2 ``$defs/care_status`` (a child's care status).
CARE_STATUSES = ("unaccompanied", "separated", "with_parent_or_legal_guardian", "unknown")
MESSAGE_TYPE = "referral.request"

_UNSET: Any = object()
_RULE_KEYS = {"local", "shared", "codes", "transform", "required", "unknown", "default", "fields", "items",
              "scalar", "split", "note"}


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
    split: tuple[str, ...] = ()

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
        split = spec.get("split", [])
        if split and (items is None or items.codes is None or not all(isinstance(s, str) and s for s in split)):
            raise MappingDefinitionError(f"{where}: 'split' (separators) needs an items rule with codes")
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
            split=tuple(split),
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
    date_hint: str = "DD/MM/YYYY"
    country: str | None = None
    local_checks: Mapping[str, str] = field(default_factory=dict)
    v2_spellings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    uncoded_languages: Mapping[str, str] = field(default_factory=dict)
    care_status: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, transforms: Mapping[str, Transform] = TRANSFORMS) -> MappingTable:
        """Read and check a mapping table; a mistake in it raises MappingDefinitionError."""
        spec = json.loads(path.read_text(encoding="utf-8"))
        return cls.from_dict(spec, path.parent, transforms)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], folder: Path, transforms: Mapping[str, Transform] = TRANSFORMS) -> MappingTable:
        _check_keys("mapping", spec, {"format_id", "description", "message_type", "missing_values", "missing_local",
                                      "local_only", "local_checks", "code_lists", "fields", "date_hint", "country",
                                      "v2_spellings", "uncoded_languages", "care_status"})
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
            date_hint=spec.get("date_hint", "DD/MM/YYYY"),
            country=spec.get("country"),
            local_checks=dict(spec.get("local_checks", {})),
            v2_spellings={k: dict(v) for k, v in spec.get("v2_spellings", {}).items()},
            uncoded_languages=dict(spec.get("uncoded_languages", {})),
            care_status=dict(spec.get("care_status", {})),
        )
        if table.care_status:
            # {"local": <local-only field>, "codes": <code list>}: a child's care status, sent in v2 only
            _check_keys("care_status", table.care_status, {"local", "codes"})
            codes = lists.get(table.care_status.get("codes", ""))
            if codes is None or table.care_status.get("local") not in table.local_only:
                raise MappingDefinitionError("care_status: needs a code list and a local field listed in local_only")
            unknown = set(codes.codes.values()) - set(CARE_STATUSES)
            if unknown:
                raise MappingDefinitionError(f"care_status: {sorted(unknown)} are not care statuses")
        for spelling in table.uncoded_languages:
            # accepted by a code list and not sent in v1 (value null), carried by name in v2
            if not any(codes.accepts_unsent(spelling) for codes in lists.values()):
                raise MappingDefinitionError(f"uncoded_languages.{spelling}: not a spelling with the value null in a code list")
        for local, name in table.local_checks.items():
            if name not in lists:
                raise MappingDefinitionError(f"local_checks.{local}: unknown code list {name!r}")
        rules = tuple(Rule.build(s, table, f"fields[{i}]") for i, s in enumerate(spec.get("fields", [])))
        object.__setattr__(table, "rules", rules)
        return table

    def transform_args(self, rule: Rule) -> dict[str, Any]:
        """A rule's transform arguments, with the form's date hint and country (phone region) as defaults."""
        base: dict[str, Any] = {"date_hint": self.date_hint}
        if self.country:
            base["region"] = self.country
        return {**base, **rule.transform_args}

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
