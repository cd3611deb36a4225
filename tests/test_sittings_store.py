"""The exam calendar in the database, on SQLite and PostgreSQL: the migration's seed, the repository functions,
the check constraints, and the pending admin actions (erased with the admin by /delete_me)."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import migrate
from db import repository as repo
from db.models import AdminAction, ExamSitting
from flows.sittings import Sitting

Sessions = async_sessionmaker[AsyncSession]
SEED = Path(__file__).resolve().parents[1] / "flows" / "data" / "sittings.toml"


def _seed_file() -> list[Sitting]:
    with SEED.open("rb") as fh:
        rows = tomllib.load(fh)["sittings"]
    return [
        Sitting(r["first_day"], r["last_day"], r.get("deadline"), r.get("note", ""), r.get("source", "")) for r in rows
    ]


def _value(row: ExamSitting) -> Sitting:
    return Sitting(row.first_day, row.last_day, row.deadline, row.note, row.source, row.id)


async def _all(sessions: Sessions) -> list[Sitting]:
    async with sessions() as s:
        return [_value(row) for row in await repo.list_sittings(s)]


async def test_the_migration_seeds_the_data_file(sessions: Sessions) -> None:
    stored = await _all(sessions)
    assert stored, "the seed is empty"
    assert [s.id for s in stored] == sorted(s.id for s in stored if s.id is not None)
    seeded = sorted(_seed_file(), key=lambda s: (s.first_day, s.last_day))
    assert [replace(s, id=None) for s in stored] == seeded


async def test_seed_is_applied_again_after_downgrade_and_upgrade(engine: AsyncEngine, sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        await repo.add_sitting(s, first_day=date(2031, 4, 5), last_day=date(2031, 4, 11))
    await migrate.downgrade(engine, "0001_initial")
    await migrate.upgrade(engine)
    assert len(await _all(sessions)) == len(_seed_file())


async def test_add_list_get_update_remove(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        later = await repo.add_sitting(s, first_day=date(2031, 10, 4), last_day=date(2031, 10, 10))
        earlier = await repo.add_sitting(
            s,
            first_day=date(2031, 4, 5),
            last_day=date(2031, 4, 11),
            deadline=date(2031, 2, 19),
            note="Pearson VUE",
            source="https://www.dir.ca.gov/",
        )
        assert later.note == "" and later.source == "" and later.deadline is None
        assert later.created_at is not None and later.updated_at is not None
    ids = (earlier.id, later.id)

    listed = await _all(sessions)
    assert [s.id for s in listed[-2:]] == [earlier.id, later.id]  # ordered by first day, not by id
    assert all(a.first_day <= b.first_day for a, b in pairwise(listed))

    async with sessions() as s, s.begin():
        row = await repo.get_sitting(s, ids[0])
        assert row is not None and _value(row).note == "Pearson VUE"
        stamp = row.updated_at
        updated = await repo.update_sitting(s, ids[0], deadline=None, note="moved")
        assert updated is not None and updated.deadline is None and updated.note == "moved"
        assert updated.updated_at.replace(tzinfo=None) >= stamp.replace(tzinfo=None)  # SQLite reads naive
        assert await repo.update_sitting(s, 999_999, note="x") is None
        with pytest.raises(TypeError):
            await repo.update_sitting(s, ids[0], colour="red")

    async with sessions() as s, s.begin():
        assert await repo.remove_sitting(s, ids[1]) is True
        assert await repo.remove_sitting(s, ids[1]) is False
        assert await repo.get_sitting(s, ids[1]) is None
    assert ids[1] not in {s.id for s in await _all(sessions)}


@pytest.mark.parametrize(
    ("first", "last", "deadline"),
    [
        (date(2031, 4, 11), date(2031, 4, 5), None),  # last before first
        (date(2031, 4, 5), date(2031, 4, 11), date(2031, 4, 5)),  # deadline on the first day
        (date(2031, 4, 5), date(2031, 4, 11), date(2031, 5, 1)),  # deadline after the window opens
    ],
    ids=["last-before-first", "deadline-on-first-day", "deadline-after"],
)
async def test_check_constraints_reject_bad_rows(sessions: Sessions, first: date, last: date, deadline: date) -> None:
    before = await _all(sessions)
    with pytest.raises(IntegrityError):
        async with sessions() as s, s.begin():
            await repo.add_sitting(s, first_day=first, last_day=last, deadline=deadline)
    assert await _all(sessions) == before


async def test_update_cannot_break_the_constraints(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        row = await repo.add_sitting(s, first_day=date(2031, 4, 5), last_day=date(2031, 4, 11))
    with pytest.raises(IntegrityError):
        async with sessions() as s, s.begin():
            await repo.update_sitting(s, row.id, last_day=date(2031, 4, 1))


async def test_admin_actions_are_taken_once_and_expire(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        await repo.lock_user(s, 7)
        first = await repo.add_admin_action(s, 7, "add", {"after": {"note": "x"}})
        second = await repo.add_admin_action(s, 7, "remove", {"before": {"id": 1}})

    async with sessions() as s, s.begin():
        action = await repo.get_admin_action(s, first)
        assert action is not None and action.user_id == 7 and action.kind == "add"
        assert action.payload == {"after": {"note": "x"}}
        assert action.created_at.tzinfo is not None  # aware on both backends
        assert abs(datetime.now(UTC) - action.created_at) < timedelta(minutes=1)
        assert await repo.take_admin_action(s, first) is True
        assert await repo.take_admin_action(s, first) is False
        assert await repo.get_admin_action(s, first) is None

    async with sessions() as s, s.begin():
        await s.execute(
            text("UPDATE admin_actions SET created_at = :old WHERE id = :id"),
            {"old": datetime.now(UTC) - timedelta(hours=2), "id": second},
        )
    async with sessions() as s, s.begin():
        assert await repo.drop_admin_actions_before(s, datetime.now(UTC) - timedelta(hours=1)) == 1
        assert await repo.get_admin_action(s, second) is None


async def test_delete_user_erases_their_pending_admin_actions(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        for user_id in (7, 8):
            await repo.lock_user(s, user_id)
            await repo.add_admin_action(s, user_id, "add", {})
    async with sessions() as s, s.begin():
        await repo.delete_user(s, 7)
    async with sessions() as s:
        owners = (await s.execute(select(AdminAction.user_id))).scalars().all()
        assert owners == [8]
        assert (await s.execute(select(func.count()).select_from(ExamSitting))).scalar_one() == len(_seed_file())
