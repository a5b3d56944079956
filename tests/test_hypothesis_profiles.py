"""The hypothesis profile follows CI: the full run under CI=true, a fast one locally."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import json; from hypothesis import settings;"
         "from tests.support.hypothesis_profiles import register_profiles, scaled;"
         "name = register_profiles();"
         "print(json.dumps([name, settings.default.max_examples, scaled(300), scaled(2)]))")


def probe(**env: str) -> list:
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "HYPOTHESIS_PROFILE"}}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("ci", ["true", "1", "YES"])
def test_ci_runs_the_full_profile_and_every_test_its_own_count(ci: str) -> None:
    assert probe(CI=ci) == ["ci", 100, 300, 2]


def test_local_runs_are_fast_in_proportion() -> None:
    assert probe() == ["fast", 20, 60, 1]
    assert probe(CI="false") == ["fast", 20, 60, 1]


def test_hypothesis_profile_overrides_the_choice() -> None:
    assert probe(HYPOTHESIS_PROFILE="ci") == ["ci", 100, 300, 2]


def test_no_test_sets_an_absolute_example_count() -> None:
    """An explicit ``max_examples=N`` would override the profile: tests write ``scaled(N)``."""
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in (ROOT / "tests").rglob("*.py")
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"max_examples\s*=\s*\d", line)]
    assert offenders == []
