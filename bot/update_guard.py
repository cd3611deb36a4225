"""The first handler every update meets: claim its update_id in the database, so an update Telegram delivers more
than once (a retried webhook, or the same update reaching two processes) is processed once.

It also records which update is being handled (`bot.update_order.CURRENT_UPDATE`) for the dialogue's order check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Update
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes, TypeHandler

from bot.update_order import CURRENT_UPDATE
from db import processed_updates

log = logging.getLogger(__name__)

GUARD_GROUP = -100
"""Before every other handler group."""


def _utc_today() -> date:
    return datetime.now(UTC).date()


class UpdateGuard:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], today: Callable[[], date] = _utc_today) -> None:
        self.sessions = sessions
        self.today = today
        self._pruned_on: date | None = None

    async def claim(self, update_id: int) -> bool:
        """True for the first claim of `update_id`; old claims are pruned by the first claim of each day."""
        today = self.today()
        async with self.sessions() as session, session.begin():
            first = await processed_updates.claim(session, update_id, today)
            if first and self._pruned_on != today:
                await processed_updates.prune(session, today)
                self._pruned_on = today
        return first


async def guard(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not isinstance(update, Update):
        return
    CURRENT_UPDATE.set(update.update_id)
    claims: UpdateGuard = context.application.bot_data["update_guard"]
    try:
        first = await claims.claim(update.update_id)
    except (SQLAlchemyError, OSError) as exc:  # OSError: a refused or timed-out connection, unwrapped
        # Fail open: the handlers meet the same database and answer "try again" if it is really down; refusing
        # here would drop an update that might be processed fine a moment later.
        log.warning("could not record update %d as processed: %s", update.update_id, type(exc).__name__)
        return
    if not first:
        log.info("update %d was delivered again; already processed", update.update_id)
        raise ApplicationHandlerStop


def register(app: Application, sessions: async_sessionmaker[AsyncSession]) -> None:  # type: ignore[type-arg]
    app.bot_data["update_guard"] = UpdateGuard(sessions)
    app.add_handler(TypeHandler(Update, guard), group=GUARD_GROUP)
