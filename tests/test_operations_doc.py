"""docs/operations.md names only things that exist: linked files and sections, commands, options, settings."""

from __future__ import annotations

import re
import shlex
from dataclasses import fields
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [DOCS / "operations.md", DOCS / "settings.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_points_at_an_existing_file_and_section(page: Path) -> None:
    links = LINK.findall(page.read_text(encoding="utf-8"))
    assert links
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: link {link} → {path} does not exist"
        if anchor:
            assert anchor in _anchors(path), f"{page.name}: no section #{anchor} in {path.name}"


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def _gateway_commands() -> list[str]:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    commands = []
    for block in _code_blocks(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("gateway "):
                commands.append(line)
    return commands


def test_the_guide_shows_the_key_ceremony_and_rotation() -> None:
    subcommands = {" ".join(shlex.split(c)[1:3]) for c in _gateway_commands()}
    assert {"keys authority-generate", "keys generate", "keys add-keys", "keys sign-directory",
            "keys verify-directory", "keys rotate"} <= subcommands


@pytest.mark.parametrize("command", _gateway_commands())
def test_every_documented_gateway_command_parses(command: str) -> None:
    argv = shlex.split(command.replace("<kid>", "0" * 32))[1:]
    args = build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown option
    assert callable(args.func)


def test_inline_gateway_commands_are_real_subcommands() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    parser = build_parser()
    mentioned = set(re.findall(r"`gateway ([a-z-]+(?: [a-z-]+)?)", text))
    assert mentioned
    for words in mentioned:
        argv = words.split()
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*argv, "--help"])
        assert exit_info.value.code == 0, f"`gateway {words}` is not a command"


def test_settings_named_in_the_guide_exist() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    names = {f.name for f in fields(Settings)}
    for toml_key in re.findall(r"`([a-z_]+) = ", text):
        assert toml_key in names, toml_key
    for env in re.findall(r"\bGATEWAY_([A-Z_]+)\b", text):
        assert env.lower() in names, env


def test_repository_paths_in_the_guide_exist() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    for path in set(re.findall(r"`((?:deploy|docs|schemas|gateway)/[A-Za-z0-9_./<>-]+)`", text)):
        if "<" in path:
            continue
        assert (ROOT / path).exists(), path
    for path in set(re.findall(r"/opt/referral-gateway/src/([A-Za-z0-9_./-]+)", text)):
        assert (ROOT / path).exists(), path
