"""Process an update Telegram delivers more than once (a retried webhook, the same update reaching two processes)
only once, by claiming its update_id in the database.

The claim rides in the first transaction the update's handlers open (`ClaimingSession`): an INSERT of the id, so
on PostgreSQL a second delivery waits for the first one's transaction and then finds the id taken; the handler's
work and its claim commit or roll back together, and a tap costs one statement more instead of a transaction of
its own. A repeat raises `AlreadyProcessed` at its first statement, before it has changed or sent anything, and
`bot.handlers.on_error` drops it quietly. An update that needs no database work (/help, a message in a group) is
claimed on its own after its handlers ran (`settle`); two copies of such an update arriving at the same moment may
both be answered, which repeats a text and changes nothing.

It also records which update is being handled (`bot.update_order.CURRENT_UPDATE`) for the dialogue's order check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction
from telegram import Update
from telegram.ext import Application, ContextTypes, TypeHandler

from bot.update_order import CURRENT_UPDATE
from db import processed_updates

log = logging.getLogger(__name__)

GUARD_GROUP = -100
"""Before every other handler group but the log tagging."""
SETTLE_GROUP = 100
"""After every other handler group."""


def _utc_today() -> date:
    return datetime.now(UTC).date()


class AlreadyProcessed(Exception):
    """This update was claimed by an earlier delivery, here or in another process: nothing more is done."""

    def __init__(self, update_id: int) -> None:
        super().__init__(f"update {update_id} was already processed")
        self.update_id = update_id


class UpdateGuard:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], today: Callable[[], date] = _utc_today) -> None:
        self.sessions = sessions
        self.today = today
        self.pruned_on: date | None = None
        """The day this process last pruned old claims (the first claim of a day does it)."""

    async def claim(self, update_id: int) -> bool:
        """True for the first claim of `update_id`, in a transaction of its own."""
        pending = _PENDING.set(None)  # in case `sessions` claims by itself: this claim is the one
        try:
            async with self.sessions() as session, session.begin():
                connection = await session.connection()
                return await connection.run_sync(lambda sync: self.claim_on(sync, update_id))
        finally:
            _PENDING.reset(pending)

    def claim_on(self, connection: Connection, update_id: int) -> bool:
        """True for the first claim of `update_id` in the connection's transaction; old claims are pruned by the
        first claim of each day."""
        today = self.today()
        first = processed_updates.claim_on(connection, update_id, today)
        if first and self.pruned_on != today:
            processed_updates.prune_on(connection, today)
            self.pruned_on = today
        return first


@dataclass
class _Claim:
    guard: UpdateGuard
    update_id: int
    task: asyncio.Task[Any] | None
    done: bool = False


_PENDING: ContextVar[_Claim | None] = ContextVar("pending_claim", default=None)
_INFO_KEY = "medlegal_claim"


class ClaimingSession(Session):
    """The session class of the handlers' session factory (`claiming_sessions`): while an update is handled, the
    first transaction its own task begins claims the update."""


@event.listens_for(ClaimingSession, "after_begin")
def _claim_in_first_transaction(session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    claim = _PENDING.get()
    if claim is None or claim.done or _INFO_KEY in session.info or claim.task is not asyncio.current_task():
        return  # no update (the console, background work), or claimed already
    if not claim.guard.claim_on(connection, claim.update_id):
        claim.done = True  # by the other delivery: this one stops here
        raise AlreadyProcessed(claim.update_id)
    session.info[_INFO_KEY] = claim


@event.listens_for(ClaimingSession, "after_commit")
def _claimed(session: Session) -> None:
    claim = session.info.pop(_INFO_KEY, None)
    if claim is not None:
        claim.done = True


@event.listens_for(ClaimingSession, "after_rollback")
def _not_claimed(session: Session) -> None:
    session.info.pop(_INFO_KEY, None)  # a retry of the step claims again


def claiming_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory for everything an update's handlers do in the database."""
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=ClaimingSession)


def claim_for_statement() -> tuple[int, date] | bool:
    """For work saved by one statement that commits by itself (`Dialogue`'s unlocked tap), which claims the update
    inside that statement: (update_id, day) to claim; True when the current task handles no update (nothing to
    claim); False when the claim must go the usual way, in a transaction (the day's prune of old claims is still
    due, or the update was claimed already). Call `claimed_by_statement` once the statement has committed."""
    claim = _PENDING.get()
    if claim is None or claim.task is not asyncio.current_task():
        return True
    today = claim.guard.today()
    if claim.done or claim.guard.pruned_on != today:
        return False
    return claim.update_id, today


def claimed_by_statement() -> None:
    claim = _PENDING.get()
    if claim is not None and claim.task is asyncio.current_task():
        claim.done = True


def begin_update(claims: UpdateGuard, update_id: int) -> None:
    """The current task handles `update_id` from now on: its first transaction through `claiming_sessions` claims it."""
    CURRENT_UPDATE.set(update_id)
    _PENDING.set(_Claim(claims, update_id, asyncio.current_task()))


async def settle_update(update_id: int) -> None:
    """Claim the update being handled if its handlers did no database work, so a later redelivery is recognised."""
    claim = _PENDING.get()
    if claim is None or claim.done or claim.update_id != update_id:
        return
    try:
        first = await claim.guard.claim(update_id)
    except (SQLAlchemyError, OSError) as exc:  # OSError: a refused or timed-out connection, unwrapped
        log.warning("could not record update %d as processed: %s", update_id, type(exc).__name__)
        return
    claim.done = True
    if not first:
        log.info("update %d was delivered again and answered again (it needed no database work)", update_id)


async def guard(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    if isinstance(update, Update):
        begin_update(context.application.bot_data["update_guard"], update.update_id)


async def settle(update: object, _context: ContextTypes.DEFAULT_TYPE) -> None:
    if isinstance(update, Update):
        await settle_update(update.update_id)


def register(app: Application, sessions: async_sessionmaker[AsyncSession]) -> None:  # type: ignore[type-arg]
    app.bot_data["update_guard"] = UpdateGuard(sessions)
    app.add_handler(TypeHandler(Update, guard), group=GUARD_GROUP)
    app.add_handler(TypeHandler(Update, settle), group=SETTLE_GROUP)
