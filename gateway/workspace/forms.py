"""Forms generated from a message type's schema, and the submitted form back into a payload.

Input names are the payload's paths with dots (``hold.authority``,
``relatives_found.0.relationship``); a list of codes is a group of checkboxes sharing one
name; a list of objects gets :data:`REPEAT_SLOTS` blank slots (empty ones are left out);
yes/no fields are selects with an empty choice so "not said" stays possible. Violations
from the schema come back to the field they name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from multidict import MultiMapping

from gateway.errors import Violation
from gateway.i18n import Message, msg, translate
from gateway.workspace.fields import NO, YES, Node, child, code_text, field_label, items, message_node, resolve

#: Blank slots offered for a list of objects (relatives found, accompanying children).
REPEAT_SLOTS = 3
#: Keys of ``choices`` for every agency-id field and every message-id field without their own.
AGENCY_CHOICES, MESSAGE_CHOICES = "@agency", "@message"
#: Fields a form never shows: the version is the gateway's business.
HIDDEN = frozenset({"schema_version"})


@dataclass
class FormField:
    """One input (or group of inputs) of a generated form."""

    name: str  # the input name: the payload path with dots
    label: str
    kind: str  # select, checkboxes, bool, date, datetime, text, textarea, number, group, repeat
    required: bool = False
    options: list[tuple[str, str]] = field(default_factory=list)  # (value, label)
    fields: list["FormField"] = field(default_factory=list)  # group members
    slots: list[list["FormField"]] = field(default_factory=list)  # repeat: each slot's members
    value: Any = None  # what was submitted (a list for checkboxes)
    error: str | None = None
    max_length: int | None = None

    @property
    def id(self) -> str:
        """An HTML id for the input (names may hold dots)."""
        return "f-" + self.name.replace(".", "-")


def build(message_type: str, version: str, lang: str, *, choices: Mapping[str, list[tuple[str, str]]],
          values: MultiMapping[str] | None = None, errors: Mapping[str, str] | None = None) -> list[FormField]:
    """The fields of ``message_type``'s form. ``choices`` gives the options of fields that are
    not enumerations (agency ids, message ids) by field name."""
    root = message_node(message_type, version)
    required = set(root.schema.get("required", ()))
    return [f for key in root.schema.get("properties", {}) if key not in HIDDEN
            for f in [_field(key, key, child(root, key, version), key in required, version, lang, choices,
                             values, errors or {})] if f is not None]


def _field(name: str, key: str, node: Node | None, required: bool, version: str, lang: str,
           choices: Mapping[str, list[tuple[str, str]]], values: MultiMapping[str] | None,
           errors: Mapping[str, str]) -> FormField | None:
    if node is None:
        return None
    schema = node.schema
    out = FormField(name, field_label(key, lang), "text", required, error=errors.get(name))
    kind = schema.get("type")
    if kind == "object":
        out.kind = "group"
        inner_required = set(schema.get("required", ()))
        out.fields = [f for sub in schema.get("properties", {})
                      for f in [_field(f"{name}.{sub}", sub, child(node, sub, version), sub in inner_required,
                                       version, lang, choices, values, errors)] if f is not None]
        return out
    if kind == "array":
        item = items(node, version)
        if item.schema.get("type") == "object":
            out.kind = "repeat"
            inner_required = set(item.schema.get("required", ()))
            out.slots = [[f for sub in item.schema.get("properties", {})
                          for f in [_field(f"{name}.{i}.{sub}", sub, child(item, sub, version),
                                           sub in inner_required, version, lang, choices, values, errors)]
                          if f is not None]
                         for i in range(REPEAT_SLOTS)]
            return out
        out.kind = "checkboxes"
        out.options = _options(item, key, lang, choices)
        out.value = values.getall(name, []) if values is not None else []
        return out
    out.value = values.get(name) if values is not None else None
    if "enum" in schema or key in choices or node.def_name in ("agency_id", "uuid"):
        out.kind = "select"
        out.options = _options(node, key, lang, choices)
    elif kind == "boolean":
        out.kind = "bool"
        out.options = [("true", translate(YES, lang)), ("false", translate(NO, lang))]
    elif node.def_name == "date":
        out.kind = "date"
    elif node.def_name == "date_time":
        out.kind = "datetime"
    elif kind in ("integer", "number"):
        out.kind = "number"
    elif node.def_name == "comment" or (schema.get("maxLength") or 0) > 200:
        out.kind = "textarea"
    out.max_length = schema.get("maxLength")
    return out


def _options(node: Node, key: str, lang: str, choices: Mapping[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    if key in choices:
        return list(choices[key])
    if node.def_name == "agency_id":
        return list(choices.get(AGENCY_CHOICES, ()))
    if node.def_name == "uuid":
        return list(choices.get(MESSAGE_CHOICES, ()))
    if node.list_name == "country_code":
        return sorted(((str(v), code_text(node, v, lang)) for v in node.schema.get("enum", ())), key=lambda o: o[1])
    return [(str(v), code_text(node, v, lang)) for v in node.schema.get("enum", ())]


# --- the submitted form back into a payload ----------------------------------------------

_DATETIME_LOCAL = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(?::(\d{2}))?$")


def parse(fields: Iterable[FormField], form: MultiMapping[str]) -> dict[str, Any]:
    """The payload the form describes (empty inputs left out), without ``schema_version``."""
    out: dict[str, Any] = {}
    for f in fields:
        value = _value(f, form)
        if value is not None:
            out[f.name.rsplit(".", 1)[-1]] = value
    return out


def _value(f: FormField, form: MultiMapping[str]) -> Any:
    if f.kind == "group":
        inner = parse(f.fields, form)
        return inner or None
    if f.kind == "repeat":
        found = [slot for slot in (parse(s, form) for s in f.slots) if slot]
        return found or None
    if f.kind == "checkboxes":
        chosen = [str(v) for v in form.getall(f.name, []) if str(v)]
        return list(dict.fromkeys(chosen)) or None
    raw = form.get(f.name)
    text = str(raw).strip() if raw is not None else ""
    if not text:
        return None
    if f.kind == "bool":
        return {"true": True, "false": False}.get(text, text)
    if f.kind == "number":
        return int(text) if re.fullmatch(r"-?\d{1,9}", text) else text
    if f.kind == "datetime":
        m = _DATETIME_LOCAL.match(text)
        return f"{m[1]}T{m[2]}:{m[3] or '00'}Z" if m else text
    return text


#: What a broken schema rule means for the person filling the form, by rule (JSON Schema
#: keyword). The schema engine's own texts are English and name patterns; these are not.
RULE_TEXTS: dict[str, Message] = {
    "required": msg("This is required."),
    "false": msg("Leave this empty with the choice made above."),
    "enum": msg("Choose one of the options."),
    "pattern": msg("This is not written as expected."),
    "format": msg("This is not written as expected."),
    "minItems": msg("Choose at least one."),
    "maxLength": msg("This is too long."),
    "type": msg("This is not the expected kind of answer."),
}
OTHER_RULE = msg("This answer is not accepted here.")


def field_errors(violations: Iterable[Violation]) -> tuple[dict[str, str], list[str]]:
    """Violations by input name (as translatable texts), and those that name no single input."""
    by_name: dict[str, str] = {}
    general: list[str] = []
    for v in violations:
        name = re.sub(r"\[(\d+)\]", r".\1", v.path).removeprefix("$").lstrip(".")
        text: str = RULE_TEXTS.get(v.rule, OTHER_RULE)
        if not name:
            general.append(msg("{path}: {message}", path=v.path, message=text))
        else:
            by_name.setdefault(name, text)
    return by_name, general


def typed_slots(fields: Iterable[FormField], form: MultiMapping[str]) -> dict[str, str]:
    """Where each item of a list of objects was typed: the payload's ``relatives_found.0`` →
    the input prefix ``relatives_found.1`` when the first slot was left blank (blank slots are
    left out of the payload, so the schema's item numbers are not the form's)."""
    out: dict[str, str] = {}
    for f in fields:
        if f.kind == "group":
            out |= typed_slots(f.fields, form)
        elif f.kind == "repeat":
            filled = [i for i, slot in enumerate(f.slots) if parse(slot, form)]
            out |= {f"{f.name}.{k}": f"{f.name}.{i}" for k, i in enumerate(filled) if k != i}
    return out


def at_inputs(errors: Mapping[str, str], slots: Mapping[str, str]) -> dict[str, str]:
    """``errors`` (by payload path, from :func:`field_errors`) by the input they belong next to."""
    out: dict[str, str] = {}
    for name, text in errors.items():
        for sent, typed in slots.items():
            if name == sent or name.startswith(sent + "."):
                name = typed + name[len(sent):]
                break
        out.setdefault(name, text)
    return out


def all_names(fields: Iterable[FormField]) -> set[str]:
    """Every input name of a form (groups and slots included)."""
    names: set[str] = set()
    for f in fields:
        names.add(f.name)
        names |= all_names(f.fields)
        for slot in f.slots:
            names |= all_names(slot)
    return names

