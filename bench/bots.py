"""The two bots a benchmark compares on the same fake Bot API, and the in-process probe.

* `medlegal`: the Application exactly as `medlegal run` builds it (`bot.app.build_application`), with the send
  limits raised far above what the benchmark reaches, so the figures are the bot's own cost, not Telegram's
  30 messages/s (which `bench.broadcast` measures).
* `bare`: a bare python-telegram-bot Application that only answers the buttons with the same calls (answer the
  query, edit the pressed message, send the next question with a keyboard), keeping nothing but a step counter.
  It uses the same HTTP backend as medlegal (`bot.aiohttp_request`), so the comparison is of the bots' own work.

`Probe` measures the in-process time of each button update: from PTB handing the update to the first handler
group to the reply request being issued, minus the time spent waiting for the Bot API's answers to earlier
requests of the same update (answerCallbackQuery, the edit), so it is the bot's own time only.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    TypeHandler,
)

from bench.physicians import TAPS, TOGGLES
from bot.aiohttp_request import AiohttpRequest
from bot.app import build_application
from bot.per_user_order import MAX_CONCURRENT_UPDATES
from bot.settings import Settings

App = Application[Any, Any, Any, Any, Any, Any]
UNLIMITED = 1_000_000
"""Send limits for the benchmark runs: far above any rate reached, so no request waits for a slot."""


@dataclass
class _Span:
    start: float
    callback: bool
    api_wait: float = 0.0
    own_at_last_request: float = 0.0
    requests: int = 0


_SPAN: contextvars.ContextVar[_Span | None] = contextvars.ContextVar("bench_span", default=None)


class Probe:
    """Times every update from the first handler group to its last Bot API request (API waits excluded)."""

    def __init__(self) -> None:
        self.spans: list[_Span] = []

    def attach(self, app: App) -> None:
        app.add_handler(TypeHandler(Update, self._begin), group=-1000)
        limiter = app.bot.rate_limiter
        assert limiter is not None, "the probe wraps the rate limiter every request passes through"
        inner = limiter.process_request

        async def process_request(
            callback: Callable[..., Coroutine[Any, Any, Any]],
            args: Any,
            kwargs: dict[str, Any],
            endpoint: str,
            data: dict[str, Any],
            rate_limit_args: Any,
        ) -> Any:
            span = _SPAN.get()
            if span is None:
                return await inner(callback, args, kwargs, endpoint, data, rate_limit_args)

            async def timed(*a: Any, **kw: Any) -> Any:
                issued = time.perf_counter()
                span.own_at_last_request = issued - span.start - span.api_wait
                span.requests += 1
                try:
                    return await callback(*a, **kw)
                finally:
                    span.api_wait += time.perf_counter() - issued

            return await inner(timed, args, kwargs, endpoint, data, rate_limit_args)

        limiter.process_request = process_request

    async def _begin(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        span = _Span(time.perf_counter(), update.callback_query is not None)
        self.spans.append(span)
        _SPAN.set(span)

    def step_times(self) -> list[float]:
        """In-process seconds of every button update that made a request."""
        return [s.own_at_last_request for s in self.spans if s.callback and s.requests]

    def reset(self) -> None:
        self.spans.clear()


def medlegal_app(address: dict[str, str], database_url: str, engine: Any = None) -> App:
    settings = Settings(
        _env_file=None,
        bot_token=address["token"],
        database_url=database_url,
        telegram_base_url=address["base_url"],
        rate_limit=UNLIMITED,
        chat_rate_limit=UNLIMITED,
    )
    return build_application(settings, engine)


# -- the bare bot -----------------------------------------------------------------------------------------


class PassThrough(BaseRateLimiter[dict[str, Any]]):
    """No limiting at all: only here so the bare bot's requests pass the same probe as the real bot's."""

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: dict[str, Any] | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        return await callback(*args, **kwargs)


_QUESTION = (
    "<b>Step {step} of 14</b> · A question\nA question of about the length of the real ones, asking the "
    "physician about their practice so that the roadmap fits them.\n<i>Some help text under it.</i>"
)


def _keyboard(step: int) -> InlineKeyboardMarkup:
    """The button the persona taps next among three others, two a row, like a real question."""
    verb = "t" if step in TOGGLES else "a"
    labels = [TAPS[step], "Other one", "Other two", "Other three"] if step < len(TAPS) else ["Full roadmap"]
    buttons = [InlineKeyboardButton(label, callback_data=f"{verb}:{step}:q:{i}") for i, label in enumerate(labels)]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


async def _bare_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None
    context.chat_data["step"] = 0  # type: ignore[index]
    chat = update.effective_chat.id
    await context.bot.send_message(chat, "Welcome!", parse_mode=ParseMode.HTML)
    await context.bot.send_message(chat, _QUESTION.format(step=1), parse_mode=ParseMode.HTML, reply_markup=_keyboard(0))


async def _bare_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None and context.chat_data is not None
    step = context.chat_data.get("step", 0) + 1
    context.chat_data["step"] = step
    await query.answer()
    chat, message_id = query.message.chat.id, query.message.message_id
    text = _QUESTION.format(step=step + 1)
    if step - 1 in TOGGLES:
        await context.bot.edit_message_text(
            text, chat_id=chat, message_id=message_id, parse_mode=ParseMode.HTML, reply_markup=_keyboard(step)
        )
        return
    await context.bot.edit_message_text(
        f"✓ <i>Step {step} of 14</i> · A question: <b>The answer</b>",
        chat_id=chat,
        message_id=message_id,
        parse_mode=ParseMode.HTML,
    )
    await context.bot.send_message(chat, text, parse_mode=ParseMode.HTML, reply_markup=_keyboard(step))


def bare_app(address: dict[str, str]) -> App:
    app: App = (
        ApplicationBuilder()
        .token(address["token"])
        .base_url(address["base_url"])
        .rate_limiter(PassThrough())
        .request(AiohttpRequest())
        .get_updates_request(AiohttpRequest(connection_pool_size=1))
        .concurrent_updates(MAX_CONCURRENT_UPDATES)  # as many at once as medlegal handles
        .build()
    )
    app.add_handler(CommandHandler("start", _bare_start))
    app.add_handler(CallbackQueryHandler(_bare_press))
    return app


# -- running either -----------------------------------------------------------------------------------------


class Running:
    """Start an Application polling the fake (like `medlegal run` and `tests.harness.RunningBot`), stop it after."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.errors = _ErrorCount()

    async def __aenter__(self) -> Running:
        logging.getLogger().addHandler(self.errors)
        await self.app.initialize()
        if self.app.post_init is not None:
            await self.app.post_init(self.app)
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(poll_interval=0, timeout=1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.app.updater is not None
        await self.app.updater.stop()
        await self.app.stop()
        if self.app.post_stop is not None:
            await self.app.post_stop(self.app)
        await self.app.shutdown()
        if self.app.post_shutdown is not None:
            await self.app.post_shutdown(self.app)
        logging.getLogger().removeHandler(self.errors)


class _ErrorCount(logging.Handler):
    """Counts ERROR records (a failed update, an exception in a handler) while a bot runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{record.name}: {record.getMessage()}"
