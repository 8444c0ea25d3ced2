"""Configuration: environment variables (and an optional `.env`), names fixed by SPEC."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite:///tokenbot.db"


def _split(value: object) -> object:
    """Comma-separated environment values become lists; blanks are dropped."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _days(text: str) -> int:
    """A positive whole number of days (a lifetime cap)."""
    try:
        days = int(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a whole number of days") from None
    if not 1 <= days <= 36_500:
        raise ValueError(f"{days} days: a cap must be from 1 to 36500 days")
    return days


S = TypeVar("S", bound="LogSettings")
# Comma-separated in the environment (blanks dropped), not JSON.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split)]
SecretList = Annotated[list[SecretStr], NoDecode, BeforeValidator(_split)]


class LogSettings(BaseSettings):
    """What logging needs, read before anything else (every command logs)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", alias="LOG_LEVEL")
    log_format: Literal["text", "json"] = Field(default="text", alias="LOG_FORMAT")

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip()
        return value.upper() if info.field_name == "log_level" else value.lower()


class Settings(LogSettings):

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    database_url: str = Field(default=DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    tokenbot_secret_keys: SecretList = Field(default_factory=list, alias="TOKENBOT_SECRET_KEYS")
    tokenbot_team_id: str | None = Field(default=None, alias="TOKENBOT_TEAM_ID")
    tokenbot_admins: CommaList = Field(default_factory=list, alias="TOKENBOT_ADMINS")
    tokenbot_scopes: CommaList = Field(
        default_factory=lambda: ["read", "write", "admin"], alias="TOKENBOT_SCOPES"
    )
    tokenbot_alert_channel: str | None = Field(default=None, alias="TOKENBOT_ALERT_CHANNEL")
    tokenbot_alert_days: Annotated[list[int], NoDecode, BeforeValidator(_split)] = Field(
        default_factory=lambda: [30, 7, 1], alias="TOKENBOT_ALERT_DAYS"
    )
    tokenbot_alert_interval_minutes: int = Field(
        default=15, ge=1, alias="TOKENBOT_ALERT_INTERVAL_MINUTES"
    )
    tokenbot_scheduler: Literal["on", "off"] = Field(default="on", alias="TOKENBOT_SCHEDULER")
    tokenbot_introspection_secrets: SecretList = Field(
        default_factory=list, alias="TOKENBOT_INTROSPECTION_SECRETS"
    )
    # Token hygiene (bot.services.policy, bot.services.hygiene). The lifetime cap per scope
    # ("" for every scope: one number); none means no cap.
    tokenbot_max_lifetime_days: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict, alias="TOKENBOT_MAX_LIFETIME_DAYS"
    )
    tokenbot_default_expiry_days: int = Field(
        default=30, ge=1, le=36_500, alias="TOKENBOT_DEFAULT_EXPIRY_DAYS"
    )
    tokenbot_dormant_days: int = Field(default=90, ge=1, le=36_500, alias="TOKENBOT_DORMANT_DAYS")
    tokenbot_dormant_action: Literal["notify", "disable"] = Field(
        default="notify", alias="TOKENBOT_DORMANT_ACTION"
    )
    # A live secret pasted into Slack: tell (``notify``), or also disable it at once.
    tokenbot_leak_action: Literal["notify", "disable"] = Field(
        default="notify", alias="TOKENBOT_LEAK_ACTION")
    host: str = Field(default="0.0.0.0", alias="HOST")
    port: int = Field(default=3000, ge=1, le=65535, alias="PORT")
    # GET /metrics: a bearer credential, and/or the client networks it is served to.
    metrics_token: SecretStr | None = Field(default=None, alias="METRICS_TOKEN")
    metrics_allow: Annotated[list[IPvAnyNetwork], NoDecode, BeforeValidator(_split)] = Field(
        default_factory=list, alias="METRICS_ALLOW")

    @field_validator("tokenbot_scopes")
    @classmethod
    def _scopes_present(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one role is required")
        if len(set(value)) != len(value):
            raise ValueError("roles must be unique")
        for role in value:
            if len(role) > 75:
                raise ValueError(f"role {role[:20]!r}… is longer than 75 characters")
        return value

    @field_validator("tokenbot_alert_days")
    @classmethod
    def _days_positive(cls, value: list[int]) -> list[int]:
        if any(day <= 0 for day in value):
            raise ValueError("thresholds must be positive whole numbers of days")
        return sorted(set(value), reverse=True)

    @field_validator("tokenbot_max_lifetime_days", mode="before")
    @classmethod
    def _lifetime_caps(cls, value: object) -> object:
        """``90`` (every scope), ``admin=30,write=90,read=365``, or both: ``90,admin=30``
        (a default for every scope, overridden for some); blank means no cap."""
        if not isinstance(value, str):
            return value
        caps: dict[str, int] = {}
        for part in _split(value.strip()):  # type: ignore[union-attr]
            scope, sep, days = part.partition("=")
            if not sep:  # the cap of every scope not named
                if "" in caps:
                    raise ValueError("the cap for every scope (a number alone) is given twice")
                caps[""] = _days(part)
                continue
            if not scope.strip():
                raise ValueError(f"{part!r} is not scope=days (e.g. 90,admin=30,write=60)")
            if scope.strip() in caps:
                raise ValueError(f"scope {scope.strip()!r} is given twice")
            caps[scope.strip()] = _days(days)
        return caps

    @model_validator(mode="after")
    def _capped_scopes_exist(self) -> Settings:
        unknown = [s for s in self.tokenbot_max_lifetime_days
                   if s and s not in self.tokenbot_scopes]
        if unknown:
            raise ValueError(
                f"TOKENBOT_MAX_LIFETIME_DAYS names {', '.join(map(repr, unknown))}, not in "
                f"TOKENBOT_SCOPES ({', '.join(self.tokenbot_scopes)})"
            )
        return self

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _credential(cls, value: object) -> object:
        """A mounted secret file's trailing newline is no part of the credential."""
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ValueError("is blank: unset it, or give the scrapers' credential")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        if not value.endswith("/"):
            raise ValueError("must end with '/'")
        return value

    @field_validator("tokenbot_scheduler", "tokenbot_leak_action", "tokenbot_dormant_action",
                     mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    # -- derived ---------------------------------------------------------------

    @property
    def scheduler_enabled(self) -> bool:
        return self.tokenbot_scheduler == "on"

    @property
    def is_embedded_default(self) -> bool:
        """True when the database is the default SQLite file (no set-up needed)."""
        return self.database_url == DEFAULT_DATABASE_URL

    @cached_property
    def sqlite_path(self) -> Path | None:
        """File path of a file-backed SQLite database, else None."""
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database)

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.tokenbot_admins

    @property
    def expiring_days(self) -> int:
        """What "expiring" means in filters: within the largest alert threshold."""
        return max(self.tokenbot_alert_days, default=30)


def _describe(error: dict) -> str:
    loc = error.get("loc")
    if not loc:  # a rule across settings: its message names them
        return str(error.get("msg", "invalid")).removeprefix("Value error, ")
    name = str(loc[0])
    field = Settings.model_fields.get(name)
    if field is not None and field.alias:
        name = field.alias
    return f"{name.upper()}: {error.get('msg', 'invalid')}"


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one readable ConfigurationError."""
    return _load(Settings, overrides)


def load_log_settings() -> LogSettings:
    """LOG_LEVEL and LOG_FORMAT alone, as :func:`load_settings` reads them."""
    return _load(LogSettings, {})


def _load(kind: type[S], overrides: dict[str, object]) -> S:
    try:
        return kind(**overrides)
    except ValidationError as exc:
        lines = sorted({_describe(err) for err in exc.errors()})
        raise ConfigurationError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
