"""Build the python-telegram-bot Application: settings, database, handlers, command list, the rate limiter every
request goes through, the outbox sender that runs beside the handlers in every process, and the reminder
scheduler (active in one process at a time)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import BotCommand
from telegram.ext import Application, ApplicationBuilder

from bot import handlers, texts, update_guard
from bot.aiohttp_request import AiohttpRequest
from bot.per_user_order import PerUserOrder
from bot.rate_limit import BotRateLimiter
from bot.reminder_scheduler import ReminderScheduler
from bot.sender import OutboxSender
from bot.settings import Settings
from bot.wiring import build_dialogue
from db.engine import make_engine, make_session_factory

App = Application[Any, Any, Any, Any, Any, Any]
log = logging.getLogger(__name__)
SENDER_STOP_TIMEOUT = 15.0


GC_THRESHOLDS = (20_000, 20, 20)
"""The garbage collector's generation thresholds once started (Python's default is 700, 10, 10): a young
collection every 20,000 allocations instead of 700. Every update allocates thousands of short-lived objects (PTB's
update and context, the reply's JSON), so with the defaults the collector ran about a hundred times a second under
load and cost 0.4-0.5 ms of CPU an update in `bench.load`; with these, and start-up frozen, about 0.06 ms."""


def tune_gc() -> None:
    """Exempt what start-up left alive (modules, PTB, SQLAlchemy, the application) from garbage collection, and
    collect the young generation less often (`GC_THRESHOLDS`).

    A full collection otherwise walks all of it, about 100 ms on this project's machine, in which the event loop
    stands still: at 1,000 messages a second that is a hundred send slots. Frozen, it takes a few milliseconds.
    Once per process (`medlegal run`), not per application: frozen cyclic garbage is never collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_application(settings: Settings, engine: AsyncEngine | None = None) -> App:
    """The bot, wired to the database; the engine is disposed at shutdown when this function created it."""
    if settings.bot_token is None:
        raise ValueError("MEDLEGAL_BOT_TOKEN is not set")
    owned = engine is None
    db_engine = engine or make_engine(settings.database_url)
    sessions = make_session_factory(db_engine)
    tasks: dict[str, asyncio.Task[None]] = {}

    async def post_init(app: App) -> None:
        await app.bot.set_my_commands([BotCommand(name, about) for name, about in texts.COMMANDS])
        sender: OutboxSender = app.bot_data["sender"]
        scheduler: ReminderScheduler = app.bot_data["scheduler"]
        tasks["sender"] = asyncio.create_task(sender.run_forever(), name="outbox-sender")
        tasks["scheduler"] = asyncio.create_task(scheduler.run_forever(), name="reminder-scheduler")

    async def stop_sender(app: App) -> None:
        """Let the message on the wire finish and be recorded; the rest of the batch goes back to pending."""
        for name in ("scheduler", "sender"):
            task = tasks.pop(name, None)
            if task is None:
                continue
            app.bot_data[name].stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), SENDER_STOP_TIMEOUT)
            except TimeoutError:
                log.warning("%s did not stop in time; its rows are sent again after their lease", name)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def post_stop(app: App) -> None:
        await stop_sender(app)

    async def post_shutdown(app: App) -> None:
        await stop_sender(app)  # when post_stop was not called
        if owned:
            await db_engine.dispose()

    limiter = BotRateLimiter(settings.rate_limit, settings.chat_rate_limit, engine=db_engine)
    builder = (
        ApplicationBuilder()
        .token(settings.bot_token.get_secret_value())
        .rate_limiter(limiter)
        .request(AiohttpRequest())
        .get_updates_request(AiohttpRequest(connection_pool_size=1))
        .concurrent_updates(PerUserOrder())  # physicians in parallel, each one's taps in order
    )
    if settings.telegram_base_url:
        builder = builder.base_url(settings.telegram_base_url).base_file_url(settings.base_file_url or "")
    app = builder.post_init(post_init).post_stop(post_stop).post_shutdown(post_shutdown).build()
    app.bot_data["settings"] = settings
    app.bot_data["engine"] = db_engine
    handler_sessions = update_guard.claiming_sessions(db_engine)
    app.bot_data["dialogue"] = build_dialogue(settings, handler_sessions, bot_username=lambda: app.bot.username)
    app.bot_data["sender"] = OutboxSender(app.bot, sessions, settings, max_lanes=settings.send_lanes)
    app.bot_data["scheduler"] = ReminderScheduler(db_engine, sessions, settings)
    update_guard.register(app, sessions)
    handlers.register(app)
    return app
