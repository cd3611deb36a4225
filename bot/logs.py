"""Logging setup: plain text or one JSON object a line (MEDLEGAL_LOG_FORMAT).

Every record written while an update is handled carries the update id and, when MEDLEGAL_LOG_HASH_KEY is set, the
user id as a keyed HMAC (`user`): enough to follow one physician's updates through the logs without the logs
identifying them. Without the key no user id is logged at all. Message texts and answers are never logged, and an
exception is written as its type and stack frames only: a driver's message can quote statement parameters
(answers, user ids), so it is left out unless it comes from Telegram or the network.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import traceback
from datetime import UTC, datetime
from typing import IO, Any

from telegram.error import TelegramError

UPDATE_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("medlegal_log_update_id", default=None)
USER_REF: contextvars.ContextVar[str | None] = contextvars.ContextVar("medlegal_log_user", default=None)


def user_ref(user_id: int, key: str | None) -> str | None:
    """The user id as HMAC-SHA256 under `key` (16 hex digits), or None when no key is configured."""
    if not key:
        return None
    return hmac.new(key.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()[:16]


def set_update(update_id: int | None, user_id: int | None, key: str | None) -> None:
    """Tag the log records of the update being handled (called first for every update)."""
    UPDATE_ID.set(update_id)
    USER_REF.set(user_ref(user_id, key) if user_id is not None else None)


class UpdateContext(logging.Filter):
    """Copies the current update's id and hashed user onto each record (`update_id`, `user`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.update_id = UPDATE_ID.get()
        record.user = USER_REF.get()
        return True


def safe_exception(exc: BaseException) -> str:
    """The traceback without the exception's message, unless the message cannot hold user data."""
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    name = type(exc).__qualname__
    if isinstance(exc, TelegramError | OSError | TimeoutError):
        name = f"{name}: {exc}"
    text = f"Traceback (most recent call last):\n{frames}{name}"
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and cause is not exc:
        return f"{safe_exception(cause)}\n\nwhich led to:\n{text}"
    return text


def _exception_of(record: logging.LogRecord) -> BaseException | None:
    info = record.exc_info
    return info[1] if info and info[1] is not None else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("update_id", "user"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        exc = _exception_of(record)
        if exc is not None:
            entry["exception"] = safe_exception(exc)
            entry["error_type"] = type(exc).__name__
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(tags)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        tags = [f"{n}={getattr(record, n)}" for n in ("update_id", "user") if getattr(record, n, None) is not None]
        record.tags = f" [{' '.join(tags)}]" if tags else ""
        exc = _exception_of(record)
        if exc is None:
            return super().format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return f"{super().format(record)}\n{safe_exception(exc)}"
        finally:
            record.exc_info, record.exc_text = saved


def configure(log_format: str = "text", level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream)
    handler.addFilter(UpdateContext())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # PTB's debug lines print whole updates and requests (message texts, user ids): never below INFO.
    logging.getLogger("telegram").setLevel(max(level, logging.INFO))
    # httpx logs every request URL, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
