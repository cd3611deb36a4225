"""Broadcast audiences on SQLite and PostgreSQL: active subscribers, narrowed by their latest completed flow."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import outbox, sources
from db import repository as repo
from db.audience import parse_audience, recipients, specialty_counts

Sessions = async_sessionmaker[AsyncSession]


async def physician(
    session: AsyncSession,
    user_id: int,
    *,
    path: str | None = None,
    answers: dict[str, Any] | None = None,
    subscribed: bool = True,
) -> None:
    """A user who completed the flow with these answers and this recommendation (none: never completed it)."""
    await repo.lock_user(session, user_id)
    if path is not None:
        flow = await repo.start_flow(session, user_id, None)
        await repo.save_flow(
            session, flow.id, current_key=None, editing=False, draft=(), answers=answers or {}, status="completed"
        )
        await repo.add_recommendation(session, flow.id, path, 0, 0, {})
    if subscribed:
        await outbox.set_subscribed(session, user_id, True)


async def community(sessions: Sessions) -> None:
    """Six physicians covering the rules: latest flow counts, flows in progress don't, unsubscribed never."""
    async with sessions() as s, s.begin():
        await physician(s, 1, path="qme", answers={"ca_license": "active", "specialty": "ortho"})
        await physician(s, 2, path="hybrid", answers={"ca_license": "willing", "specialty": "pmr"})
        await physician(s, 3, path="qme", answers={"ca_license": "active", "specialty": "ortho"})
        await physician(s, 3, path="ime", answers={"ca_license": "no", "specialty": "psychiatry"})  # redone
        await physician(s, 4, path="qme", answers={"ca_license": "active", "specialty": "ortho"})
        flow = await repo.start_flow(s, 4, "ca_license")  # a new pass in progress: not counted until completed
        answers = {"ca_license": "no", "specialty": "derm"}
        await repo.save_flow(s, flow.id, current_key="x", editing=False, draft=(), answers=answers)
        await physician(s, 5, path="qme", answers={"ca_license": "active", "specialty": "ortho"}, subscribed=False)
        await physician(s, 6)  # subscribed, never finished the flow
        await physician(s, 7, path="hybrid", answers={"ca_license": "active", "specialty": "pmr"})
        await outbox.set_subscribed(s, 7, False)  # stopped reminders


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        ("all", [1, 2, 3, 4, 6]),
        ("qme", [1, 4]),
        ("hybrid", [2]),
        ("ca", [1, 4]),
        ("specialty:ortho", [1, 4]),
        ("specialty:pmr", [2]),
        ("specialty:psychiatry", [3]),
        ("specialty:derm", []),
        ("specialty:nephro", []),
        (" QME ", [1, 4]),
    ],
)
async def test_recipients(sessions: Sessions, audience: str, expected: list[int]) -> None:
    await community(sessions)
    async with sessions() as s:
        assert await recipients(s, audience) == expected


async def test_specialty_counts_count_active_subscribers_by_latest_flow(sessions: Sessions) -> None:
    await community(sessions)
    async with sessions() as s:
        assert await specialty_counts(s) == {"ortho": 2, "pmr": 1, "psychiatry": 1}


async def test_nobody_subscribed(sessions: Sessions) -> None:
    async with sessions() as s:
        assert await recipients(s, "all") == []
        assert await specialty_counts(s) == {}


async def test_source_is_the_start_link_the_subscriber_arrived_through(sessions: Sessions) -> None:
    await community(sessions)
    async with sessions() as s, s.begin():
        await sources.add_source(s, "ortho_club", "Ortho Club", date(2026, 11, 29))
        await sources.add_source(s, "pain_forum", "Pain Forum", date(2026, 11, 29))
        for user_id, code in [(1, "ortho_club"), (3, "ortho_club"), (5, "ortho_club"), (2, "pain_forum")]:
            assert await sources.attribute(s, user_id, code, date(2026, 11, 29))
    async with sessions() as s:
        assert await recipients(s, "source:ortho_club") == [1, 3]  # 5 is not subscribed
        assert await recipients(s, "source:pain_forum") == [2]
        assert await recipients(s, "source:no_such_link") == []


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("all", "all"),
        ("QME", "qme"),
        (" hybrid", "hybrid"),
        ("ca", "ca"),
        ("specialty:ortho", "specialty:ortho"),
        ("source:Ortho_Club", "source:ortho_club"),
    ],
)
def test_parse_audience(text: str, stored: str) -> None:
    assert parse_audience(text) == stored


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("everyone", "'everyone' is not an audience; use all, qme, hybrid, ca, specialty:KEY or source:CODE"),
        ("", "'' is not an audience"),
        ("specialty:", "'specialty:' is not an audience: a specialty key is letters, digits and _"),
        ("specialty:a b", "a specialty key is letters, digits and _"),
        ("ime", "'ime' is not an audience"),
        ("source:a b", "'source:a b' is not an audience: a source key is letters, digits and _"),
    ],
)
def test_parse_audience_rejects(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_audience(text)
    assert says in str(info.value)
