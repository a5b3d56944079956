"""docs/settings.md is generated from the Settings object, and every setting is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

from gateway import settings_doc
from gateway.settings import SETTING_DOCS, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "settings.md"
EXAMPLE = ROOT / "deploy" / "gateway.example.toml"

#: Settings deploy/gateway.example.toml leaves out on purpose, and why (the file says so too).
EXAMPLE_OMITS = {
    "key_passphrase": "secret: environment only (GATEWAY_KEY_PASSPHRASE)",
    "demo_keys": "demo only",
    "allow_demo_directory": "demo only",
    "transport": "gateway serve needs amqp, the default",
    "exchange": "must match the broker definitions; default",
    "queue_prefix": "tests only",
    "pseudonym_secret_hex": "secret: environment only (commented out in the file)",
}


def test_every_setting_has_documentation() -> None:
    names = [f.name for f in fields(Settings)]
    assert settings_doc.undocumented() == [], "add the missing settings to SETTING_DOCS in gateway/settings.py"
    assert set(SETTING_DOCS) <= set(names), f"SETTING_DOCS documents settings that do not exist: {set(SETTING_DOCS) - set(names)}"


def test_committed_settings_page_is_what_the_generator_writes() -> None:
    assert PAGE.read_text(encoding="utf-8") == settings_doc.render(), (
        "docs/settings.md is stale: run `python -m gateway.settings_doc > docs/settings.md`"
    )


def test_page_has_one_row_per_setting_with_its_environment_variable() -> None:
    rows = [line for line in settings_doc.render().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [f.name for f in fields(Settings)]
    for row, f in zip(rows, fields(Settings)):
        if f.name != "users":
            assert f"`GATEWAY_{f.name.upper()}`" in row


def test_module_entry_point_prints_the_page() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "gateway.settings_doc"], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == settings_doc.render()


def test_entry_point_refuses_an_undocumented_setting(monkeypatch, capsys) -> None:
    monkeypatch.delitem(SETTING_DOCS, "prefetch")
    assert settings_doc.undocumented() == ["prefetch"]
    assert settings_doc.main() == 1
    assert "prefetch" in capsys.readouterr().err


def test_the_documented_environment_variables_are_the_ones_the_loader_reads(tmp_path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\n', encoding="utf-8")
    samples = {"prefetch": "7", "outbox_batch": "9", "queue_prefix": "t1.", "transport": "memory",
               "exchange": "x", "log_level": "debug", "http_host": "0.0.0.0", "stats_min_cell": "20"}
    for name, text in samples.items():
        (env_name,) = settings_doc.env_names(name)
        loaded = load_settings(config, environ={env_name: text})
        assert str(getattr(loaded, name)) == text, name
    loaded = load_settings(config, environ={"AMQP_URL": "amqp://a@h/", "GATEWAY_AMQP_URL": "amqp://b@h/"})
    assert settings_doc.env_names("amqp_url")[0] == "AMQP_URL" and loaded.amqp_url == "amqp://a@h/"


def test_example_settings_file_loads_and_names_only_real_settings() -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    names = {f.name for f in fields(Settings)}
    assert set(raw) <= names, f"unknown keys in the example: {set(raw) - names}"
    missing = names - set(raw) - set(EXAMPLE_OMITS)
    assert not missing, f"deploy/gateway.example.toml does not show {sorted(missing)} (or list them in EXAMPLE_OMITS)"
    assert set(EXAMPLE_OMITS) <= names
    settings = load_settings(EXAMPLE, environ={"GATEWAY_PSEUDONYM_SECRET_HEX": "ab" * 32})
    assert settings.agency_id == "NE-ANLTP-TIM" and settings.declare_topology is False


def _env_names_in(text: str) -> set[str]:
    return set(re.findall(r"^\s*#?\s*((?:GATEWAY_[A-Z0-9_]+|AMQP_URL))\s*[=:]", text, flags=re.MULTILINE))


def test_deploy_files_set_only_real_settings_through_the_environment() -> None:
    known = {e for f in fields(Settings) for e in settings_doc.env_names(f.name)}
    env_example = (ROOT / "deploy" / "systemd" / "referral-gateway.env.example").read_text(encoding="utf-8")
    compose = (ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8")
    for name, text in (("env example", env_example), ("compose.yaml", compose)):
        used = _env_names_in(text)
        assert used, name
        assert used <= known, f"{name} sets unknown settings {sorted(used - known)}"
    assert "in progress" not in env_example.lower()
