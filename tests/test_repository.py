"""The repository functions, on SQLite and PostgreSQL (the `sessions` fixture is parametrized by backend)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import repository as repo
from db.models import AnswerRow, FlowSession, RecommendationRow, User

Sessions = async_sessionmaker[AsyncSession]

USER = 1001
OTHER = 2002


async def _count(sessions: Sessions, model: Any, *where: Any) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def _statuses(sessions: Sessions, user_id: int) -> list[str]:
    async with sessions() as s:
        stmt = select(FlowSession.status).where(FlowSession.user_id == user_id).order_by(FlowSession.id)
        return list((await s.execute(stmt)).scalars())


async def _start(sessions: Sessions, user_id: int, current_key: str | None = "profession") -> repo.StoredFlow:
    async with sessions() as s, s.begin():
        await repo.lock_user(s, user_id)
        return await repo.start_flow(s, user_id, current_key)


async def _save(sessions: Sessions, flow_id: int, answers: dict[str, repo.AnswerValue], **kw: Any) -> repo.StoredFlow:
    kw.setdefault("current_key", "specialty")
    kw.setdefault("editing", False)
    kw.setdefault("draft", ())
    async with sessions() as s, s.begin():
        return await repo.save_flow(s, flow_id, answers=answers, **kw)


async def _active(sessions: Sessions, user_id: int) -> repo.StoredFlow | None:
    async with sessions() as s:
        return await repo.active_flow(s, user_id)


# -- users ------------------------------------------------------------------------------------------------


async def test_lock_user_creates_once_and_is_idempotent(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        await repo.lock_user(s, USER)
        first = await repo.get_user(s, USER)
        assert first is not None
        created = first.created_at
        await repo.lock_user(s, USER)  # same transaction
    async with sessions() as s, s.begin():
        await repo.lock_user(s, USER)  # another transaction
        later = await repo.get_user(s, USER)
        assert later is not None and later.created_at == created
    assert await _count(sessions, User) == 1
    async with sessions() as s:
        assert (await repo.get_user(s, USER)) is not None
        assert (await repo.get_user(s, OTHER)) is None


async def test_lock_user_keeps_users_apart(sessions: Sessions) -> None:
    for user_id in (USER, OTHER, USER, 2**40):  # a BigInteger id beyond 32 bits
        async with sessions() as s, s.begin():
            await repo.lock_user(s, user_id)
    assert await _count(sessions, User) == 3


# -- flow sessions ----------------------------------------------------------------------------------------


async def test_start_flow_is_empty_active_and_first_turn(sessions: Sessions) -> None:
    flow = await _start(sessions, USER)
    assert flow.status == "active"
    assert flow.current_key == "profession"
    assert flow.editing is False
    assert flow.draft == ()
    assert flow.answers == {}
    assert flow.turn == 1
    assert await _active(sessions, USER) == flow


async def test_save_flow_round_trips_every_field(sessions: Sessions) -> None:
    flow = await _start(sessions, USER)
    answers: dict[str, repo.AnswerValue] = {"profession": "md", "other_states": ["NY", "TX"]}
    saved = await _save(
        sessions, flow.id, answers, current_key="case_types", editing=True, draft=("wc", "pi"), status="active"
    )
    assert saved.turn == flow.turn + 1
    loaded = await _active(sessions, USER)
    assert loaded is not None
    assert loaded == saved
    assert loaded.id == flow.id
    assert loaded.current_key == "case_types"
    assert loaded.editing is True
    assert loaded.draft == ("wc", "pi")
    assert loaded.answers == {"profession": "md", "other_states": ["NY", "TX"]}
    assert isinstance(loaded.answers["profession"], str)
    assert isinstance(loaded.answers["other_states"], list)


async def test_save_flow_stores_tuples_as_lists_and_changes_values(sessions: Sessions) -> None:
    flow = await _start(sessions, USER)
    await _save(sessions, flow.id, {"other_states": ("NY",), "profession": "md"})  # type: ignore[dict-item]
    loaded = await _active(sessions, USER)
    assert loaded is not None and loaded.answers == {"other_states": ["NY"], "profession": "md"}

    await _save(sessions, flow.id, {"other_states": ["WA", "OR"], "profession": "do"})
    loaded = await _active(sessions, USER)
    assert loaded is not None and loaded.answers == {"other_states": ["WA", "OR"], "profession": "do"}
    assert await _count(sessions, AnswerRow) == 2  # changed in place, not duplicated

    await _save(sessions, flow.id, {"other_states": "none", "profession": ["md"]})  # str <-> list
    loaded = await _active(sessions, USER)
    assert loaded is not None and loaded.answers == {"other_states": "none", "profession": ["md"]}


async def test_save_flow_removes_answers_no_longer_present(sessions: Sessions) -> None:
    flow = await _start(sessions, USER)
    await _save(sessions, flow.id, {"profession": "md", "ca_license": "active", "other_states": ["NY"]})
    assert await _count(sessions, AnswerRow, AnswerRow.session_id == flow.id) == 3

    saved = await _save(sessions, flow.id, {"profession": "md"})
    assert saved.answers == {"profession": "md"}
    assert await _count(sessions, AnswerRow, AnswerRow.session_id == flow.id) == 1
    loaded = await _active(sessions, USER)
    assert loaded is not None and loaded.answers == {"profession": "md"}

    # a removed answer can be given again (the unique (session, question) pair is free)
    await _save(sessions, flow.id, {"profession": "md", "ca_license": "no"})
    loaded = await _active(sessions, USER)
    assert loaded is not None and loaded.answers == {"profession": "md", "ca_license": "no"}

    await _save(sessions, flow.id, {})
    assert await _count(sessions, AnswerRow) == 0


async def test_turn_increments_on_every_save(sessions: Sessions) -> None:
    flow = await _start(sessions, USER)
    turns = [flow.turn]
    for n in range(5):
        # even a save that changes nothing else is a new turn
        saved = await _save(sessions, flow.id, {"profession": "md"} if n % 2 else {})
        turns.append(saved.turn)
    assert turns == list(range(flow.turn, flow.turn + 6))
    loaded = await _active(sessions, USER)
    assert loaded is not None and loaded.turn == turns[-1]


async def test_turn_keeps_growing_across_sessions_of_a_user(sessions: Sessions) -> None:
    first = await _start(sessions, USER)
    for _ in range(3):
        last = await _save(sessions, first.id, {"profession": "md"})
    second = await _start(sessions, USER)
    assert second.id != first.id
    assert second.turn > last.turn
    third = await _start(sessions, USER)
    assert third.turn > second.turn
    # another physician's turns are their own
    other = await _start(sessions, OTHER)
    assert other.turn == 1


async def test_save_flow_completed_sets_status_and_time(sessions: Sessions) -> None:
    flow = await _start(sessions, USER)
    saved = await _save(sessions, flow.id, {"profession": "md"}, current_key=None, status="completed")
    assert saved.status == "completed"
    assert saved.current_key is None
    assert await _active(sessions, USER) is None
    async with sessions() as s:
        row = await s.get(FlowSession, flow.id)
        assert row is not None and row.completed_at is not None
        latest = await repo.latest_flow(s, USER)
        assert latest is not None and latest.id == flow.id and latest.status == "completed"


async def test_save_flow_on_a_missing_session_raises_lookup_error(sessions: Sessions) -> None:
    with pytest.raises(LookupError):
        await _save(sessions, 987654, {"profession": "md"})


async def test_starting_a_new_flow_abandons_the_active_one(sessions: Sessions) -> None:
    first = await _start(sessions, USER)
    await _save(sessions, first.id, {"profession": "md"})
    second = await _start(sessions, USER)
    assert await _statuses(sessions, USER) == ["abandoned", "active"]
    active = await _active(sessions, USER)
    assert active is not None and active.id == second.id and active.answers == {}
    # the abandoned session keeps its answers
    assert await _count(sessions, AnswerRow, AnswerRow.session_id == first.id) == 1

    async with sessions() as s, s.begin():
        await repo.start_flow(s, USER, "profession", replaced_status="cancelled")
    assert await _statuses(sessions, USER) == ["abandoned", "cancelled", "active"]
    assert await _count(sessions, FlowSession, FlowSession.status == "active") == 1


async def test_partial_unique_index_rejects_a_second_active_row(sessions: Sessions) -> None:
    await _start(sessions, USER)
    with pytest.raises(IntegrityError):
        async with sessions() as s, s.begin():
            s.add(FlowSession(user_id=USER, status="active", current_key="profession", draft=[], turn=99))
            await s.flush()
    assert await _statuses(sessions, USER) == ["active"]
    # the index is partial: any number of inactive rows, and one active row for every other user
    async with sessions() as s, s.begin():
        await repo.lock_user(s, OTHER)
        for status in ("abandoned", "cancelled", "completed", "completed"):
            s.add(FlowSession(user_id=USER, status=status, current_key=None, draft=[], turn=0))
        s.add(FlowSession(user_id=OTHER, status="active", current_key=None, draft=[], turn=0))
    assert await _count(sessions, FlowSession) == 6


async def test_close_active(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        await repo.lock_user(s, USER)
        assert await repo.close_active(s, USER, "cancelled") is False
    flow = await _start(sessions, USER)
    async with sessions() as s, s.begin():
        assert await repo.close_active(s, USER, "cancelled") is True
    assert await _active(sessions, USER) is None
    async with sessions() as s, s.begin():
        assert await repo.close_active(s, USER, "cancelled") is False
        latest = await repo.latest_flow(s, USER)
        assert latest is not None and latest.id == flow.id and latest.status == "cancelled"


async def test_close_active_touches_only_that_user(sessions: Sessions) -> None:
    await _start(sessions, USER)
    other = await _start(sessions, OTHER)
    async with sessions() as s, s.begin():
        assert await repo.close_active(s, USER, "abandoned") is True
    still = await _active(sessions, OTHER)
    assert still is not None and still.id == other.id


# -- recommendations --------------------------------------------------------------------------------------


async def test_add_and_latest_recommendation(sessions: Sessions) -> None:
    async with sessions() as s:
        assert await repo.latest_recommendation(s, USER) is None

    first = await _start(sessions, USER)
    details = {"reasons": ["a", "b"], "scores": {"qme": 3, "ime": 1}, "note": None}
    async with sessions() as s, s.begin():
        await repo.add_recommendation(s, first.id, "qme", 3, 1, details)
    async with sessions() as s:
        rec = await repo.latest_recommendation(s, USER)
        assert rec is not None
        assert (rec.session_id, rec.path, rec.qme_score, rec.ime_score) == (first.id, "qme", 3, 1)
        assert rec.details == details
        assert rec.created_at is not None

    second = await _start(sessions, USER)
    async with sessions() as s, s.begin():
        await repo.add_recommendation(s, second.id, "ime", 0, 4, {})
    other = await _start(sessions, OTHER)
    async with sessions() as s, s.begin():
        await repo.add_recommendation(s, other.id, "hybrid", 2, 2, {})

    async with sessions() as s:
        rec = await repo.latest_recommendation(s, USER)
        assert rec is not None and (rec.session_id, rec.path) == (second.id, "ime")
        rec = await repo.latest_recommendation(s, OTHER)
        assert rec is not None and rec.path == "hybrid"
        assert await repo.latest_recommendation(s, 31337) is None
        assert [await repo.latest_path(s, u) for u in (USER, OTHER, 31337)] == ["ime", "hybrid", None]
    assert await _count(sessions, RecommendationRow) == 3


async def test_two_recommendations_on_one_session_latest_wins(sessions: Sessions) -> None:
    flow = await _start(sessions, USER)
    async with sessions() as s, s.begin():
        await repo.add_recommendation(s, flow.id, "qme", 1, 0, {})
    async with sessions() as s, s.begin():
        await repo.add_recommendation(s, flow.id, "not_yet", 0, 0, {"why": "changed an answer"})
    async with sessions() as s:
        rec = await repo.latest_recommendation(s, USER)
        assert rec is not None and rec.path == "not_yet" and rec.details == {"why": "changed an answer"}
        assert await repo.latest_path(s, USER) == "not_yet"


# -- erasure ----------------------------------------------------------------------------------------------


async def test_delete_user_removes_only_that_users_rows(sessions: Sessions) -> None:
    mine = await _start(sessions, USER)
    await _save(sessions, mine.id, {"profession": "md", "other_states": ["NY"]})
    theirs = await _start(sessions, OTHER)
    await _save(sessions, theirs.id, {"profession": "do"})
    async with sessions() as s, s.begin():
        await repo.add_recommendation(s, mine.id, "qme", 1, 0, {})
        await repo.add_recommendation(s, theirs.id, "ime", 0, 1, {})
    async with sessions() as s, s.begin():
        removed = await repo.delete_user(s, USER)
    assert removed == 2 + 1 + 1 + 1  # answers, recommendation, session, user
    async with sessions() as s:
        assert await repo.get_user(s, USER) is None
        assert await repo.active_flow(s, USER) is None
        assert await repo.latest_recommendation(s, USER) is None
        kept = await repo.active_flow(s, OTHER)
        assert kept is not None and kept.answers == {"profession": "do"}
    assert await _count(sessions, AnswerRow) == 1
    assert await _count(sessions, RecommendationRow) == 1


async def test_a_tap_that_waited_for_the_physicians_lock_reads_the_session_as_the_other_left_it(
    sessions: Sessions,
) -> None:
    """Two processes handling taps of one physician: the second waits for the first's lock, then must read the
    session as the first committed it (not as it was when the second asked), or one answer is applied twice."""
    await _start(sessions, USER)

    async def second_tap() -> repo.StoredFlow | None:
        async with sessions() as s, s.begin():
            return await repo.lock_flow(s, USER)

    async with sessions() as s, s.begin():
        locked = await repo.lock_flow(s, USER)
        assert locked is not None
        waiting = asyncio.create_task(second_tap())
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the second tap waits for the physician's lock"
        await repo.save_flow(s, locked, current_key="ca_license", editing=False, draft=(), answers={"profession": "md"})
    seen = await asyncio.wait_for(waiting, 10)
    assert seen is not None
    assert (seen.answers, seen.turn, seen.current_key) == ({"profession": "md"}, locked.turn + 1, "ca_license")
