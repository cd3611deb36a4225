"""Derive exam reminders from the calendar and the database and queue them in the outbox.

Nothing lives only in memory: each pass recomputes every subscriber's roadmap and queues the reminders it
implies under stable keys (a key is queued once, whatever the number of passes, restarts or processes), and
marks pending reminders that no longer follow from the roadmap as skipped (a sitting edited or removed, a path
changed). The outbox sender delivers them, with its rate limits, retries and crash safety.
Exactly one process schedules: on PostgreSQL it holds an advisory lock on a connection of its own, which a
standby process takes over when the holder dies; SQLite has one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot import texts
from bot.exam_calendar import stored_sittings
from bot.progress_nudge import queue_nudges
from bot.settings import Settings
from db import outbox
from db import progress as progress_store
from db import repository as repo
from flows.engine import FlowEngine, restore
from flows.facts import load_facts
from flows.reminders import plan_reminders
from flows.roadmap import build_roadmap

log = logging.getLogger(__name__)

SCHEDULER_LOCK_KEY = 7_412_002  # PostgreSQL advisory lock id: one reminder scheduler across processes
STANDBY_INTERVAL = 2.0
"""Seconds between a standby process's tries for the lock (one cheap query each)."""


class ReminderScheduler:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        flow_engine: FlowEngine | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self.flow = flow_engine or FlowEngine()
        self._lock_conn: AsyncConnection | None = None
        self._stopped = asyncio.Event()

    async def run_once(self) -> int:
        """One pass over every subscriber; returns how many reminders and progress nudges were newly queued."""
        now = self.clock()
        today = self.settings.today or now.astimezone(self.settings.zone).date()
        fee = load_facts().exam.fee.amount
        buttons = [[{"text": texts.REMINDER_OPEN, "callback_data": "R:0:open"}],
                   [{"text": texts.REMINDER_STOP, "callback_data": "R:0:stop"}]]  # fmt: skip
        queued = 0
        async with self.sessions() as session, session.begin():
            sittings = await stored_sittings(session)
            for user_id in await outbox.active_subscribers(session):
                flow = await repo.latest_flow(session, user_id)
                planned = []
                if flow is not None and flow.status == "completed":
                    state = restore(self.flow, flow.answers, None)
                    if state.complete:
                        done = await progress_store.done_steps(session, user_id)
                        roadmap = build_roadmap(state.answers, today, sittings, defn=self.flow.defn, done=done)
                        planned = plan_reminders(
                            roadmap,
                            user_id=user_id,
                            now=now,
                            days_before=self.settings.reminder_days,
                            hour=self.settings.reminder_hour,
                            zone=self.settings.zone,
                            fee=fee,
                        )
                for reminder in planned:
                    queued += await outbox.queue_message(
                        session,
                        user_id=user_id,
                        kind="reminder",
                        text=reminder.text,
                        buttons=buttons,
                        dedupe_key=reminder.key,
                        not_before=reminder.send_at.astimezone(UTC),
                    )
                await outbox.skip_pending_reminders(
                    session, user_id, keep={r.key for r in planned}, reason="no longer on the roadmap"
                )
            # The weekly progress nudges (their own opt-in) ride on the same pass and the same outbox.
            queued += await queue_nudges(
                session, now=now, today=today, sittings=sittings, settings=self.settings, flow=self.flow
            )
        return queued

    async def _hold_lock(self) -> bool:
        """True when this process is the scheduler (always on SQLite)."""
        if self.engine.dialect.name != "postgresql":
            return True
        if self._lock_conn is not None:
            # The lock lives as long as its connection: prove it is still there (a dead one raises, and the
            # caller releases it and tries again on the next pass).
            await self._lock_conn.execute(text("SELECT 1"))
            await self._lock_conn.commit()
            return True
        conn = await self.engine.connect()
        got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SCHEDULER_LOCK_KEY})).scalar()
        await conn.commit()
        if got:
            self._lock_conn = conn
            log.info("reminder scheduler active in this process")
            return True
        await conn.close()
        return False

    @property
    def active(self) -> bool:
        """Whether this process is the one scheduling reminders (always, on SQLite: one process)."""
        return self.engine.dialect.name != "postgresql" or self._lock_conn is not None

    async def run_forever(self, interval: float = 60.0, standby_interval: float = STANDBY_INTERVAL) -> None:
        """A pass every `interval` while holding the lock; a standby asks for the lock every `standby_interval`,
        so it takes over within seconds of the holder's death (its connection closes and frees the lock)."""
        while not self._stopped.is_set():
            wait = standby_interval
            try:
                if await self._hold_lock():
                    wait = interval
                    queued = await self.run_once()
                    if queued:
                        log.info("queued %d exam reminders and nudges", queued)
            except Exception:  # a database outage must not end the loop; the next pass catches up
                log.exception("reminder pass failed")
                await self._release()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), wait)
        await self._release()

    async def _release(self) -> None:
        if self._lock_conn is not None:
            with contextlib.suppress(Exception):
                await self._lock_conn.close()
            self._lock_conn = None

    def stop(self) -> None:
        self._stopped.set()
