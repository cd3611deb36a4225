"""Repeated updates are processed once (the claim in the database), and a typed answer that arrives after a newer
update is applied only while it still answers the current question. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot import texts
from bot.dialogue import Dialogue, Reply
from bot.update_guard import AlreadyProcessed, UpdateGuard, begin_update, claiming_sessions, settle_update
from bot.update_order import CURRENT_UPDATE, ORDER_WINDOW, is_late
from db import processed_updates
from db.models import FlowSession, ProcessedUpdate
from db.repository import StoredFlow, active_flow, read_active, save_unmoved
from tests.harness import answer_data
from tests.sql_trace import ONE_TRANSACTION, statements_run

Sessions = async_sessionmaker[AsyncSession]


async def _count(sessions: Sessions) -> int:
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(ProcessedUpdate))).scalar_one()


async def test_an_update_is_claimed_once_even_by_claims_at_the_same_time(sessions: Sessions) -> None:
    first, second = UpdateGuard(sessions), UpdateGuard(sessions)  # two processes
    assert await first.claim(1) is True
    assert await first.claim(1) is False
    assert await second.claim(1) is False
    for update_id in range(100, 120):
        won = await asyncio.gather(first.claim(update_id), second.claim(update_id))
        assert sorted(won) == [False, True]


async def test_old_claims_are_pruned_by_the_first_claim_of_a_day(sessions: Sessions) -> None:
    day = date(2026, 3, 1)
    guard = UpdateGuard(sessions, today=lambda: day)
    for update_id in range(5):
        assert await guard.claim(update_id)
    day += timedelta(days=processed_updates.RETENTION_DAYS)
    assert await guard.claim(10)
    assert await _count(sessions) == 6, "within the retention every claim stays"
    day += timedelta(days=1)
    assert await guard.claim(11)
    assert await _count(sessions) == 2, "the first claim of a new day drops the claims past the retention"
    assert await guard.claim(3), "an id past the retention could be claimed again (Telegram never resends it)"


async def test_a_late_typed_answer_is_refused_only_once_a_newer_update_moved_the_flow(sessions: Sessions) -> None:
    dialogue = Dialogue(sessions)
    user = 4242

    CURRENT_UPDATE.set(10)
    await dialogue.command(user, "start")
    CURRENT_UPDATE.set(12)
    await dialogue.command(user, "help")  # a newer update that does not move the flow
    CURRENT_UPDATE.set(11)
    reply = await dialogue.text(user, "MD")  # older than /help, still answers step 1
    assert "Step 2 of" in reply.screens()[-1].text

    CURRENT_UPDATE.set(14)
    await dialogue.press(user, answer_data(reply, "no"))  # the tap answers step 2
    CURRENT_UPDATE.set(13)
    late = await dialogue.text(user, "Yes, active")  # typed for step 2 before the tap
    assert late.notice == texts.LATE_MESSAGE
    assert texts.LATE_MESSAGE in late.screens()[-1].text and "Step 3 of" in late.screens()[-1].text
    async with sessions() as session:
        flow = await active_flow(session, user)
    assert flow is not None and flow.answers == {"profession": "md", "ca_license": "no"}
    assert flow.moved_by_update == 14

    CURRENT_UPDATE.set(15)
    reply = await dialogue.text(user, "None")  # a newer typed answer applies
    assert "Step 4 of" in reply.screens()[-1].text
    CURRENT_UPDATE.set(None)  # the console: no update ids, nothing is late
    reply = await dialogue.text(user, "Board certified")
    assert "Step 5 of" in reply.screens()[-1].text


def test_ids_are_compared_only_with_a_recent_move() -> None:
    """After a week without updates Telegram may number the next one lower; an old move is no evidence."""
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    token = CURRENT_UPDATE.set(5)
    try:
        assert is_late(9, now - timedelta(minutes=1), now)
        assert not is_late(9, now - ORDER_WINDOW - timedelta(seconds=1), now)
        assert not is_late(3, now, now)
        assert not is_late(None, None, now)
        assert is_late(9, (now - timedelta(minutes=1)).replace(tzinfo=None), now), "SQLite gives naive UTC"
    finally:
        CURRENT_UPDATE.reset(token)
    assert not is_late(9, now, now), "no update being handled (the console)"


async def _as_update(guard: UpdateGuard, update_id: int, work: Callable[[], Awaitable[object]]) -> object:
    """Run `work` as the handlers of update `update_id` do: in a task of its own, after the guard's handler."""

    async def handle() -> object:
        begin_update(guard, update_id)
        result = await work()
        await settle_update(update_id)
        return result

    return await asyncio.create_task(handle())


