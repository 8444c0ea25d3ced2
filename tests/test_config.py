"""Configuration: SPEC's variable names and defaults, comma lists, one clear error."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bot.config import Settings, load_settings
from bot.errors import ConfigurationError

# SPEC "Running it": every variable, exactly named, with its default.
SPEC_DEFAULTS = {
    "SLACK_BOT_TOKEN": None,
    "SLACK_SIGNING_SECRET": None,
    "SLACK_APP_TOKEN": None,
    "SLACK_API_URL": "https://slack.com/api/",
    "DATABASE_URL": "sqlite:///tokenbot.db",
    "TOKENBOT_SECRET_KEYS": [],
    "TOKENBOT_TEAM_ID": None,
    "TOKENBOT_ADMINS": [],
    "TOKENBOT_SCOPES": ["read", "write", "admin"],
    "TOKENBOT_ALERT_CHANNEL": None,
    "TOKENBOT_ALERT_DAYS": [30, 7, 1],
    "TOKENBOT_ALERT_INTERVAL_MINUTES": 15,
    "TOKENBOT_SCHEDULER": "on",
    "TOKENBOT_INTROSPECTION_SECRETS": [],
    "TOKENBOT_MAX_LIFETIME_DAYS": {},
    "TOKENBOT_DEFAULT_EXPIRY_DAYS": 30,
    "TOKENBOT_DORMANT_DAYS": 90,
    "TOKENBOT_DORMANT_ACTION": "notify",
    "TOKENBOT_LEAK_ACTION": "notify",
    "HOST": "0.0.0.0",
    "PORT": 3000,
}


def field_for(env_name: str) -> str:
    for name, field in Settings.model_fields.items():
        if field.alias == env_name:
            return name
    raise AssertionError(f"no setting reads {env_name}")


def test_every_spec_variable_has_its_default():
    config = load_settings(_env_file=None)
    for env_name, default in SPEC_DEFAULTS.items():
        assert getattr(config, field_for(env_name)) == default, env_name
    assert config.scheduler_enabled is True
    assert config.is_embedded_default is True


@pytest.mark.parametrize(
    ("env_name", "raw", "expected"),
    [
        ("SLACK_API_URL", "http://127.0.0.1:8080/api/", "http://127.0.0.1:8080/api/"),
        ("DATABASE_URL", "postgresql+psycopg://u@db/tokenbot", "postgresql+psycopg://u@db/tokenbot"),
        ("TOKENBOT_TEAM_ID", "T0123", "T0123"),
        ("TOKENBOT_ADMINS", " U1, U2 ,,U3 ", ["U1", "U2", "U3"]),
        ("TOKENBOT_SCOPES", "deploy,read-only", ["deploy", "read-only"]),
        ("TOKENBOT_ALERT_CHANNEL", "C42", "C42"),
        ("TOKENBOT_ALERT_DAYS", "1, 30,7,7", [30, 7, 1]),
        ("TOKENBOT_ALERT_DAYS", "14", [14]),
        ("TOKENBOT_ALERT_INTERVAL_MINUTES", "5", 5),
        ("TOKENBOT_SCHEDULER", "OFF", "off"),
        ("TOKENBOT_SCHEDULER", " on ", "on"),
        ("TOKENBOT_MAX_LIFETIME_DAYS", "90", {"": 90}),
        ("TOKENBOT_MAX_LIFETIME_DAYS", " admin=30, write=90 ", {"admin": 30, "write": 90}),
        ("TOKENBOT_DORMANT_ACTION", "Disable", "disable"),
        ("TOKENBOT_LEAK_ACTION", "Disable", "disable"),
        ("HOST", "127.0.0.1", "127.0.0.1"),
        ("PORT", "8080", 8080),
    ],
)
def test_values_from_the_environment(monkeypatch, env_name, raw, expected):
    monkeypatch.setenv(env_name, raw)
    assert getattr(load_settings(_env_file=None), field_for(env_name)) == expected


def test_scheduler_off_and_non_default_database():
    config = load_settings(_env_file=None, TOKENBOT_SCHEDULER="off",
                           DATABASE_URL="sqlite:///elsewhere.db")
    assert config.scheduler_enabled is False
    assert config.is_embedded_default is False


def test_secrets_are_secret_strings_kept_out_of_repr(monkeypatch):
    values = {
        "SLACK_BOT_TOKEN": "xoxb-very-secret-bot",
        "SLACK_SIGNING_SECRET": "signing-very-secret",
        "SLACK_APP_TOKEN": "xapp-very-secret-app",
        "TOKENBOT_SECRET_KEYS": "newest-key-secret,older-key-secret",
        "TOKENBOT_INTROSPECTION_SECRETS": "introspect-one-secret, introspect-two-secret",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    config = load_settings(_env_file=None)

    assert isinstance(config.slack_bot_token, SecretStr)
    assert config.slack_bot_token.get_secret_value() == "xoxb-very-secret-bot"
    assert config.slack_signing_secret.get_secret_value() == "signing-very-secret"
    assert config.slack_app_token.get_secret_value() == "xapp-very-secret-app"
    # Keys stay newest first.
    assert [k.get_secret_value() for k in config.tokenbot_secret_keys] == [
        "newest-key-secret", "older-key-secret",
    ]
    assert [k.get_secret_value() for k in config.tokenbot_introspection_secrets] == [
        "introspect-one-secret", "introspect-two-secret",
    ]
    shown = repr(config) + str(config) + repr(config.model_dump())
    for value in values.values():
        for part in value.split(","):
            assert part.strip() not in shown


def test_dotenv_file_in_working_directory_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("TOKENBOT_ADMINS=UFROMFILE\nPORT=4000\n", encoding="utf-8")
    config = load_settings()
    assert config.tokenbot_admins == ["UFROMFILE"] and config.port == 4000
    # The environment wins over the file.
    monkeypatch.setenv("PORT", "5000")
    assert load_settings().port == 5000


def test_invalid_values_give_one_message_naming_each_variable(monkeypatch):
    bad = {
        "PORT": "abc",
        "TOKENBOT_ALERT_DAYS": "x",
        "TOKENBOT_SCHEDULER": "maybe",
        "SLACK_API_URL": "https://slack.com/api",
        "TOKENBOT_ALERT_INTERVAL_MINUTES": "0",
    }
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOST", "127.0.0.1")  # a good one, not to be blamed

    with pytest.raises(ConfigurationError) as err:
        load_settings(_env_file=None)
    message = str(err.value)
    for name in bad:
        assert name in message
    assert "HOST" not in message
    # It says what each expects.
    assert "integer" in message
    assert "'on' or 'off'" in message
    assert "/" in message.split("SLACK_API_URL", 1)[1].splitlines()[0]
    # One line per variable, no Python traceback noise.
    assert len([line for line in message.splitlines() if line.strip()]) == 1 + len(bad)
    assert "Traceback" not in message and "pydantic" not in message.lower()


@pytest.mark.parametrize(
    ("env_name", "raw", "hint"),
    [
        ("PORT", "0", "PORT"),
        ("PORT", "70000", "PORT"),
        ("TOKENBOT_ALERT_DAYS", "30,-1", "positive"),
        ("TOKENBOT_ALERT_DAYS", "7,zero", "integer"),
        ("TOKENBOT_SCOPES", "read,read", "unique"),
        ("TOKENBOT_SCOPES", " , ", "role"),
        ("SLACK_API_URL", "slack.com/api/", "http"),
        ("TOKENBOT_ALERT_INTERVAL_MINUTES", "often", "integer"),
        ("TOKENBOT_LEAK_ACTION", "revoke", "'notify' or 'disable'"),
        ("METRICS_TOKEN", " \n", "blank"),
    ],
)
def test_each_invalid_value_is_named(monkeypatch, env_name, raw, hint):
    monkeypatch.setenv(env_name, raw)
    with pytest.raises(ConfigurationError) as err:
        load_settings(_env_file=None)
    assert env_name in str(err.value)
    assert hint in str(err.value)


def test_overrides_use_the_environment_names():
    config = load_settings(_env_file=None, PORT="8123", TOKENBOT_ADMINS="UA,UB")
    assert config.port == 8123 and config.tokenbot_admins == ["UA", "UB"]
    assert config.is_admin("UA") and not config.is_admin("UC")
