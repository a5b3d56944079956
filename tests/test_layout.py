"""Where test code lives: tests/ holds tests, tests/support/ their helpers, testkit/ what
the tests share with the benchmarks. bench/ must not import tests/; testkit/ must not
import pytest or tests/ (the benchmarks run without the test suite)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names (absolute ones)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{path.relative_to(ROOT)}: {module}"
                  for path in (ROOT / folder).rglob("*.py")
                  for module in imported_modules(path)
                  if module.split(".")[0] in forbidden)


def test_bench_does_not_import_the_tests() -> None:
    assert offenders("bench", ("tests",)) == []


def test_testkit_imports_neither_pytest_nor_the_tests() -> None:
    assert offenders("testkit", ("tests", "pytest", "hypothesis")) == []


def test_the_tests_folder_holds_only_tests_and_their_support() -> None:
    """Helpers go to tests/support/ (or testkit/), not between the test modules."""
    allowed = {"__init__.py", "conftest.py"}
    strays = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("*.py")
                    if "support" not in path.relative_to(ROOT / "tests").parts
                    and path.parent.name != "vectors"
                    and path.name not in allowed and not path.name.startswith("test_"))
    assert strays == []


def test_the_checker_sees_imports() -> None:
    """The scan above is not vacuous: it finds the imports tests do make."""
    assert "testkit.gateway_pair" in imported_modules(ROOT / "tests" / "test_service.py")
    assert offenders("tests/faults", ("testkit",)) != []
