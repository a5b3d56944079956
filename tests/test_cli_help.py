"""Every CLI option has help text and shows its default; ``gateway --version`` prints the package version."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version

import pytest

from gateway.cli import build_parser

from testkit.gateway_pair import ROOT


def _parsers(parser: argparse.ArgumentParser, path: str = "gateway"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


PARSERS = list(_parsers(build_parser()))


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[p for p, _ in PARSERS])
def test_every_option_has_help_and_shows_its_default(path, parser) -> None:
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"{path} {action.option_strings or action.dest} has no help text"
    text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and not action.required and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in " ".join(text.split()), (path, action.dest)


def test_version_is_the_package_version() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "--version"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"gateway {version('referral-gateway')}"
