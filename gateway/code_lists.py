"""The code lists of the shared schema (every enumeration of every published version), with labels.

A code list is named for where it is defined: ``sex`` for ``$defs/sex`` of common.schema.json,
``needs.medical_urgency`` for a property of a common definition, ``return.plan.transport_mode``
for a property of one message type. Lists of the same name in several versions are merged
(v1's values first, then what v2 adds). Enumerations inside conditions (``if``/``allOf``
subsets of a list, the per-purpose minimal-data rules) are not lists of their own.

Labels come from the gettext catalogues (gateway/i18n.py; context ``code``), except country
names, which come from Babel's CLDR data, so that 250 names are not copied by hand.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Iterator

from babel import Locale

from gateway.i18n import code_label
from gateway.schema import SCHEMA_VERSIONS, version_dir

#: Lists labelled from CLDR territory names rather than the catalogues.
COUNTRY_LISTS = frozenset({"country_code"})
#: Schema keywords whose enumerations restrict a list (conditions), never define one.
_CONDITIONS = frozenset({"if", "then", "else", "not", "allOf", "anyOf", "oneOf", "contains", "dependentSchemas"})


def _enums(node: Any, name: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(list name, values) for every enumeration of string values under ``node``."""
    if not isinstance(node, dict):
        return
    values = node.get("enum")
    if isinstance(values, list) and name and all(isinstance(v, str) for v in values):
        yield ".".join(name), values
    for key, child in node.items():
        if key in _CONDITIONS:
            continue
        if key in ("properties", "$defs"):
            for member, sub in child.items():
                if member != "minimal_data":
                    yield from _enums(sub, [*name, member])
        elif key == "items":
            yield from _enums(child, name)


@cache
def code_lists() -> dict[str, tuple[str, ...]]:
    """Every code list of every published schema version: name → values (read once)."""
    merged: dict[str, dict[str, None]] = {}
    for version in SCHEMA_VERSIONS:
        for path in sorted(version_dir(version).glob("*.schema.json")):
            document = json.loads(path.read_text(encoding="utf-8"))
            message_type = path.name.removesuffix(".schema.json")
            prefix = [] if message_type == "common" else [message_type]
            for name, values in _enums(document, prefix):
                merged.setdefault(name, {}).update(dict.fromkeys(values))
    return {name: tuple(values) for name, values in sorted(merged.items())}


@cache
def _territories(language: str) -> dict[str, str]:
    return dict(Locale.parse(language).territories)


def label(code_list: str, value: str, language: str) -> str | None:
    """The label of one code in ``language``, or None when no catalogue has one."""
    if code_list in COUNTRY_LISTS:
        return _territories(language).get(value)
    return code_label(code_list, value, language)


def labels(code_list: str, language: str) -> dict[str, str]:
    """Code → label of one list in ``language`` (a code without a label is shown as itself)."""
    return {value: label(code_list, value, language) or value for value in code_lists()[code_list]}


def extract_codes(fileobj: Any, keywords: Any, comment_tags: Any,
                  options: Any) -> Iterator[tuple[int, str, tuple[str, str], list[str]]]:
    """Babel extraction method for schema files (babel.cfg): one ``code`` message per enumerated value."""
    document = json.loads(fileobj.read().decode("utf-8"))
    message_type = Path(fileobj.name).name.removesuffix(".schema.json")
    prefix = [] if message_type == "common" else [message_type]
    for name, values in _enums(document, prefix):
        if name not in COUNTRY_LISTS:
            for value in values:
                yield 1, "pgettext", ("code", value), [f"code list {name}"]
