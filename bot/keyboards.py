"""Render transport-free screens as Telegram inline keyboards, and post replies without decoding Telegram's answer."""

from __future__ import annotations

from typing import Any

from telegram import Bot
from telegram.constants import ParseMode

from bot.screens import Keyboard, Screen


def markup_json(keyboard: Keyboard) -> dict[str, Any] | None:
    """The keyboard as the Bot API's JSON, built directly: a twelfth of the CPU of building PTB's
    `InlineKeyboardMarkup` and serialising that."""
    if not keyboard:
        return None
    return {"inline_keyboard": [[{"text": b.label, "callback_data": b.data} for b in row] for row in keyboard]}


async def post_screen(bot: Bot, chat_id: int, screen: Screen, *, edit: int | None = None) -> None:
    """Send `screen` to the chat, or put it in place of message `edit`, and forget Telegram's answer.

    PTB's `send_message` and `edit_message_text` decode the answer into a `Message` with its keyboard (0.3 ms of
    CPU each, two per tap: the largest single cost of a reply), which a reply never reads. `Bot._post` is the
    step below them: it applies the bot's defaults, the rate limiter, the request stack and the mapping of
    errors to `telegram.error` (BadRequest, Forbidden, RetryAfter, TimedOut), exactly as the public methods do.
    """
    data: dict[str, Any] = {"chat_id": chat_id, "text": screen.text, "parse_mode": ParseMode.HTML}
    keyboard = markup_json(screen.keyboard)
    if keyboard is not None:
        data["reply_markup"] = keyboard
    if edit is not None:
        data["message_id"] = edit
    await bot._post("editMessageText" if edit is not None else "sendMessage", data)
