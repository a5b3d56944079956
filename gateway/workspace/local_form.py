"""An agency's local form as an HTML form: fields built from the adapter's local JSON Schema, and back.

The compose page (gateway/workspace/compose.py) shows the form the agency knows -- the
Niger fiche in French, NAPTIP's record in English -- whatever the reader's language: the
labels, sections and the form's language come from ``form.json`` beside the adapter's
local schema, the choices of a coded field are the spellings of its code list (mapping.json).

Input names are the local field paths: ``prenom``, ``lieu_origine.ville`` (objects
flattened), ``contacts_famille.0.prenom`` (lists of objects as a fixed number of rows),
``besoins`` repeated for a list of codes. :meth:`LocalForm.parse` turns the posted fields
back into a local record: empty fields left out, whole numbers parsed, empty rows dropped.
:meth:`LocalForm.values` is the inverse, so a form re-shown after an error keeps what the
clerk typed (tests/test_workspace_local_form.py: record → fields → record).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

from adapters.registry import get_adapter

#: A list of codes with more choices than this is a multiple select, not checkboxes (250 countries).
MAX_CHECKBOXES = 30
#: Rows shown for a list of objects (family contacts, documents) or of free texts (other names).
DEFAULT_ROWS = 2
#: The most rows a list is ever shown with: no local schema allows a longer list (maxItems), and a
#: posted record with thousands of items must not build thousands of rows (CPU, memory).
MAX_ROWS = 20
#: Forms kept built (one per format and row counts): bounded, as the row counts come from posted records.
FORMS_CACHED = 64
#: A text field at least this long is a text area (a narrative, notes).
TEXTAREA_FROM = 1000
_WHOLE = re.compile(r"^-?[0-9]{1,9}$")

Kind = Literal["text", "textarea", "number", "select", "checkboxes", "multiselect"]


@dataclass(frozen=True)
class Choice:
    """One option of a coded field: the local spelling sent, and its label (the same, in the form's language)."""

    value: str
    label: str
    #: The shared code the spelling stands for (a JSON true for "oui"), not shown.
    code: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class FormField:
    """One input of the form. ``name`` is the local path with row numbers (``contacts_famille.0.nom``)."""

    name: str
    label: str
    kind: Kind
    choices: tuple[Choice, ...] = ()
    required: bool = False
    hint: str | None = None
    max_length: int | None = None
    #: The row this field belongs to (``contacts_famille.0``) and its caption, for a list of objects.
    row: str | None = None
    row_label: str | None = None
    #: The object this field belongs to outside a row (``lieu_origine``) and its caption.
    group: str | None = None
    group_label: str | None = None

    @property
    def caption(self) -> str | None:
        """The caption of the fieldset around this field: its row's, else its object's."""
        return self.row_label if self.row else self.group_label if self.group else None

    @property
    def multiple(self) -> bool:
        """True when the field holds a list of values (checkboxes or a multiple select)."""
        return self.kind in ("checkboxes", "multiselect")

    @property
    def html_id(self) -> str:
        """An id for the input and its label (dots are fine in ids but not in CSS selectors)."""
        return "f-" + self.name.replace(".", "-")


@dataclass(frozen=True)
class Section:
    """A fieldset of the form."""

    id: str
    legend: str
    fields: tuple[FormField, ...]


@dataclass(frozen=True)
class _ListRows:
    """A list field shown as rows: the list's local path and how many rows."""

    name: str
    rows: int
    of_objects: bool


@dataclass(frozen=True)
class LocalForm:
    """The local form of one adapter: its sections and fields, language and title."""

    format_id: str
    language: str
    title: str
    sections: tuple[Section, ...]
    #: The section holding the consent record (its id is "consent").
    consent_field: str
    lists: tuple[_ListRows, ...] = ()

    def fields(self) -> Iterable[FormField]:
        """Every input, in form order."""
        for section in self.sections:
            yield from section.fields

    def field(self, name: str) -> FormField | None:
        """The input called ``name``, if the form has it."""
        return next((f for f in self.fields() if f.name == name), None)

    def parse(self, posted: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """The local record of the posted fields: blanks left out, whole numbers parsed, empty rows dropped.

        Names the form does not have (the CSRF token, the recipient) are ignored.
        """
        got: dict[str, list[str]] = {}
        for name, text in posted:
            if isinstance(text, str):
                got.setdefault(name, []).append(text)
        record: dict[str, Any] = {}
        for form_field in self.fields():
            values = [v.strip() for v in got.get(form_field.name, []) if v.strip()]
            if not values:
                continue
            value: Any
            if form_field.multiple:
                value = list(dict.fromkeys(values))
            elif form_field.kind == "number" and _WHOLE.match(values[0]):
                value = int(values[0])
            else:
                value = values[0]  # a wrong entry stays text: the adapter names the field and why
            _put(record, form_field.name.split("."), value)
        for rows in self.lists:
            _compact(record, rows.name.split("."))
        return record

    def values(self, record: Mapping[str, Any]) -> dict[str, list[str]]:
        """The form's inputs filled from a record (``name`` → values); the inverse of :meth:`parse`."""
        record = self._scalar_rows(record)
        out: dict[str, list[str]] = {}
        for form_field in self.fields():
            value = _get(record, form_field.name.split("."))
            if value is None or value == "" or value == []:
                continue
            if isinstance(value, list):
                out[form_field.name] = [_text(v, form_field) for v in value if not isinstance(v, (dict, list))]
            elif not isinstance(value, dict):
                out[form_field.name] = [_text(value, form_field)]
        return out

    def _scalar_rows(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """A record whose list items written as one text (``"travail domestique (intentionnelle)"``,
        which the schema allows for a row of objects) are in the row's first field, where the form shows them."""
        out: Any = None
        for rows in self.lists:
            items = _get(record, rows.name.split("."))
            if not rows.of_objects or not isinstance(items, list) or not any(isinstance(i, str) for i in items):
                continue
            first = next((f.name for f in self.fields() if f.row == f"{rows.name}.0"), None)
            if first is None:
                continue
            key = first.split(".")[-1]
            out = out if out is not None else json.loads(json.dumps(record))
            _put(out, rows.name.split("."), [{key: i} if isinstance(i, str) else i for i in items])
        return record if out is None else out

    def fit(self, record: Mapping[str, Any]) -> LocalForm:
        """This form with enough rows for the record's lists (at most MAX_ROWS), and its values among the choices
        (a spelling the code list knows but does not prefer is kept, not lost)."""
        rows = {name: min(MAX_ROWS, max(DEFAULT_ROWS, len(v))) for name in (r.name for r in self.lists)
                if isinstance(v := _get(record, name.split(".")), list)}
        form = build_form(self.format_id, rows=tuple(sorted(rows.items()))) if rows else self
        filled = form.values(record)
        sections = tuple(replace(s, fields=tuple(_with_values(f, filled.get(f.name, [])) for f in s.fields))
                         for s in form.sections)
        return replace(form, sections=sections)

    def with_choices(self, name: str, choices: Iterable[tuple[str, str]]) -> LocalForm:
        """This form with the choices of one field replaced (the directory's agencies for the consent's recipients)."""
        new = tuple(Choice(v, label) for v, label in choices)
        def one(f: FormField) -> FormField:
            return replace(f, choices=new, kind="checkboxes", hint=None) if f.name == name else f

        sections = tuple(replace(s, fields=tuple(one(f) for f in s.fields)) for s in self.sections)
        return replace(self, sections=sections)


def input_name(local_field: str) -> str:
    """The input name of an adapter error's local field (``contacts_famille[0].telephone`` →
    ``contacts_famille.0.telephone``)."""
    return re.sub(r"\[(\d+)\]", r".\1", local_field)


@cache
def form_spec(format_id: str) -> dict[str, Any]:
    """The adapter's ``form.json`` (labels, sections, language); {} when it has none."""
    folder = _folder(format_id)
    path = folder / "form.json" if folder else None
    if path is None or not path.is_file():
        return {}
    spec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return spec


def formats_with_forms() -> tuple[str, ...]:
    """The formats whose adapter has a local schema and a ``form.json``: the forms a clerk can fill in."""
    from adapters.registry import available_formats  # noqa: PLC0415 - plugins are looked up when asked

    return tuple(f for f in available_formats() if form_spec(f) and _local_schema(f) is not None)


@lru_cache(maxsize=FORMS_CACHED)
def build_form(format_id: str, rows: tuple[tuple[str, int], ...] = ()) -> LocalForm:
    """The form of a format (``rows``: more rows for some lists than :data:`DEFAULT_ROWS`)."""
    schema = _local_schema(format_id)
    if schema is None:
        raise LookupError(f"format {format_id!r} has no local form schema")
    spec = form_spec(format_id)
    builder = _Builder(format_id, schema, spec, dict(rows))
    consent = builder.consent_field()
    top = list(schema.get("properties", {}))
    placed: set[str] = set()
    sections: list[Section] = []
    for section in spec.get("sections", []):
        names = [n for n in section["fields"] if n in top]
        placed.update(names)
        sections.append(Section(section["id"], section["legend"],
                                tuple(f for n in names for f in builder.fields(n, schema["properties"][n]))))
    rest = [n for n in top if n not in placed]
    if rest:
        sections.append(Section("other", spec.get("other_legend", "…"),
                                tuple(f for n in rest for f in builder.fields(n, schema["properties"][n]))))
    return LocalForm(format_id, spec.get("language", "en"), spec.get("title", schema.get("title", format_id)),
                     tuple(sections), consent, tuple(builder.lists))


def _folder(format_id: str) -> Path | None:
    adapter = get_adapter(format_id)
    folder = getattr(adapter, "folder", None)
    return folder if isinstance(folder, Path) else None


def _local_schema(format_id: str) -> dict[str, Any] | None:
    schema = getattr(get_adapter(format_id), "local_schema", None)
    return schema if isinstance(schema, dict) else None


class _Builder:
    """Walks a local schema into form fields."""

    def __init__(self, format_id: str, schema: dict[str, Any], spec: dict[str, Any], rows: dict[str, int]) -> None:
        self.schema = schema
        self.labels: dict[str, str] = spec.get("labels", {})
        self.row_word: str = spec.get("row_label", "#")
        self.rows = rows
        self.table = getattr(get_adapter(format_id), "table", None)
        self.lists: list[_ListRows] = []

    def consent_field(self) -> str:
        """The local field the table maps to the shared consent ("consentement", "consent")."""
        found = self.table.local_for("consent") if self.table is not None else "consent"
        return found.split(".")[0]

    def fields(self, name: str, node: Any, *, required: bool = False, row: str | None = None,
               row_label: str | None = None) -> list[FormField]:
        node = self._resolve(node)
        variants = [self._resolve(v) for v in node.get("oneOf", [])] or [node]
        obj = next((v for v in variants if v.get("type") == "object" or "properties" in v), None)
        arr = next((v for v in variants if v.get("type") == "array"), None)
        if obj is not None:
            required_here = set(obj.get("required", []))
            out = [f for sub, sub_node in obj.get("properties", {}).items()
                   for f in self.fields(f"{name}.{sub}", sub_node, required=sub in required_here,
                                        row=row, row_label=row_label)]
            if name in (self.consent_field(), row):
                return out  # the consent block is a section of its own; a row has its caption
            if row is None:
                # An object (the place of origin) is a fieldset captioned by its label.
                return [f if f.group else replace(f, group=name, group_label=self._label(name)) for f in out]
            # Inside a row, the object's label goes before its fields' ("Lieu — Ville ou village").
            return [replace(f, label=f"{self._label(name)} — {f.label}") for f in out]
        if arr is not None:
            return self._list(name, node, arr, row, row_label)
        return [self._scalar(name, node, required, row, row_label)]

    def _list(self, name: str, node: dict[str, Any], arr: dict[str, Any], row: str | None,
              row_label: str | None) -> list[FormField]:
        items = self._resolve(arr.get("items", {}))
        item_variants = [self._resolve(v) for v in items.get("oneOf", [])] or [items]
        item_obj = next((v for v in item_variants if v.get("type") == "object" or "properties" in v), None)
        codes = items.get("x-code-list") or node.get("x-code-list")
        if item_obj is None and codes:
            choices = self._choices(codes)
            kind: Kind = "checkboxes" if len(choices) <= MAX_CHECKBOXES else "multiselect"
            return [FormField(name, self._label(name), kind, choices, row=row, row_label=row_label)]
        if item_obj is None and items.get("pattern"):
            # Identifiers (agency ids): a list the page fills with choices (FormField.choices).
            return [FormField(name, self._label(name), "checkboxes", (), hint=items.get("x-hint"),
                              max_length=items.get("maxLength"), row=row, row_label=row_label)]
        count = self.rows.get(name, DEFAULT_ROWS)
        self.lists.append(_ListRows(name, count, item_obj is not None))
        out: list[FormField] = []
        for i in range(count):
            caption = f"{self._label(name)} {self.row_word} {i + 1}"
            if item_obj is not None:
                out.extend(self.fields(f"{name}.{i}", item_obj, row=f"{name}.{i}", row_label=caption))
            else:
                # One input per row: the row's caption is its label, no fieldset around it.
                out.append(replace(self._scalar(f"{name}.{i}", items, False, None, None), label=caption))
        return out

    def _scalar(self, name: str, node: dict[str, Any], required: bool, row: str | None,
                row_label: str | None) -> FormField:
        types = node.get("type", "string")
        types = types if isinstance(types, list) else [types]
        codes = node.get("x-code-list")
        label = self._label(name)
        if codes:
            return FormField(name, label, "select", self._choices(codes), required, node.get("x-hint"),
                             node.get("maxLength"), row, row_label)
        if "integer" in types:
            return FormField(name, label, "number", (), required, None, node.get("maxLength"), row, row_label)
        long = (node.get("maxLength") or 0) >= TEXTAREA_FROM
        return FormField(name, label, "textarea" if long else "text", (), required, node.get("x-hint"),
                         node.get("maxLength"), row, row_label)

    def _choices(self, code_list: str) -> tuple[Choice, ...]:
        """The preferred spelling of each code, in table order, and every spelling the shared schema cannot say."""
        if self.table is None or code_list not in self.table.code_lists:
            return ()
        seen: set[str] = set()
        out: list[Choice] = []
        for spelling, code in self.table.code_lists[code_list].codes.items():
            key = json.dumps(code, sort_keys=True)
            if code is not None and key in seen:
                continue
            seen.add(key)
            out.append(Choice(spelling, spelling, code))
        return tuple(out)

    def _label(self, name: str) -> str:
        """The label of the longest known tail of the path without row numbers
        (``contacts_famille.lieu.ville``, then ``lieu.ville``, then ``ville``)."""
        parts = [p for p in name.split(".") if not p.isdigit()]
        for i in range(len(parts)):
            found = self.labels.get(".".join(parts[i:]))
            if found is not None:
                return found
        return parts[-1].replace("_", " ")

    def _resolve(self, node: Any) -> dict[str, Any]:
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            target: Any = self.schema
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node if isinstance(node, dict) else {}


def _with_values(form_field: FormField, values: list[str]) -> FormField:
    """The field with any of ``values`` that is not a choice added as one (nothing typed is lost)."""
    if not values or form_field.kind not in ("select", "checkboxes", "multiselect"):
        return form_field
    known = {c.value for c in form_field.choices}
    extra = tuple(Choice(v, v) for v in dict.fromkeys(values) if v not in known)
    return replace(form_field, choices=form_field.choices + extra) if extra else form_field


def _text(value: Any, form_field: FormField) -> str:
    """A record value as the text of an input: a JSON true of a yes/no field as its spelling ("oui")."""
    if isinstance(value, bool):
        spelled = next((c.value for c in form_field.choices if c.code is value), None)
        return spelled if spelled is not None else ("true" if value else "false")
    return str(value)


def _get(record: Any, parts: list[str]) -> Any:
    node = record
    for part in parts:
        if isinstance(node, list) and part.isdigit():
            index = int(part)
            node = node[index] if index < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
        if node is None:
            return None
    return node


def _put(record: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set a dotted path; a number part makes a list, filled with None up to it (compacted later)."""
    node: Any = record
    for part, after in zip(parts, parts[1:]):
        if isinstance(node, list):
            index = int(part)
            while len(node) <= index:
                node.append(None)
            if node[index] is None:
                node[index] = [] if after.isdigit() else {}
            node = node[index]
        else:
            node = node.setdefault(part, [] if after.isdigit() else {})
    last = parts[-1]
    if isinstance(node, list):
        index = int(last)
        while len(node) <= index:
            node.append(None)
        node[index] = value
    else:
        node[last] = value


def _compact(record: dict[str, Any], parts: list[str]) -> None:
    """Drop the empty rows of a list (a row left blank), and the list when no row is left."""
    parent: Any = record
    for part in parts[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
        if parent is None:
            return
    if not isinstance(parent, dict) or not isinstance(parent.get(parts[-1]), list):
        return
    kept = [row for row in parent[parts[-1]] if row not in (None, {}, [])]
    if kept:
        parent[parts[-1]] = kept
    else:
        del parent[parts[-1]]