async def _flows(sessions: Sessions) -> int:
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(FlowSession))).scalar_one()


async def test_the_claim_rides_in_the_updates_first_transaction_and_a_repeat_stops_there(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    guard = UpdateGuard(sessions)
    dialogue = Dialogue(claiming_sessions(engine))
    user = 5151
    await _as_update(guard, 30, lambda: dialogue.command(user, "start"))
    assert await _count(sessions) == 1
    try:
        await _as_update(guard, 30, lambda: dialogue.command(user, "restart"))
    except AlreadyProcessed as exc:
        assert exc.update_id == 30
    else:
        raise AssertionError("a repeated update was processed")
    assert await _flows(sessions) == 1, "the repeat changed nothing"
    await _as_update(guard, 31, lambda: dialogue.command(user, "restart"))
    assert await _flows(sessions) == 2 and await _count(sessions) == 2

    # the console (no update) and work outside the update's own task claim nothing
    await dialogue.command(user, "restart")
    assert await _count(sessions) == 2


async def test_a_step_that_rolls_back_leaves_its_update_unclaimed_for_the_retry(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    guard = UpdateGuard(sessions)
    claiming = claiming_sessions(engine)
    attempts: list[int] = []

    async def step() -> str:
        for attempt in range(2):
            try:
                async with claiming() as session, session.begin():
                    await session.execute(select(func.count()).select_from(FlowSession))
                    attempts.append(await _count(sessions))  # another connection: not committed yet
                    if attempt == 0:
                        raise ConnectionError("the database went away")
                return "done"
            except ConnectionError:
                continue
        raise AssertionError("unreachable")

    assert await _as_update(guard, 40, step) == "done"
    assert attempts == [0, 0]
    assert await _count(sessions) == 1, "the retry claimed it once"


async def test_an_update_without_database_work_is_claimed_after_its_handlers(sessions: Sessions) -> None:
    guard = UpdateGuard(sessions)
    shown: list[str] = []

    async def help_text() -> None:
        shown.append("help")

    await _as_update(guard, 50, help_text)
    assert await _count(sessions) == 1
    await _as_update(guard, 50, help_text)  # answered again (no database work to stop it), claimed once
    assert shown == ["help", "help"] and await _count(sessions) == 1


async def test_a_usual_tap_is_one_statement_and_its_update_is_still_claimed_once(
    engine: AsyncEngine, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = UpdateGuard(sessions)
    dialogue = Dialogue(claiming_sessions(engine))
    user = 6161
    start = await _as_update(guard, 60, lambda: dialogue.command(user, "start"))  # the day's first claim prunes
    assert isinstance(start, Reply)
    async with engine.connect() as conn:
        opened = await read_active(conn, user)
    assert dialogue.known.get(user) == (opened, dialogue.engine.start()), "/start leaves its flow as the guess"
    tap = answer_data(start, "md")
    statements = statements_run(engine, monkeypatch)
    moved = await _as_update(guard, 61, lambda: dialogue.press(user, tap))
    assert isinstance(moved, Reply) and moved.edit is not None and moved.send, "answered, the next question follows"
    one = ["WITH"] if engine.dialect.name == "postgresql" else [ONE_TRANSACTION]
    assert statements == one, "the unlocked tap from the flow /start opened: one compare-and-set"
    assert await _count(sessions) == 2
    async with sessions() as session:
        flow = await active_flow(session, user)
    assert flow is not None and len(flow.answers) == 1 and flow.moved_by_update == 61

    # the next tap starts from the flow as this process saved it: one compare-and-set, no read
    statements.clear()
    next_tap = answer_data(moved, "active")
    step_3 = await _as_update(guard, 62, lambda: dialogue.press(user, next_tap))
    assert isinstance(step_3, Reply) and "Step 3 of" in step_3.send[0].text
    assert statements == one, "the unlocked tap from the flow it knew"
    known = dialogue.known.get(user)
    assert known is not None and known[1] == dialogue._state(known[0]), "the kept state is the stored one"
    assert await _count(sessions) == 3
    async with sessions() as session:
        flow = await active_flow(session, user)

    try:  # Telegram delivers the same tap again: the locked way finds the claim, nothing changes
        await _as_update(guard, 61, lambda: dialogue.press(user, tap))
    except AlreadyProcessed:
        pass
    else:
        raise AssertionError("a repeated tap was processed")
    async with sessions() as session:
        assert await active_flow(session, user) == flow
    assert await _count(sessions) == 3


async def test_a_flow_another_process_moved_is_read_again_before_the_tap_applies(engine: AsyncEngine) -> None:
    here, there = Dialogue(claiming_sessions(engine)), Dialogue(claiming_sessions(engine))  # two processes
    user = 6262
    start = await here.command(user, "start")
    step_2 = await here.press(user, answer_data(start, "md"))
    # the other process takes the physician's next tap; this one still knows the flow at step 2
    step_3 = await there.press(user, answer_data(step_2, "active"))
    assert "Step 3 of" in step_3.send[0].text
    stale = await here.press(user, answer_data(step_2, "willing"))  # the step 2 screen tapped again
    assert stale.notice == texts.STALE_BUTTON
    moved = await here.press(user, answer_data(step_3, ("none",)))
    assert "Step 4 of" in moved.send[0].text
    async with engine.connect() as conn:
        flow = await active_flow_of(conn, user)
    assert flow is not None and flow.answers == {"profession": "md", "ca_license": "active", "other_states": ["none"]}


async def test_an_unlocked_save_applies_only_to_the_session_as_it_was_read(engine: AsyncEngine) -> None:
    dialogue = Dialogue(claiming_sessions(engine))
    user = 7171
    start = await dialogue.command(user, "start")
    async with engine.connect() as conn:
        read = await read_active(conn, user)
    assert read is not None
    await dialogue.press(user, answer_data(start, "md"))  # another process moves the session meanwhile

    async def save(conn: AsyncConnection, flow: StoredFlow, update_id: int) -> StoredFlow | None:
        saved = await save_unmoved(
            conn, flow, current_key="ca_license", editing=False, draft=(), answers={"profession": "md"},
            update_id=update_id, claim=date(2026, 3, 1),
        )  # fmt: skip
        return None if saved is None else saved.flow

    async with engine.connect() as conn:
        assert await save(conn, read, 70) is None
    async with engine.connect() as conn:
        now = await read_active(conn, user)
        assert now is not None and now.turn == read.turn + 1 and now.moved_by_update is None
        assert await _count(async_sessionmaker(engine)) == 0, "no claim without the save"

        await processed_updates_claim(engine, 71)
        with pytest.raises(IntegrityError):  # the update was claimed already: the statement undoes itself whole
            await save(conn, now, 71)
    async with engine.connect() as conn:
        assert await read_active(conn, user) == now


async def processed_updates_claim(engine: AsyncEngine, update_id: int) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: processed_updates.claim_on(sync, update_id, date(2026, 3, 1)))


async def active_flow_of(conn: AsyncConnection, user_id: int) -> StoredFlow | None:
    if conn.dialect.name == "postgresql":
        return await read_active(conn, user_id)
    async with AsyncSession(conn) as session:
        return await active_flow(session, user_id)
