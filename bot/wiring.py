"""Composition root shared by Telegram and the console: one dialogue with every feature plugged in."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.admin_broadcast import BroadcastAdmin
from bot.admin_export import ExportAdmin
from bot.admin_polls import PollsAdmin
from bot.admin_sittings import SittingsAdmin
from bot.dialogue import Dialogue, Plugin
from bot.estimator import Estimator
from bot.polls import PollsPlugin
from bot.progress import ProgressTracker
from bot.settings import Settings

PLACEHOLDER_USERNAME = "YourBotUsername"
"""The bot username in start links made outside Telegram (`medlegal chat`), where no bot is logged in."""


def build_dialogue(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    bot_username: Callable[[], str] = lambda: PLACEHOLDER_USERNAME,
) -> Dialogue:
    """`bot_username` is read when a start link is made (Telegram: PTB's `bot.username`, known once logged in)."""
    sittings = SittingsAdmin(sessions, settings.admin_ids, settings.current_date)
    broadcasts = BroadcastAdmin(sessions, settings.admin_ids)
    estimator = Estimator(sessions, settings.current_date)
    k_min = lambda: settings.k_min  # noqa: E731
    polls = PollsPlugin(sessions, settings.current_date, k_min, zone=settings.zone)
    polls_admin = PollsAdmin(
        sessions, settings.admin_ids, settings.current_date, k_min, bot_username, zone=settings.zone
    )
    progress = ProgressTracker(sessions, settings)
    export = ExportAdmin(sessions, settings)
    plugins: list[Plugin] = [sittings, broadcasts, estimator, polls, polls_admin, progress, export]
    return Dialogue(sessions, plugins=plugins, settings=settings)
