"""Send one outbox message through PTB's own stack, minus turning Telegram's answer into a `telegram.Message`.

The request takes the path `bot.send_message` takes below the method itself: ExtBot's rate limiter (with the
caller's `rate_limit_args`), the request backend (bot/aiohttp_request.py) and PTB's mapping of Telegram's errors
to `RetryAfter`, `Forbidden`, `BadRequest`, `TimedOut`, `NetworkError`. What it skips is `Message.de_json`: the
sender needs only the message id, and building the Message with its chat, sender and entities cost about a fifth
of the bot's CPU per message in a 1,000/s broadcast (bench.broadcast), when all of it must fit in one millisecond.
"""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import ExtBot


async def send_html(
    bot: ExtBot[Any],
    chat_id: int,
    text: str,
    markup: InlineKeyboardMarkup | None,
    rate_limit_args: dict[str, Any],
) -> int:
    """sendMessage with Telegram HTML; returns the message id Telegram gave it."""
    data: dict[str, object] = {"chat_id": chat_id, "text": text, "parse_mode": ParseMode.HTML}
    if markup is not None:
        data["reply_markup"] = markup
    # Bot._post is what every Bot method calls once it has its parameters; ExtBot reads the rate limit arguments
    # from api_kwargs under its own key, as ExtBot.send_message passes them.
    result = await bot._post("sendMessage", data, api_kwargs=bot._merge_api_rl_kwargs(None, rate_limit_args))
    message_id = result.get("message_id") if isinstance(result, dict) else None
    if not isinstance(message_id, int):
        raise TelegramError(f"sendMessage answered without a message id: {result!r:.200}")
    return message_id
