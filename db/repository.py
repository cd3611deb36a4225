"""Small repository functions over an `AsyncSession`; callers own the transaction.

The functions speak in plain values (answer dicts, option keys) so that `db` does not depend on `flows`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AnswerRow, FlowSession, RecommendationRow, User, utcnow

AnswerValue = str | list[str]


@dataclass(frozen=True)
class StoredFlow:
    """A flow session as the dialogue layer needs it."""

    id: int
    status: str
    current_key: str | None
    editing: bool
    draft: tuple[str, ...]
    turn: int
    answers: dict[str, AnswerValue]


async def lock_user(session: AsyncSession, user_id: int) -> User:
    """Create the user if new, then lock its row so one physician's updates apply one at a time.

    On PostgreSQL this is a row lock held until the transaction ends, which serialises updates for the
    same physician across bot processes; SQLite serialises writers by itself.
    """
    dialect = session.get_bind().dialect.name
    ins = pg_insert(User) if dialect == "postgresql" else sqlite_insert(User)
    now = utcnow()
    await session.execute(ins.values(id=user_id, created_at=now, updated_at=now).on_conflict_do_nothing())
    user = (await session.execute(select(User).where(User.id == user_id).with_for_update())).scalar_one()
    return user


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


def _stored(row: FlowSession) -> StoredFlow:
    return StoredFlow(
        id=row.id,
        status=row.status,
        current_key=row.current_key,
        editing=row.editing,
        draft=tuple(row.draft or ()),
        turn=row.turn,
        answers={a.question_key: a.value for a in row.answers},
    )


async def active_flow(session: AsyncSession, user_id: int) -> StoredFlow | None:
    row = await _active_row(session, user_id)
    return None if row is None else _stored(row)


async def latest_flow(session: AsyncSession, user_id: int) -> StoredFlow | None:
    """The most recent session of any status (for "welcome back" and the recommendation on /start)."""
    stmt = select(FlowSession).where(FlowSession.user_id == user_id).order_by(FlowSession.id.desc()).limit(1)
    row = (await session.execute(stmt)).scalar_one_or_none()
    return None if row is None else _stored(row)


async def _active_row(session: AsyncSession, user_id: int) -> FlowSession | None:
    stmt = select(FlowSession).where(FlowSession.user_id == user_id, FlowSession.status == "active")
    return (await session.execute(stmt)).scalar_one_or_none()


async def start_flow(
    session: AsyncSession, user_id: int, current_key: str | None, *, replaced_status: str = "abandoned"
) -> StoredFlow:
    """Open a new session; an active one is closed first with `replaced_status`."""
    await close_active(session, user_id, replaced_status)
    previous_turn = await _last_turn(session, user_id)
    row = FlowSession(
        user_id=user_id, status="active", current_key=current_key, editing=False, draft=[], turn=previous_turn + 1
    )
    session.add(row)
    await session.flush()
    await session.refresh(row, ["answers"])
    return _stored(row)


async def _last_turn(session: AsyncSession, user_id: int) -> int:
    """Turns keep growing across a user's sessions, so a button from an old session never matches a new one."""
    stmt = select(FlowSession.turn).where(FlowSession.user_id == user_id).order_by(FlowSession.turn.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none() or 0


async def close_active(session: AsyncSession, user_id: int, status: str) -> bool:
    result = await session.execute(
        update(FlowSession)
        .where(FlowSession.user_id == user_id, FlowSession.status == "active")
        .values(status=status, updated_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


async def save_flow(
    session: AsyncSession,
    flow_id: int,
    *,
    current_key: str | None,
    editing: bool,
    draft: tuple[str, ...],
    answers: Mapping[str, AnswerValue],
    status: str = "active",
) -> StoredFlow:
    """Write the new position and answers, bumping the turn; answers no longer given are removed."""
    row = await session.get(FlowSession, flow_id, with_for_update=True)
    if row is None:
        raise LookupError(f"flow session {flow_id} is gone")
    row.current_key = current_key
    row.editing = editing
    row.draft = list(draft)
    row.turn += 1
    row.status = status
    if status == "completed":
        row.completed_at = utcnow()
    existing = {a.question_key: a for a in row.answers}
    for key, answer in list(existing.items()):
        if key not in answers:
            row.answers.remove(answer)
    for key, value in answers.items():
        stored = list(value) if isinstance(value, list | tuple) else value
        if key in existing:
            if existing[key].value != stored:
                existing[key].value = stored
        else:
            row.answers.append(AnswerRow(question_key=key, value=stored))
    await session.flush()
    return _stored(row)


async def add_recommendation(
    session: AsyncSession, flow_id: int, path: str, qme_score: int, ime_score: int, details: dict[str, Any]
) -> None:
    session.add(
        RecommendationRow(session_id=flow_id, path=path, qme_score=qme_score, ime_score=ime_score, details=details)
    )
    await session.flush()


async def latest_recommendation(session: AsyncSession, user_id: int) -> RecommendationRow | None:
    stmt = (
        select(RecommendationRow)
        .join(FlowSession, RecommendationRow.session_id == FlowSession.id)
        .where(FlowSession.user_id == user_id)
        .order_by(RecommendationRow.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_user(session: AsyncSession, user_id: int) -> int:
    """Erase every row about the user, child tables first so it holds even without foreign-key cascades."""
    session_ids = select(FlowSession.id).where(FlowSession.user_id == user_id).scalar_subquery()
    removed = 0
    for stmt in (
        delete(AnswerRow).where(AnswerRow.session_id.in_(session_ids)),
        delete(RecommendationRow).where(RecommendationRow.session_id.in_(session_ids)),
        delete(FlowSession).where(FlowSession.user_id == user_id),
        delete(User).where(User.id == user_id),
    ):
        result = await session.execute(stmt, execution_options={"synchronize_session": False})
        removed += getattr(result, "rowcount", 0) or 0
    session.expunge_all()
    return removed
