"""Small repository functions over an `AsyncSession`; callers own the transaction.

The functions speak in plain values (answer dicts, option keys) so that `db` does not depend on `flows`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from db.models import (
    AdminAction,
    AnswerRow,
    Broadcast,
    ExamSitting,
    FlowSession,
    OutboxMessage,
    PollVote,
    ProgressNudge,
    ProgressStep,
    RecommendationRow,
    Subscription,
    User,
    UserSource,
    utcnow,
)

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
    moved_by_update: int | None = None
    moved_at: datetime | None = field(default=None, compare=False)
    """When the flow last changed (aware UTC): `moved_by_update` is compared only with recent updates."""


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes that are UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


async def lock_user(session: AsyncSession, user_id: int) -> User:
    """Create the user if new, then lock its row so one physician's updates apply one at a time.

    On PostgreSQL this is a row lock held until the transaction ends, which serialises updates for the
    same physician across bot processes; a known user costs that one statement, the insert only runs for a new
    one. SQLite serialises writers by itself: there the insert goes first, so that the transaction holds the
    write lock from its start and never has to upgrade a read snapshot (which would fail, not wait).
    """
    locked = select(User).where(User.id == user_id).with_for_update()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        user = (await session.execute(locked)).scalar_one_or_none()
        if user is not None:
            return user
    ins = pg_insert(User) if dialect == "postgresql" else sqlite_insert(User)
    now = utcnow()
    await session.execute(ins.values(id=user_id, created_at=now, updated_at=now).on_conflict_do_nothing())
    return (await session.execute(locked)).scalar_one()


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
        moved_by_update=row.moved_by_update,
        moved_at=_utc(row.updated_at),
    )


def _keep(session: AsyncSession, row: FlowSession) -> StoredFlow:
    """The row as a StoredFlow, kept by the session: its identity map holds rows only weakly, and `save_flow`
    later in the same transaction then finds the row and its answers there instead of loading them again."""
    session.info.setdefault("medlegal_flows", {})[row.id] = row
    return _stored(row)


async def active_flow(session: AsyncSession, user_id: int) -> StoredFlow | None:
    row = await _active_row(session, user_id)
    return None if row is None else _keep(session, row)


async def latest_flow(session: AsyncSession, user_id: int) -> StoredFlow | None:
    """The most recent session of any status (for "welcome back" and the recommendation on /start)."""
    stmt = select(FlowSession).where(FlowSession.user_id == user_id).order_by(FlowSession.id.desc()).limit(1)
    row = (await session.execute(stmt)).scalar_one_or_none()
    return None if row is None else _keep(session, row)


async def _active_row(session: AsyncSession, user_id: int) -> FlowSession | None:
    """The active session with its answers in one query (a join, not a second round trip)."""
    stmt = (
        select(FlowSession)
        .where(FlowSession.user_id == user_id, FlowSession.status == "active")
        .options(joinedload(FlowSession.answers))
    )
    return (await session.execute(stmt)).unique().scalar_one_or_none()


async def start_flow(
    session: AsyncSession,
    user_id: int,
    current_key: str | None,
    *,
    replaced_status: str = "abandoned",
    update_id: int | None = None,
) -> StoredFlow:
    """Open a new session; an active one is closed first with `replaced_status`. `update_id`: the Telegram update
    that asked for it."""
    await close_active(session, user_id, replaced_status)
    previous_turn = await _last_turn(session, user_id)
    row = FlowSession(
        user_id=user_id,
        status="active",
        current_key=current_key,
        editing=False,
        draft=[],
        turn=previous_turn + 1,
        moved_by_update=update_id,
        answers=[],  # known to be empty: no query to load them
    )
    session.add(row)
    await session.flush()
    return _keep(session, row)


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
    update_id: int | None = None,
) -> StoredFlow:
    """Write the new position and answers, bumping the turn; answers no longer given are removed. `update_id`: the
    Telegram update that made the change (None from the console).

    The caller holds the physician's lock (`lock_user`), which serialises their changes; the row it loaded in this
    transaction comes from the session's identity map with its answers, so only the changes go to the database.
    """
    row = await session.get(FlowSession, flow_id)
    if row is None:
        raise LookupError(f"flow session {flow_id} is gone")
    row.current_key = current_key
    row.editing = editing
    row.draft = list(draft)
    row.turn += 1
    row.moved_by_update = update_id
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
    """Erase every row about the user, child tables first so it holds even without foreign-key cascades.

    Broadcasts the user sent as an admin stay (their recipients' records need them) but forget who sent them.
    """
    session_ids = select(FlowSession.id).where(FlowSession.user_id == user_id).scalar_subquery()
    await session.execute(
        update(Broadcast).where(Broadcast.created_by == user_id).values(created_by=None),
        execution_options={"synchronize_session": False},
    )
    removed = 0
    for stmt in (
        delete(AnswerRow).where(AnswerRow.session_id.in_(session_ids)),
        delete(RecommendationRow).where(RecommendationRow.session_id.in_(session_ids)),
        delete(FlowSession).where(FlowSession.user_id == user_id),
        delete(AdminAction).where(AdminAction.user_id == user_id),
        delete(OutboxMessage).where(OutboxMessage.user_id == user_id),
        delete(Subscription).where(Subscription.user_id == user_id),
        delete(PollVote).where(PollVote.user_id == user_id),
        delete(UserSource).where(UserSource.user_id == user_id),
        delete(ProgressStep).where(ProgressStep.user_id == user_id),
        delete(ProgressNudge).where(ProgressNudge.user_id == user_id),
        delete(User).where(User.id == user_id),
    ):
        result = await session.execute(stmt, execution_options={"synchronize_session": False})
        removed += getattr(result, "rowcount", 0) or 0
    session.expunge_all()
    return removed


# -- the exam calendar ------------------------------------------------------------------------------------

SITTING_FIELDS = frozenset({"first_day", "last_day", "deadline", "note", "source"})


async def list_sittings(session: AsyncSession) -> list[ExamSitting]:
    """Every stored window, earliest first (the roadmap and the admin listings read them in this order)."""
    stmt = select(ExamSitting).order_by(ExamSitting.first_day, ExamSitting.last_day, ExamSitting.id)
    return list((await session.execute(stmt)).scalars())


async def get_sitting(session: AsyncSession, sitting_id: int, *, for_update: bool = False) -> ExamSitting | None:
    return await session.get(ExamSitting, sitting_id, with_for_update=for_update)


async def add_sitting(
    session: AsyncSession,
    *,
    first_day: date,
    last_day: date,
    deadline: date | None = None,
    note: str = "",
    source: str = "",
) -> ExamSitting:
    row = ExamSitting(first_day=first_day, last_day=last_day, deadline=deadline, note=note, source=source)
    session.add(row)
    await session.flush()
    return row


async def update_sitting(session: AsyncSession, sitting_id: int, **fields: Any) -> ExamSitting | None:
    """Set the given fields (first_day, last_day, deadline, note, source); None when there is no such window."""
    unknown = set(fields) - SITTING_FIELDS
    if unknown:
        raise TypeError(f"not a sitting field: {', '.join(sorted(unknown))}")
    row = await session.get(ExamSitting, sitting_id, with_for_update=True)
    if row is None:
        return None
    for name, value in fields.items():
        setattr(row, name, value)
    await session.flush()
    return row


async def remove_sitting(session: AsyncSession, sitting_id: int) -> bool:
    result = await session.execute(delete(ExamSitting).where(ExamSitting.id == sitting_id))
    return bool(getattr(result, "rowcount", 0))


# -- admin changes waiting for a confirm ------------------------------------------------------------------


@dataclass(frozen=True)
class PendingAction:
    id: int
    user_id: int
    kind: str
    payload: dict[str, Any]
    created_at: datetime


async def add_admin_action(session: AsyncSession, user_id: int, kind: str, payload: dict[str, Any]) -> int:
    """Queue a change for the admin's confirm; the caller has created the user (`lock_user`) first."""
    row = AdminAction(user_id=user_id, kind=kind, payload=payload)
    session.add(row)
    await session.flush()
    return row.id


async def get_admin_action(session: AsyncSession, action_id: int) -> PendingAction | None:
    """The pending action, locked on PostgreSQL so that two processes cannot both apply it."""
    row = await session.get(AdminAction, action_id, with_for_update=True, populate_existing=True)
    if row is None:
        return None
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)  # SQLite: naive UTC
    return PendingAction(row.id, row.user_id, row.kind, dict(row.payload), created)


async def take_admin_action(session: AsyncSession, action_id: int) -> bool:
    """Remove the action; False when another press removed it first (so it is applied at most once)."""
    result = await session.execute(
        delete(AdminAction).where(AdminAction.id == action_id), execution_options={"synchronize_session": False}
    )
    return bool(getattr(result, "rowcount", 0))


async def drop_admin_actions_before(session: AsyncSession, cutoff: datetime) -> int:
    """Forget actions nobody confirmed in time, so the table stays small."""
    result = await session.execute(
        delete(AdminAction).where(AdminAction.created_at < cutoff), execution_options={"synchronize_session": False}
    )
    return int(getattr(result, "rowcount", 0) or 0)
