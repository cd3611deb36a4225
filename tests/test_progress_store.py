"""The progress tracker on a real database (SQLite and PostgreSQL): ticks, the nudge opt-in and its schedule,
the funnel's inputs, the weekly nudge queued by the scheduler with a frozen clock, and exam reminders that follow
the ticked steps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.dialogue import Dialogue
from bot.export_data import load_answers
from bot.progress import ProgressTracker
from bot.reminder_scheduler import ReminderScheduler
from bot.settings import Settings
from db import outbox
from db import progress as store
from db import repository as repo
from db.models import OutboxMessage, ProgressNudge, ProgressStep
from tests.harness import answer_all
from tests.test_reminder_scheduler import NEPHRO, ORTHO

Sessions = async_sessionmaker[AsyncSession]
LA = ZoneInfo("America/Los_Angeles")
TODAY = date(2026, 11, 29)
T0 = datetime(2026, 11, 29, 15, 30, tzinfo=LA)  # nudges turned on: the first is due Mon 7 Dec 2026, 9:00


def _settings() -> Settings:
    return Settings.model_construct(
        reminder_days=(30, 7, 1), reminder_hour=9, timezone="America/Los_Angeles", today=TODAY, k_min=5
    )


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _setup(sessions: Sessions, clock: Clock) -> tuple[Dialogue, ProgressTracker]:
    tracker = ProgressTracker(sessions, _settings(), now=clock)
    return Dialogue(sessions, plugins=[tracker], settings=_settings()), tracker


async def _rows(sessions: Sessions, user: int, kind: str) -> list[OutboxMessage]:
    async with sessions() as session:
        stmt = select(OutboxMessage).where(OutboxMessage.user_id == user, OutboxMessage.kind == kind)
        return list((await session.execute(stmt.order_by(OutboxMessage.id))).scalars())


async def test_ticks_are_kept_once_with_their_first_day_and_untick_removes_them(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await repo.lock_user(session, 1)
        assert await store.set_step(session, 1, "course", True, date(2026, 11, 29))
        assert not await store.set_step(session, 1, "course", True, date(2026, 12, 5))  # a double tap
        assert await store.set_step(session, 1, "eligible", True, date(2026, 11, 30))
    async with sessions() as session, session.begin():
        assert await store.done_steps(session, 1) == {"course": date(2026, 11, 29), "eligible": date(2026, 11, 30)}
        assert await store.set_step(session, 1, "course", False, date(2026, 12, 5))
        assert not await store.set_step(session, 1, "course", False, date(2026, 12, 5))
        assert await store.done_steps(session, 1) == {"eligible": date(2026, 11, 30)}
        assert await store.done_steps(session, 2) == {}


async def test_nudge_opt_in_anchor_and_opt_out(sessions: Sessions) -> None:
    on = datetime(2026, 11, 29, 23, 30, 0, 123456, tzinfo=UTC)
    async with sessions() as session, session.begin():
        await repo.lock_user(session, 1)
        await repo.lock_user(session, 2)
        assert not await store.nudges_on(session, 1)
        await store.set_nudges(session, 1, True, on)
        await store.set_nudges(session, 2, False, on)
    async with sessions() as session, session.begin():
        assert await store.nudges_on(session, 1) and not await store.nudges_on(session, 2)
        assert await store.nudge_anchors(session) == {1: on.replace(microsecond=0)}
        assert await store.nudges_off(session, {1, 2, 3}) == {2, 3}
        later = on + timedelta(days=7)
        await outbox.queue_message(session, user_id=1, kind=store.NUDGE_KIND, text="x", buttons=None,
                                   dedupe_key="n:1:test", not_before=later)  # fmt: skip
        assert await store.nudge_anchors(session) == {1: later}
        await store.set_nudges(session, 1, False, later)
    (row,) = await _rows(sessions, 1, store.NUDGE_KIND)
    assert row.status == "skipped" and row.error == "nudges turned off"
    async with sessions() as session:
        assert await store.nudge_anchors(session) == {}


async def test_funnel_polls_use_the_latest_completed_path(sessions: Sessions) -> None:
    clock = Clock(T0)
    dialogue, tracker = _setup(sessions, clock)
    await answer_all(dialogue, 1, ORTHO)
    await answer_all(dialogue, 2, NEPHRO)
    await answer_all(dialogue, 3, ORTHO)
    await dialogue.command(3, "restart")  # mid-flow again: the last recommendation still counts
    await tracker.press(1, "prg:t:eligible:1")
    await tracker.press(2, "prg:t:ime_source:1")
    async with sessions() as session:
        assert await store.ticked_by_user(session) == {1: frozenset({"eligible"}), 2: frozenset({"ime_source"})}
        answers = await load_answers(session, ZoneInfo("UTC"))
    funnel = sorted((r.poll.key, r.chosen) for r in answers.responses if r.poll.key.startswith("progress."))
    assert funnel == [
        ("progress.ime", ()), ("progress.ime", ()), ("progress.ime", ("ime_report",)),
        ("progress.qme", ()), ("progress.qme", ("course",)), ("progress.qme", ("eligible",)),
    ]  # fmt: skip


async def test_weekly_nudge_at_most_once_a_week_across_restarts(engine: AsyncEngine, sessions: Sessions) -> None:
    clock = Clock(T0)
    dialogue, tracker = _setup(sessions, clock)
    await answer_all(dialogue, 1, ORTHO)
    await answer_all(dialogue, 2, NEPHRO)
    await answer_all(dialogue, 3, ORTHO)  # never opts in
    for user in (1, 2):
        reply = await tracker.press(user, "prg:n:1")
        assert reply.edit is not None and "Weekly nudge is on" in reply.edit.text
    await tracker.press(2, "prg:t:ime_source:1")

    def scheduler() -> ReminderScheduler:  # a fresh one each time, as after a restart
        return ReminderScheduler(engine, sessions, _settings(), clock=clock)

    for later in (timedelta(0), timedelta(hours=1), timedelta(days=3), timedelta(days=7, hours=-7)):
        clock.at = T0 + later
        assert await scheduler().run_once() == 0, later  # not a week yet (7 Dec 9:00 is 6 days 17.5 h on)
    clock.at = datetime(2026, 12, 7, 9, 0, tzinfo=LA)
    assert await scheduler().run_once() == 2
    assert await scheduler().run_once() == 0
    for later in (timedelta(hours=5), timedelta(days=3), timedelta(days=6, hours=23)):
        clock.at = datetime(2026, 12, 7, 9, 0, tzinfo=LA) + later
        assert await scheduler().run_once() == 0, later
    clock.at = datetime(2026, 12, 14, 9, 1, tzinfo=LA)
    assert await scheduler().run_once() == 2

    first, second = await _rows(sessions, 1, store.NUDGE_KIND)
    sent_at = [outbox.as_utc(r.not_before) for r in (first, second)]
    assert sent_at == [datetime(2026, 12, 7, 9, tzinfo=LA), datetime(2026, 12, 14, 9, tzinfo=LA)]
    assert first.text is not None and "Confirm you meet the QME eligibility rules" in first.text
    assert first.buttons is not None and first.buttons[1][0]["callback_data"] == "prg:s"
    (ime, _) = await _rows(sessions, 2, store.NUDGE_KIND)
    assert ime.text is not None and "Deliver your first IME report" in ime.text
    assert await _rows(sessions, 3, store.NUDGE_KIND) == []

    # the Stop button on a nudge turns them off; nothing more is queued
    stopped = await tracker.press(1, "prg:s")
    assert stopped.notice is not None and "Weekly nudges are off" in stopped.notice
    clock.at = datetime(2026, 12, 21, 9, 1, tzinfo=LA)
    assert await scheduler().run_once() == 1  # user 2 only
    assert len(await _rows(sessions, 1, store.NUDGE_KIND)) == 2


async def test_no_nudge_when_every_step_is_done(engine: AsyncEngine, sessions: Sessions) -> None:
    clock = Clock(T0)
    dialogue, tracker = _setup(sessions, clock)
    await answer_all(dialogue, 2, NEPHRO)
    await tracker.press(2, "prg:n:1")
    for key in ("ime_source", "ime_report"):
        await tracker.press(2, f"prg:t:{key}:1")
    clock.at = T0 + timedelta(days=14)
    assert await ReminderScheduler(engine, sessions, _settings(), clock=clock).run_once() == 0


async def test_exam_reminders_follow_the_ticked_steps(engine: AsyncEngine, sessions: Sessions) -> None:
    clock = Clock(datetime(2026, 11, 29, 12, tzinfo=LA))
    dialogue, tracker = _setup(sessions, clock)
    await answer_all(dialogue, 1, ORTHO)
    async with sessions() as session, session.begin():
        await repo.add_sitting(session, first_day=date(2027, 4, 5), last_day=date(2027, 4, 11),
                               deadline=date(2027, 2, 19))  # fmt: skip
        await outbox.set_subscribed(session, 1, True)
    scheduler = ReminderScheduler(engine, sessions, _settings(), clock=clock)
    assert await scheduler.run_once() == 6

    await tracker.press(1, "prg:t:course:1")  # the course never timed a reminder
    assert await scheduler.run_once() == 0
    assert all(r.status == "pending" for r in await _rows(sessions, 1, "reminder"))

    await tracker.press(1, "prg:t:applied:1")  # filed: the deadline reminders go
    assert await scheduler.run_once() == 0
    rows = await _rows(sessions, 1, "reminder")
    skipped = {r.dedupe_key.split(":")[3] for r in rows if r.status == "skipped"}
    assert skipped == {"deadline"} and sum(r.status == "pending" for r in rows) == 3

    await tracker.press(1, "prg:t:passed:1")  # passed: no exam reminders at all
    assert await scheduler.run_once() == 0
    assert all(r.status == "skipped" for r in await _rows(sessions, 1, "reminder"))
    roadmap = await dialogue.command(1, "roadmap")
    assert "QME exam timing" not in roadmap.send[0].text
    assert "Remind me of exam dates" not in [b.label for b in roadmap.send[0].buttons()]


async def test_delete_user_erases_the_tracker_rows(sessions: Sessions) -> None:
    clock = Clock(T0)
    dialogue, tracker = _setup(sessions, clock)
    for user in (1, 2):
        await answer_all(dialogue, user, ORTHO)
        await tracker.press(user, "prg:t:eligible:1")
        await tracker.press(user, "prg:n:1")
    async with sessions() as session, session.begin():
        await repo.delete_user(session, 1)
    async with sessions() as session:
        steps = (await session.execute(select(ProgressStep.user_id))).scalars().all()
        nudges = (await session.execute(select(ProgressNudge.user_id))).scalars().all()
    assert list(steps) == [2] and list(nudges) == [2]


def test_k_min_defaults_to_5_and_is_never_below_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDLEGAL_K_MIN", raising=False)
    assert Settings(_env_file=None).k_min == 5
    monkeypatch.setenv("MEDLEGAL_K_MIN", "3")
    assert Settings(_env_file=None).k_min == 3
    monkeypatch.setenv("MEDLEGAL_K_MIN", "2")
    with pytest.raises(ValidationError, match="greater than or equal to 3"):
        Settings(_env_file=None)


async def test_progress_answers_every_situation_and_bad_button(sessions: Sessions) -> None:
    dialogue, _ = _setup(sessions, Clock(T0))
    before = await dialogue.command(1, "progress")
    assert "once you've answered the questions" in before.send[0].text
    resident: list[str | tuple[str, ...]] = ["md", "active", ("none",), "training", "resident", "ortho"]
    reply = await answer_all(dialogue, 2, resident)
    assert "Recommendation: Not yet" in reply.send[-1].text, reply.send[-1].text
    not_yet = await dialogue.command(2, "progress")
    assert "no checklist to tick yet" in not_yet.send[0].text and not not_yet.send[0].buttons()

    await answer_all(dialogue, 1, ORTHO)
    for forged in ("prg:t:bogus:1", "prg:t:ime_source:1", "prg:t:eligible:2", "prg:zap", "prg:" + "x" * 60):
        reply = await dialogue.press(1, forged)
        assert reply.notice is not None, forged
        assert "Your progress: California QME" in reply.send[0].text, forged
    async with sessions() as session:
        assert await store.done_steps(session, 1) == {}
    assert await dialogue.text(1, "Exam passed") is not None  # free text is the dialogue's as before
    async with sessions() as session:
        assert await store.done_steps(session, 1) == {}
