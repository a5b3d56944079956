"""Normalising local spellings and code lists (local spellings <-> shared codes)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from adapters.errors import MappingDefinitionError, _check_keys

COMMON_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "v1" / "common.schema.json"
_ECHO_MAX = 40

def normalise(text: str) -> str:
    """Fold a local value for matching: case, accents, hyphens, apostrophes, spaces and a plural -s do not matter.

    "Violences physiques", "violence  physique" and "VIOLENCE-PHYSIQUE" are one spelling. The
    plural -s is folded on words of five letters or more (not "-ss"), so codes such as "NS",
    "MS" and short words ("pays", "abus") stay as they are.
    """
    text = text.replace("œ", "oe").replace("Œ", "oe").replace("æ", "ae").replace("Æ", "ae")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = re.sub(r"[\s'’`\-_]+", " ", text.casefold()).strip()
    return _PLURAL.sub("", text)


_PLURAL = re.compile(r"(?<=[a-z]{3}[^s\W])s\b")


def _echo(value: object) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return repr(shown if len(shown) <= _ECHO_MAX else shown[:_ECHO_MAX] + "…")


@cache
def _common_defs() -> dict[str, Any]:
    return json.loads(COMMON_SCHEMA.read_text(encoding="utf-8"))["$defs"]


@dataclass(frozen=True)
class CodeList:
    """Local spellings -> shared codes. Lookup ignores case and accents; the first spelling listed
    for a code is the one written back by ``from_shared``. A spelling mapped to ``null`` is a
    value the form has and the shared schema cannot say: it is accepted and not sent."""

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
            if allowed is not None and shared is not None and shared not in allowed:
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

    def accepts_unsent(self, spelling: str) -> bool:
        """True if ``spelling`` is a local spelling the shared schema cannot say (value null: accepted, not sent)."""
        key = normalise(spelling)
        return key in self._index and self._index[key] is None

    def to_local(self, code: Any) -> str:
        """The preferred local spelling of a shared code (the code itself if ``accept_codes``); KeyError if none."""
        if _hashable(code) in self._reverse:
            return self._reverse[_hashable(code)]
        if self.accept_codes and isinstance(code, str) and self._index.get(normalise(code)) == code:
            return code
        raise KeyError(code)

    def accepted(self, limit: int = 20) -> list[str]:
        """The preferred local spelling of each code, in table order (what an error lists); [] if more than ``limit``."""
        labels = list(dict.fromkeys(self._reverse.values()))
        return labels if len(labels) <= limit else []

    def missing_codes(self) -> list[Any]:
        """Shared codes of the target enum that have no local spelling (from_shared cannot write them)."""
        if self.target is None:
            return []
        return [c for c in _common_defs()[self.target]["enum"] if _hashable(c) not in self._reverse]


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True)


def extract_labels(fileobj: Any, keywords: Any, comment_tags: Any, options: Any) -> Iterator[tuple[int, str, str, list[str]]]:
    """Babel extraction method for mapping tables (babel.cfg): each code list's ``label``, which errors
    name ("is not in the code list for {codes}") and a French answer translates."""
    table = json.loads(fileobj.read().decode("utf-8"))
    for name, spec in table.get("code_lists", {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("label"), str):
            yield 1, "msg", spec["label"], [f"label of the code list {name}"]  # shown as msg(label)
