"""Polls, answers, daily snapshots, start links and the export's rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import outbox, sources
from db import polls as store
from db import repository as repo
from db.audience import parse_audience, recipients
from db.models import PollVote, UserSource

Sessions = async_sessionmaker[AsyncSession]
DAY = date(2026, 11, 29)
OPTIONS = [("a", "Alpha"), ("b", "Beta"), ("c", "Gamma")]


async def _poll(sessions: Sessions, key: str = "test_poll", choice: str = "single") -> int:
    async with sessions() as s, s.begin():
        row = await store.add_poll(s, key=key, question="Which one?", options=OPTIONS, choice=choice)
        assert row is not None
        return row.id


async def _vote(sessions: Sessions, poll_id: int, user_id: int, keys: list[str], day: date = DAY) -> None:
    async with sessions() as s, s.begin():
        await repo.lock_user(s, user_id)
        await store.set_answer(s, poll_id, user_id, keys, day)


async def test_the_migration_seeds_the_polls_and_keys_are_unique(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        seeded = [r.key for r in await store.list_polls(s)]
        assert seeded == ["ime_barriers", "ime_fee", "ime_case_types", "ime_qme_now"]
        assert await store.add_poll(s, key="ime_fee", question="Again?", options=OPTIONS) is None
        assert await store.close_poll(s, "ime_fee")
        assert not await store.close_poll(s, "ime_fee")
        assert not await store.close_poll(s, "nope")
        fee = await store.poll_by_key(s, "ime_fee")
        assert fee is not None and fee.status == "closed"


async def test_answers_are_replaced_and_keep_the_day_only(sessions: Sessions) -> None:
    poll_id = await _poll(sessions, choice="multiple")
    await _vote(sessions, poll_id, 1, ["a", "b"])
    await _vote(sessions, poll_id, 1, ["c", "c"], DAY + timedelta(days=2))
    await _vote(sessions, poll_id, 2, ["a"])
    async with sessions() as s:
        assert await store.choices(s, poll_id, 1) == ("c",)
        assert await store.answered_polls(s, 1) == {poll_id}
        assert await store.answered_polls(s, 3) == set()
        assert await store.live_counts(s, poll_id) == ({"a": 1, "c": 1}, 2)
        days = (await s.execute(select(PollVote.answered_on).where(PollVote.user_id == 1))).scalars().all()
        assert days == [DAY + timedelta(days=2)]
        assert type(days[0]) is date


async def test_snapshot_is_taken_once_a_day(sessions: Sessions) -> None:
    poll_id = await _poll(sessions)
    for user_id in range(1, 6):
        await _vote(sessions, poll_id, user_id, ["a"])
    async with sessions() as s, s.begin():
        first = await store.snapshot(s, poll_id, DAY)
    assert (first.taken_on, first.respondents, first.counts) == (DAY, 5, {"a": 5})

    await _vote(sessions, poll_id, 6, ["b"])
    await _vote(sessions, poll_id, 1, ["c"])
    async with sessions() as s, s.begin():
        assert await store.snapshot(s, poll_id, DAY) == first  # the same day: the same figures
        # a process whose clock is a day behind never replaces a newer snapshot
        later = await store.snapshot(s, poll_id, DAY + timedelta(days=1))
        assert (later.respondents, later.counts) == (6, {"a": 4, "b": 1, "c": 1})
        assert await store.snapshot(s, poll_id, DAY) == later


async def test_sources_first_link_wins_and_counts(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        ortho = await sources.add_source(s, "ortho", "Ortho Society", DAY)
        await sources.add_source(s, "pain", "Pain Forum", DAY)
        assert await sources.source_by_name(s, "ORTHO society") == ortho
        assert await sources.source_codes(s) == {"ortho", "pain"}
        for user_id in (1, 2, 3):
            await repo.lock_user(s, user_id)
        assert await sources.attribute(s, 1, "ortho", DAY)
        assert await sources.attribute(s, 2, "ortho", DAY)
        assert not await sources.attribute(s, 1, "pain", DAY)  # the first link wins
        assert not await sources.attribute(s, 3, "unknown", DAY)
        assert await sources.source_of(s, 1) == "ortho"
        assert await sources.source_of(s, 3) is None
        flow = await repo.start_flow(s, 1, None)
        await repo.save_flow(s, flow.id, current_key=None, editing=False, draft=(), answers={}, status="completed")
        await repo.start_flow(s, 2, "license")  # started, not finished
        stats = {x.code: (x.started, x.finished) for x in await sources.source_stats(s)}
        assert stats == {"ortho": (2, 1), "pain": (0, 0)}


async def test_source_audience(sessions: Sessions) -> None:
    assert parse_audience("source:Ortho") == "source:ortho"
    async with sessions() as s, s.begin():
        await sources.add_source(s, "ortho", "Ortho Society", DAY)
        for user_id in (1, 2, 3):
            await repo.lock_user(s, user_id)
            await outbox.set_subscribed(s, user_id, user_id != 2)
        await sources.attribute(s, 1, "ortho", DAY)
        await sources.attribute(s, 2, "ortho", DAY)  # arrived through it but unsubscribed
        assert await recipients(s, "source:ortho") == [1]
        assert await recipients(s, "source:nobody_here") == []


async def test_poll_responses_for_the_export(sessions: Sessions) -> None:
    single = await _poll(sessions, "zeta")
    multi = await _poll(sessions, "alpha", "multiple")
    telegram_ids = [987654321, 123456789]
    async with sessions() as s, s.begin():
        await sources.add_source(s, "ortho", "Ortho Society", DAY)
        await repo.lock_user(s, telegram_ids[0])
        await sources.attribute(s, telegram_ids[0], "ortho", DAY)
    await _vote(sessions, single, telegram_ids[0], ["b"])
    await _vote(sessions, multi, telegram_ids[0], ["c", "a"])
    await _vote(sessions, multi, telegram_ids[1], ["b"], DAY + timedelta(days=1))
    async with sessions() as s, s.begin():  # the second physician finished the flow: their profile comes along
        flow = await repo.start_flow(s, telegram_ids[1], None)
        answers: dict[str, str | list[str]] = {"specialty": "ortho", "other_states": ["TX"]}
        await repo.save_flow(s, flow.id, current_key=None, editing=False, draft=(), answers=answers, status="completed")
    async with sessions() as s:
        rows = await store.poll_responses(s)
        assert await sources.links(s) == [("ortho", "Ortho Society")]
        assert await sources.attributions(s) == {telegram_ids[0]: ("ortho", DAY)}
    assert {(r.poll, r.multi, r.profile is None) for r in rows} == {("alpha", True, True), ("zeta", False, True)} | {
        ("alpha", True, False)
    }
    assert next(r.profile for r in rows if r.profile is not None) == answers
    assert {(r.poll, r.chosen, r.answered_on, r.source) for r in rows} == {
        ("alpha", ("a", "c"), DAY, "ortho"),  # chosen keys in the poll's order
        ("alpha", ("b",), DAY + timedelta(days=1), None),
        ("zeta", ("b",), DAY, "ortho"),
    }
    assert rows == sorted(rows, key=lambda r: (r.poll, r.respondent))
    assert all(r.options == tuple(OPTIONS) and r.question == "Which one?" for r in rows)
    numbers = {r.respondent for r in rows}
    assert numbers == {1, 2}  # opaque, small, never the Telegram ids
    by_user = {(r.poll, r.chosen): r.respondent for r in rows}
    assert by_user[("alpha", ("a", "c"))] == by_user[("zeta", ("b",))]  # one physician, one number across polls
    assert not any(str(t) in repr(rows) for t in telegram_ids)


async def test_delete_user_erases_answers_and_source(sessions: Sessions) -> None:
    poll_id = await _poll(sessions)
    async with sessions() as s, s.begin():
        await sources.add_source(s, "ortho", "Ortho Society", DAY)
        for user_id in (1, 2):
            await repo.lock_user(s, user_id)
            await sources.attribute(s, user_id, "ortho", DAY)
    await _vote(sessions, poll_id, 1, ["a"])
    await _vote(sessions, poll_id, 2, ["b"])
    async with sessions() as s, s.begin():
        await repo.delete_user(s, 1)
    async with sessions() as s:
        assert (await s.execute(select(PollVote.user_id))).scalars().all() == [2]
        assert (await s.execute(select(UserSource.user_id))).scalars().all() == [2]
        assert await store.live_counts(s, poll_id) == ({"b": 1}, 1)
