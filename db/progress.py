"""Repository functions for the progress tracker: ticked steps, the weekly-nudge opt-in, and the funnel's inputs.

Callers own the transaction, as in `db.repository`. Step keys are plain strings here (db does not read flows).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import run_core
from db.models import OutboxMessage, ProgressNudge, ProgressStep, utcnow
from db.outbox import PENDING, SKIPPED, as_utc

NUDGE_KIND = "nudge"
"""The outbox kind of weekly nudges (reminders are "reminder", broadcasts "broadcast")."""


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


DONE_STEPS = select(ProgressStep.step_key, ProgressStep.done_on).where(ProgressStep.user_id == bindparam("user_id"))


async def done_steps(session: AsyncSession, user_id: int) -> dict[str, date]:
    """The steps the user ticked, with the day each was ticked (every roadmap reads them)."""
    rows = (await run_core(session, DONE_STEPS, {"user_id": user_id})).all()
    return {row.step_key: row.done_on for row in rows}


async def set_step(session: AsyncSession, user_id: int, step_key: str, done: bool, on: date) -> bool:
    """Tick (keeping the first day it was ticked) or untick a step; returns whether anything changed.

    The user row must exist (the caller has locked it).
    """
    if done:
        stmt = (
            _insert(session)(ProgressStep)
            .values(user_id=user_id, step_key=step_key, done_on=on, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["user_id", "step_key"])
        )
    else:
        stmt = delete(ProgressStep).where(ProgressStep.user_id == user_id, ProgressStep.step_key == step_key)
    result = await session.execute(stmt, execution_options={"synchronize_session": False})
    return bool(getattr(result, "rowcount", 0))


# -- the weekly nudge -------------------------------------------------------------------------------------


async def nudges_on(session: AsyncSession, user_id: int) -> bool:
    stmt = select(ProgressNudge.active).where(ProgressNudge.user_id == user_id)
    return bool((await session.execute(stmt)).scalar_one_or_none())


async def set_nudges(session: AsyncSession, user_id: int, active: bool, now: datetime) -> None:
    """Turn the weekly nudge on (the week restarts from `now`) or off (a nudge still queued is skipped)."""
    at = as_utc(now).replace(microsecond=0)
    values: dict[str, Any] = {"active": active, "updated_at": at}
    if active:
        values["since"] = at
    stmt = _insert(session)(ProgressNudge).values({"user_id": user_id, "since": at, "created_at": at} | values)
    stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_=values)
    await session.execute(stmt)
    if not active:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.user_id == user_id, OutboxMessage.kind == NUDGE_KIND, OutboxMessage.status == PENDING)
            .values(status=SKIPPED, error="nudges turned off", lease_until=None, updated_at=at),
            execution_options={"synchronize_session": False},
        )


async def nudge_anchors(session: AsyncSession) -> dict[int, datetime]:
    """For each user with nudges on: the later of when they turned them on and their last nudge queued (any state).

    The next nudge is due a week after it, so the schedule is read from the database on every pass.
    """
    last = (
        select(OutboxMessage.user_id, func.max(OutboxMessage.not_before).label("last"))
        .where(OutboxMessage.kind == NUDGE_KIND)
        .group_by(OutboxMessage.user_id)
        .subquery()
    )
    stmt = (
        select(ProgressNudge.user_id, ProgressNudge.since, last.c.last)
        .outerjoin(last, last.c.user_id == ProgressNudge.user_id)
        .where(ProgressNudge.active.is_(True))
        .order_by(ProgressNudge.user_id)
    )
    anchors: dict[int, datetime] = {}
    for user_id, since, sent in (await session.execute(stmt)).all():
        anchors[user_id] = max(as_utc(since), as_utc(sent)) if sent is not None else as_utc(since)
    return anchors


async def nudges_off(session: AsyncSession, user_ids: Collection[int]) -> set[int]:
    """Those of `user_ids` whose nudges are not on (turned off, never on, or the user erased their data)."""
    if not user_ids:
        return set()
    stmt = select(ProgressNudge.user_id).where(
        ProgressNudge.user_id.in_(list(user_ids)), ProgressNudge.active.is_(True)
    )
    return set(user_ids) - set((await session.execute(stmt)).scalars())


async def stop_nudges_after_block(session: AsyncSession, user_id: int) -> None:
    """The user blocked the bot or the chat is gone: no more nudges either."""
    await session.execute(
        update(ProgressNudge).where(ProgressNudge.user_id == user_id).values(active=False, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )


# -- the funnel -------------------------------------------------------------------------------------------


async def ticked_by_user(session: AsyncSession) -> dict[int, frozenset[str]]:
    """user id -> the steps they ticked, for the export's funnel polls (joined to completed flows, never shown)."""
    ticked: dict[int, set[str]] = {}
    for user_id, key in (await session.execute(select(ProgressStep.user_id, ProgressStep.step_key))).all():
        ticked.setdefault(user_id, set()).add(key)
    return {user_id: frozenset(keys) for user_id, keys in ticked.items()}
