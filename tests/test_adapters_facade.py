"""``adapters/base.py`` is a facade over one module per concern: today's imports keep working."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import adapters.base as facade

#: Every public name adapters/base.py defined before it was split (issue 10, item 8), and
#: the private helpers that adapters and tests import from it.
OLD_NAMES = [
    "AdaptResult", "Adapter", "AdapterError", "COMMON_SCHEMA", "CodeList", "DroppedField",
    "LocalRecordInvalidError", "MESSAGE_TYPE", "MappingAdapter", "MappingDefinitionError", "MappingTable",
    "MissingFieldError", "PurposesError", "Rule", "TRANSFORMS", "Transform", "TransformFailed",
    "UnknownFormatError", "UnmappableValueError", "delete_path", "get_path", "normalise", "set_path",
    "shared_request_fields", "_echo", "_walk_rules", "_MISSING", "_UNSET", "_check_keys", "_common_defs",
]

#: Where each concern lives now.
HOMES = {
    "adapters.errors": ["AdapterError", "UnmappableValueError", "MissingFieldError", "LocalRecordInvalidError",
                        "PurposesError", "UnknownFormatError", "MappingDefinitionError"],
    "adapters.results": ["AdaptResult", "DroppedField", "Adapter"],
    "adapters.codes": ["normalise", "CodeList", "COMMON_SCHEMA"],
    "adapters.transforms": ["TRANSFORMS", "Transform", "TransformFailed"],
    "adapters.table": ["MappingTable", "Rule", "MESSAGE_TYPE"],
    "adapters.paths": ["get_path", "set_path", "delete_path"],
    "adapters.engine": ["MappingAdapter", "shared_request_fields"],
}


@pytest.mark.parametrize("name", OLD_NAMES)
def test_every_old_name_is_still_importable_from_adapters_base(name: str) -> None:
    assert hasattr(facade, name), name
    if not name.startswith("_"):
        assert name in facade.__all__


@pytest.mark.parametrize("module", sorted(HOMES))
def test_the_facade_re_exports_the_same_objects(module: str) -> None:
    home = importlib.import_module(module)
    for name in HOMES[module]:
        assert getattr(facade, name) is getattr(home, name), f"{module}.{name}"


def test_the_facade_defines_nothing_itself() -> None:
    tree = ast.parse(Path(facade.__file__).read_text(encoding="utf-8"))
    defined = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert defined == []
