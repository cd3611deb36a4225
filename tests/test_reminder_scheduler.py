"""The reminder scheduler on a real database with a frozen clock: the right reminders, queued once, kept in step
with the calendar, across restarts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.dialogue import Dialogue
from bot.reminder_scheduler import ReminderScheduler
from bot.settings import Settings
from db import outbox
from db import repository as repo
from db.models import OutboxMessage
from tests.harness import answer_all

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 11, 29, 12, tzinfo=LA)
Answers = list[str | tuple[str, ...]]
ORTHO: Answers = ["md", "active", ("none",), "certified", "established", "third_plus", "ortho", "predictable",
                  "10to20", "high", "yes", "comfortable", "yes", ("wc",)]  # fmt: skip
NEPHRO: Answers = ["md", "no", ("TX",), "certified", "established", "nephro", "ceiling", "10to20", "low", "no",
                   "occasionally", ("pi", "ltd")]  # fmt: skip


def _settings() -> Settings:
    return Settings.model_construct(reminder_days=(30, 7, 1), reminder_hour=9, timezone="America/Los_Angeles")


async def _finish(dialogue: Dialogue, user: int, answers: Answers) -> None:
    reply = await answer_all(dialogue, user, answers)
    assert "Recommendation" in reply.send[-1].text


async def _rows(sessions: async_sessionmaker[AsyncSession], user: int) -> list[OutboxMessage]:
    async with sessions() as session:
        stmt = select(OutboxMessage).where(OutboxMessage.user_id == user).order_by(OutboxMessage.not_before)
        return list((await session.execute(stmt)).scalars())


async def _sitting(sessions: async_sessionmaker[AsyncSession], deadline: date) -> int:
    async with sessions() as session, session.begin():
        row = await repo.add_sitting(session, first_day=date(2027, 4, 5), last_day=date(2027, 4, 11), deadline=deadline)
        return row.id


async def test_subscribers_get_their_reminders_once(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    dialogue = Dialogue(sessions, settings=_settings())
    await _finish(dialogue, 1, ORTHO)
    await _finish(dialogue, 2, NEPHRO)
    await _finish(dialogue, 3, ORTHO)
    await _sitting(sessions, date(2027, 2, 19))
    async with sessions() as session, session.begin():
        for user in (1, 2):
            await outbox.set_subscribed(session, user, True)  # user 3 never subscribed

    scheduler = ReminderScheduler(engine, sessions, _settings(), clock=lambda: NOW)
    assert await scheduler.run_once() == 6
    assert await scheduler.run_once() == 0
    restarted = ReminderScheduler(engine, sessions, _settings(), clock=lambda: NOW + timedelta(minutes=5))
    assert await restarted.run_once() == 0

    rows = await _rows(sessions, 1)
    assert [r.not_before.astimezone(LA) if r.not_before.tzinfo else r.not_before.replace(tzinfo=UTC).astimezone(LA)
            for r in rows] == [
        datetime(2027, 1, 20, 9, tzinfo=LA),
        datetime(2027, 2, 12, 9, tzinfo=LA),
        datetime(2027, 2, 18, 9, tzinfo=LA),
        datetime(2027, 3, 6, 9, tzinfo=LA),
        datetime(2027, 3, 29, 9, tzinfo=LA),
        datetime(2027, 4, 4, 9, tzinfo=LA),
    ]  # fmt: skip
    assert all(r.kind == "reminder" and r.status == "pending" for r in rows)
    assert rows[0].text is not None and "19 Feb 2027" in rows[0].text
    assert rows[0].buttons is not None and rows[0].buttons[1][0]["callback_data"] == "R:0:stop"
    assert await _rows(sessions, 2) == []  # IME-only
    assert await _rows(sessions, 3) == []  # not subscribed


async def test_an_edited_sitting_replaces_its_pending_reminders(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    dialogue = Dialogue(sessions, settings=_settings())
    await _finish(dialogue, 1, ORTHO)
    sitting = await _sitting(sessions, date(2027, 2, 19))
    async with sessions() as session, session.begin():
        await outbox.set_subscribed(session, 1, True)
    scheduler = ReminderScheduler(engine, sessions, _settings(), clock=lambda: NOW)
    assert await scheduler.run_once() == 6

    async with sessions() as session, session.begin():
        await repo.update_sitting(session, sitting, deadline=date(2027, 2, 26))
    assert await scheduler.run_once() == 3  # the three deadline reminders, for the new date
    rows = await _rows(sessions, 1)
    skipped = [r for r in rows if r.status == "skipped"]
    assert len(skipped) == 3 and all(":deadline:2027-02-19:" in r.dedupe_key for r in skipped)
    assert all("no longer on the roadmap" in (r.error or "") for r in skipped)

    async with sessions() as session, session.begin():
        await repo.remove_sitting(session, sitting)
    assert await scheduler.run_once() == 0
    assert all(r.status == "skipped" for r in await _rows(sessions, 1))


async def test_unsubscribed_users_get_no_new_reminders(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    dialogue = Dialogue(sessions, settings=_settings())
    await _finish(dialogue, 1, ORTHO)
    await _sitting(sessions, date(2027, 2, 19))
    reply = await dialogue.command(1, "remind")
    assert "Exam reminders are on" in reply.send[0].text
    await dialogue.command(1, "stop_reminders")
    scheduler = ReminderScheduler(engine, sessions, _settings(), clock=lambda: NOW)
    assert await scheduler.run_once() == 0
