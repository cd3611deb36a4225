"""Configuration from the environment or a `.env` file (names fixed by shared/interfaces.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./medlegal.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDLEGAL_", env_file=".env", extra="ignore")

    bot_token: SecretStr | None = None
    database_url: str = DEFAULT_DATABASE_URL
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    telegram_base_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "127.0.0.1:8443"
    timezone: str = "America/Los_Angeles"
    today: date | None = None
    log_format: str = Field(default="text", pattern="^(text|json)$")
    reminder_days: Annotated[tuple[int, ...], NoDecode] = (30, 7, 1)
    reminder_hour: int = Field(default=9, ge=0, le=23)
    rate_limit: int = Field(default=30, ge=1)
    """Messages in any one-second window for the whole bot (all processes together)."""
    chat_rate_limit: int = Field(default=1, ge=1)
    """Messages per second to one chat."""
    k_min: int = Field(default=5, ge=3)
    """The smallest count published in aggregates (exports, charts); never below 3."""
    send_lanes: int = Field(default=4, ge=1, le=32)
    """The most outbox messages one process keeps on the wire at once: each may be repeated after a crash."""

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",")]
            return frozenset(int(p) for p in parts if p)
        return value

    @field_validator("reminder_days", mode="before")
    @classmethod
    def _split_days(cls, value: object) -> object:
        if isinstance(value, str):
            days = tuple(int(p) for p in value.replace(";", ",").split(",") if p.strip())
            if any(d < 0 for d in days):
                raise ValueError("reminder days are whole days before the date, 0 or more")
            return days
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("telegram_base_url", "webhook_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("webhook_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("MEDLEGAL_WEBHOOK_LISTEN is host:port, e.g. 127.0.0.1:8443")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("MEDLEGAL_WEBHOOK_SECRET is required when MEDLEGAL_WEBHOOK_URL is set")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def base_file_url(self) -> str | None:
        """The file URL that matches a self-hosted Bot API `base_url` ending in /bot."""
        if not self.telegram_base_url:
            return None
        base = self.telegram_base_url.rstrip("/")
        return base[: -len("/bot")] + "/file/bot" if base.endswith("/bot") else base + "/file/bot"

    def current_date(self) -> date:
        """Today in MEDLEGAL_TIMEZONE, or MEDLEGAL_TODAY when set (demos and tests)."""
        return self.today or datetime.now(self.zone).date()

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admin_ids
