"""Every exception the project defines is a GatewayError with its own stable code (issue 10)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import adapters
import gateway
from gateway.errors import GatewayError


def _project_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (gateway, adapters):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == info.name:
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


EXCEPTIONS = _project_exceptions()


def test_the_walk_finds_the_known_errors() -> None:
    names = {e.__name__ for e in EXCEPTIONS}
    assert {"GatewayError", "StoreArgumentError", "DuplicateKeyError", "TransformFailed",
            "FhirExportError", "AuditExportError", "AdapterError"} <= names


@pytest.mark.parametrize("error", EXCEPTIONS, ids=lambda e: f"{e.__module__}.{e.__qualname__}")
def test_every_project_exception_is_a_gateway_error_with_its_own_code(error: type[BaseException]) -> None:
    assert issubclass(error, GatewayError)
    code = error.__dict__.get("code")
    assert isinstance(code, str) and code, "declare a stable `code` on the class itself"


def test_codes_are_unique() -> None:
    seen: dict[str, str] = {}
    for error in EXCEPTIONS:
        code = error.__dict__["code"]
        assert code not in seen, f"{error.__qualname__} reuses {seen.get(code)}'s code {code!r}"
        seen[code] = error.__qualname__


@pytest.mark.parametrize("name", ["DuplicateKeyError", "StoreArgumentError", "TransformFailed",
                                  "FhirExportError", "AuditExportError", "StatsError"])
def test_errors_that_were_value_errors_still_are(name: str) -> None:
    # Callers catch them as ValueError (JSON parsing, record validation); keep that working.
    (error,) = [e for e in EXCEPTIONS if e.__name__ == name]
    assert issubclass(error, ValueError)


def test_api_parse_knows_a_duplicate_member_by_its_class_not_its_name() -> None:
    from gateway.api.parse import _json_problem
    from gateway.canonical import strict_loads
    from gateway.errors import DuplicateKeyError

    with pytest.raises(DuplicateKeyError) as info:
        strict_loads(b'{"Amina Bello": 1, "Amina Bello": 2}')
    assert info.value.code == "duplicate_member"
    assert _json_problem(info.value) == "an object has the same member name twice"
    # A look-alike class of the same name is not taken for it.
    impostor = type("DuplicateKeyError", (ValueError,), {})("x")
    assert _json_problem(impostor) == "unparseable"
