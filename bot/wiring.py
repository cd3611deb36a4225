"""Composition root shared by Telegram and the console: one dialogue with every feature plugged in."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.admin_broadcast import BroadcastAdmin
from bot.admin_export import ExportAdmin
from bot.admin_sittings import SittingsAdmin
from bot.dialogue import Dialogue
from bot.settings import Settings


def build_dialogue(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Dialogue:
    sittings = SittingsAdmin(sessions, settings.admin_ids, settings.current_date)
    broadcasts = BroadcastAdmin(sessions, settings.admin_ids)
    export = ExportAdmin(sessions, settings)
    return Dialogue(sessions, plugins=[sittings, broadcasts, export], settings=settings)
