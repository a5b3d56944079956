"""Settings: TOML file, environment overrides, validation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_amqp_url, load_settings

TOKEN_HASH = hashlib.sha256(b"secret-token").hexdigest()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_values_and_env_overrides(tmp_path) -> None:
    path = _write(tmp_path, f'''
agency_id = "NE-ANLTP-TIM"
key_dir = "keys"
http_port = 9000
prefetch = 8
[[users]]
name = "amina"
role = "caseworker"
token_sha256 = "{TOKEN_HASH}"
''')
    settings = load_settings(path, environ={"GATEWAY_HTTP_PORT": "9100", "AMQP_URL": "amqp://u:p@broker:5672/x",
                                            "GATEWAY_DECLARE_TOPOLOGY": "false"})
    assert settings.agency_id == "NE-ANLTP-TIM"
    assert settings.key_dir == tmp_path / "keys"  # relative to the file
    assert settings.http_port == 9100 and settings.prefetch == 8
    assert settings.amqp_url == "amqp://u:p@broker:5672/x"
    assert settings.declare_topology is False
    assert settings.users[0].matches("secret-token") and not settings.users[0].matches("other")


def test_passphrase_never_in_repr(tmp_path) -> None:
    path = _write(tmp_path, 'agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\n')
    settings = load_settings(path, environ={"GATEWAY_KEY_PASSPHRASE": "correct horse battery"})
    assert settings.key_passphrase == "correct horse battery"
    assert "correct horse" not in repr(settings)
    with_secrets = load_settings(path, environ={"AMQP_URL": "amqp://u:brokerpass@h/", "GATEWAY_PSEUDONYM_SECRET_HEX": "ab" * 32})
    assert "brokerpass" not in repr(with_secrets) and "abab" not in repr(with_secrets)


@pytest.mark.parametrize(
    "text, env, match",
    [
        ('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\nbogus = 1\n', {}, "unknown setting"),
        ('key_dir = "k"\n', {}, "agency_id is required"),
        ('agency_id = "NE-ANLTP-TIM"\n', {}, "key_dir is required"),
        ('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\nhttp_port = "x"\n', {}, "http_port must be an integer"),
        ('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\n', {"GATEWAY_DEMO_KEYS": "maybe"}, "demo_keys must be true or false"),
        ('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\ntransport = "carrier-pigeon"\n', {}, "transport must be"),
        ('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\n[[users]]\nname = "x"\nrole = "god"\n'
         f'token_sha256 = "{TOKEN_HASH}"\n', {}, "role 'god'"),
        ('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\n[[users]]\nname = "x"\nrole = "admin"\n', {}, "needs name, role, and token_sha256 or password_argon2"),
        ('agency_id = = "x"', {}, "cannot read settings file"),
        ('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\nmessage_lifetime_days = 31\n', {}, "between 1 and 30"),
        ('agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\nretry_initial_seconds = 0\n', {}, "retry_initial_seconds"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(tmp_path, text, env, match) -> None:
    with pytest.raises(SettingsError, match=match):
        load_settings(_write(tmp_path, text), environ=env)


@pytest.mark.parametrize(("value", "match"), [
    ("abcd", "at least 32 bytes"), ("", "is empty"), ("   ", "is empty"), ("zz" * 32, "not hexadecimal"),
    ("a" * 65, "not hexadecimal"),
])
def test_pseudonym_secret_is_checked_when_loaded(tmp_path, value, match) -> None:
    # Refused at load time (start-up), not on the first submit; the message never quotes the value.
    with pytest.raises(SettingsError, match=match) as refused:
        load_settings(_write(tmp_path, f'agency_id = "NE-ANLTP-TIM"\nkey_dir = "k"\npseudonym_secret_hex = "{value}"\n'),
                      environ={})
    assert value.strip() == "" or value not in str(refused.value)


def test_amqp_url_from_environment() -> None:
    assert load_amqp_url({"AMQP_URL": "amqp://a/"}) == "amqp://a/"
    assert load_amqp_url({}) == "amqp://guest:guest@127.0.0.1:5672/"


def test_the_example_configuration_loads() -> None:
    example = Path(__file__).resolve().parent.parent / "deploy" / "gateway.example.toml"
    settings = load_settings(example, environ={})
    assert settings.agency_id == "NE-ANLTP-TIM" and not settings.declare_topology
    assert {u.role for u in settings.users} == {"caseworker", "auditor"}
