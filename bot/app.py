"""Build the python-telegram-bot Application: settings, database, handlers, command list."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import BotCommand
from telegram.ext import Application, ApplicationBuilder

from bot import handlers, texts
from bot.settings import Settings
from bot.wiring import build_dialogue
from db.engine import make_engine, make_session_factory

App = Application[Any, Any, Any, Any, Any, Any]


def build_application(settings: Settings, engine: AsyncEngine | None = None) -> App:
    """The bot, wired to the database; the engine is disposed at shutdown when this function created it."""
    if settings.bot_token is None:
        raise ValueError("MEDLEGAL_BOT_TOKEN is not set")
    owned = engine is None
    db_engine = engine or make_engine(settings.database_url)

    async def post_init(app: App) -> None:
        await app.bot.set_my_commands([BotCommand(name, about) for name, about in texts.COMMANDS])

    async def post_shutdown(_app: App) -> None:
        if owned:
            await db_engine.dispose()

    builder = ApplicationBuilder().token(settings.bot_token.get_secret_value())
    if settings.telegram_base_url:
        builder = builder.base_url(settings.telegram_base_url).base_file_url(settings.base_file_url or "")
    app = builder.post_init(post_init).post_shutdown(post_shutdown).build()
    app.bot_data["settings"] = settings
    app.bot_data["dialogue"] = build_dialogue(settings, make_session_factory(db_engine))
    handlers.register(app)
    return app
