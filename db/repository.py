"""Small repository functions over an `AsyncSession`; callers own the transaction.

The functions speak in plain values (answer dicts, option keys) so that `db` does not depend on `flows`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Insert,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db.engine import DriverStatement, SqliteStatement, on_sqlite, run_core
from db.models import (
    AdminAction,
    AnswerRow,
    Broadcast,
    ExamSitting,
    FlowSession,
    OutboxMessage,
    PollVote,
    ProcessedUpdate,
    ProgressNudge,
    ProgressStep,
    RecommendationRow,
    Subscription,
    User,
    UserSource,
    utcnow,
)
from db.outbox import IS_SUBSCRIBED
from db.progress import DONE_STEPS

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


async def lock_user(session: AsyncSession, user_id: int) -> None:
    """Create the user if new, then lock its row so one physician's updates apply one at a time.

    On PostgreSQL this is a row lock held until the transaction ends, which serialises updates for the
    same physician across bot processes; a known user costs that one statement, the insert only runs for a new
    one. SQLite serialises writers by itself: there the insert goes first, so that the transaction holds the
    write lock from its start and never has to upgrade a read snapshot (which would fail, not wait).
    """
    params = {"user_id": user_id}
    if session.get_bind().dialect.name == "postgresql":
        if (await run_core(session, _LOCK_USER, params)).first() is not None:
            return
        now = utcnow()
        await run_core(session, _ADD_USER_PG, {"id": user_id, "created_at": now, "updated_at": now})
        await run_core(session, _LOCK_USER, params)
        return
    now = utcnow()
    await run_core(session, _ADD_USER_SQLITE, {"id": user_id, "created_at": now, "updated_at": now})


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


_flows = cast(Table, FlowSession.__table__)
_answers = cast(Table, AnswerRow.__table__)
_FLOW_COLUMNS = (
    _flows.c.id,
    _flows.c.status,
    _flows.c.current_key,
    _flows.c.editing,
    _flows.c.draft,
    _flows.c.turn,
    _flows.c.moved_by_update,
    _flows.c.updated_at,
)


def _with_answers(*where: ColumnElement[bool]) -> Select[Any]:
    """Sessions with their answers in one query (a row per answer, a session without answers once)."""
    return (
        select(*_FLOW_COLUMNS, _answers.c.question_key, _answers.c.value)
        .outerjoin(_answers, _answers.c.session_id == _flows.c.id)
        .where(*where)
    )


def _one_flow(rows: Sequence[Any]) -> StoredFlow | None:
    """The rows of `_with_answers` for at most one session, as a StoredFlow (SQLAlchemy rows or asyncpg records,
    read by position)."""
    if not rows:
        return None
    first = rows[0]
    return StoredFlow(
        id=first[0],
        status=first[1],
        current_key=first[2],
        editing=first[3],
        draft=tuple(first[4] or ()),
        turn=first[5],
        answers={row[8]: row[9] for row in rows if row[8] is not None},
        moved_by_update=first[6],
        moved_at=_utc(first[7]),
    )


_ACTIVE = _with_answers(_flows.c.user_id == bindparam("user_id"), _flows.c.status == "active")
_users = cast(Table, User.__table__)
_LOCK_USER = select(_users.c.id).where(_users.c.id == bindparam("user_id")).with_for_update()
_SAVE = (
    update(_flows)
    .where(_flows.c.id == bindparam("flow_id"))
    .values(
        current_key=bindparam("to_current_key"),
        editing=bindparam("to_editing"),
        draft=bindparam("to_draft", type_=_flows.c.draft.type),
        turn=_flows.c.turn + 1,
        moved_by_update=bindparam("to_update"),
        status=bindparam("to_status"),
        updated_at=bindparam("now"),
        completed_at=func.coalesce(
            bindparam("to_completed_at", type_=_flows.c.completed_at.type), _flows.c.completed_at
        ),
    )
    .returning(_flows.c.turn)
)
_ADD_ANSWERS = insert(_answers)
_ADD_USER_SQLITE = sqlite_insert(User).on_conflict_do_nothing()
_ADD_USER_PG = pg_insert(User).on_conflict_do_nothing()


def _insert_after(saved: CTE, table: Table, params: dict[str, str]) -> Insert:
    """A row into `table`, each column from the bind parameter named beside it, inserted only if the `saved`
    session update matched its row (PostgreSQL's data-modifying WITH)."""
    columns = select(*(bindparam(param, type_=table.c[column].type) for column, param in params.items()))
    return insert(table).from_select(list(params), columns.select_from(saved))


_NEW_ANSWER = {
    "session_id": "flow_id", "question_key": "new_key", "value": "new_value", "created_at": "now", "updated_at": "now",
}  # fmt: skip
_SAVE_WITH_ANSWER = _insert_after(_SAVE.cte("saved"), _answers, _NEW_ANSWER)
"""PostgreSQL only (a data-modifying WITH): the usual tap, the session moved on and one new answer, in one
round trip instead of two; nothing is inserted when the session is gone."""
_CHANGE_ANSWER = (
    update(_answers)
    .where(_answers.c.session_id == bindparam("flow_id"), _answers.c.question_key == bindparam("key"))
    .values(value=bindparam("to_value", type_=_answers.c.value.type), updated_at=bindparam("now"))
)
"""The statements of a tap, built once: building and hashing a statement cost more than running it."""


async def active_flow(session: AsyncSession, user_id: int) -> StoredFlow | None:
    return _one_flow((await run_core(session, _ACTIVE, {"user_id": user_id})).all())


async def lock_flow(session: AsyncSession, user_id: int) -> StoredFlow | None:
    """`lock_user`, then the physician's active session with its answers (None when they have none).

    The hot path of every tap and typed answer, in two prebuilt statements. On PostgreSQL the user row is locked
    first (the same lock as `lock_user`'s, so every change to a physician's data applies one at a time across
    processes, always in the same lock order) and the session is read by a second statement, whose snapshot is
    taken after the lock was granted: a single statement that locked and read at once would, after waiting for
    another process's transaction, return the session as it was before that transaction. Only a user seen for the
    first time costs `lock_user`'s insert on top. SQLite serialises writers: the user insert takes its write lock
    first, then the read needs no lock of its own.
    """
    await lock_user(session, user_id)
    return _one_flow((await run_core(session, _ACTIVE, {"user_id": user_id})).all())


_LATEST = _with_answers(
    _flows.c.id
    == select(_flows.c.id)
    .where(_flows.c.user_id == bindparam("user_id"))
    .order_by(_flows.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
_LAST_TURN = (
    select(_flows.c.turn).where(_flows.c.user_id == bindparam("user_id")).order_by(_flows.c.turn.desc()).limit(1)
)
_CLOSE_ACTIVE = (
    update(_flows)
    .where(_flows.c.user_id == bindparam("of_user"), _flows.c.status == "active")
    .values(status=bindparam("to_status"), updated_at=bindparam("now"))
)
_START = insert(_flows).returning(_flows.c.id)
"""The statements of /start and a new flow, built once like the tap's."""


async def latest_flow(session: AsyncSession, user_id: int) -> StoredFlow | None:
    """The most recent session of any status (for "welcome back" and the recommendation on /start)."""
    return _one_flow((await run_core(session, _LATEST, {"user_id": user_id})).all())


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
    turn = await _last_turn(session, user_id) + 1
    now = utcnow()
    row = {
        "user_id": user_id, "status": "active", "current_key": current_key, "editing": False, "draft": [],
        "turn": turn, "moved_by_update": update_id, "created_at": now, "updated_at": now,
    }  # fmt: skip
    flow_id = (await run_core(session, _START, row)).scalar_one()
    return StoredFlow(flow_id, "active", current_key, False, (), turn, {}, update_id, now)


async def _last_turn(session: AsyncSession, user_id: int) -> int:
    """Turns keep growing across a user's sessions, so a button from an old session never matches a new one."""
    return (await run_core(session, _LAST_TURN, {"user_id": user_id})).scalar_one_or_none() or 0


async def close_active(session: AsyncSession, user_id: int, status: str) -> bool:
    result = await run_core(session, _CLOSE_ACTIVE, {"of_user": user_id, "to_status": status, "now": utcnow()})
    return bool(getattr(result, "rowcount", 0))


async def save_flow(
    session: AsyncSession,
    flow: StoredFlow | int,
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

    `flow` is the session as read in this transaction under the physician's lock (`lock_flow`, `lock_user`),
    so only the answers that differ from it are written; given only its id, it is read first.
    """
    if isinstance(flow, int):
        loaded = _one_flow((await session.execute(_with_answers(_flows.c.id == flow))).all())
        if loaded is None:
            raise LookupError(f"flow session {flow} is gone")
        flow = loaded
    now = utcnow()
    params = _save_params(flow.id, current_key, editing, draft, update_id, status, now)
    stored, gone, added, changed = _changes(flow, answers)
    if len(added) == 1 and not gone and not changed and session.get_bind().dialect.name == "postgresql":
        params.update(new_key=added[0], new_value=stored[added[0]])
        if not getattr(await run_core(session, _SAVE_WITH_ANSWER, params), "rowcount", 0):
            raise LookupError(f"flow session {flow.id} is gone")
        return StoredFlow(flow.id, status, current_key, editing, tuple(draft), flow.turn + 1, stored, update_id, now)
    turn = (await run_core(session, _SAVE, params)).scalar_one_or_none()
    if turn is None:
        raise LookupError(f"flow session {flow.id} is gone")
    if gone:
        await run_core(
            session, delete(_answers).where(_answers.c.session_id == flow.id, _answers.c.question_key.in_(gone))
        )
    for key in changed:
        await run_core(session, _CHANGE_ANSWER, {"flow_id": flow.id, "key": key, "to_value": stored[key], "now": now})
    if added:
        new = [
            {"session_id": flow.id, "question_key": k, "value": stored[k], "created_at": now, "updated_at": now}
            for k in added
        ]
        await run_core(session, _ADD_ANSWERS, new)
    return StoredFlow(flow.id, status, current_key, editing, tuple(draft), turn, dict(stored), update_id, now)


def _save_params(
    flow_id: int,
    current_key: str | None,
    editing: bool,
    draft: tuple[str, ...],
    update_id: int | None,
    status: str,
    now: datetime,
) -> dict[str, Any]:
    """The bind parameters of `_SAVE` (the session moved on, the turn bumped)."""
    return {
        "flow_id": flow_id,
        "to_current_key": current_key,
        "to_editing": editing,
        "to_draft": list(draft),
        "to_update": update_id,
        "to_status": status,
        "now": now,
        "to_completed_at": now if status == "completed" else None,
    }


def _listed(value: AnswerValue | tuple[str, ...]) -> AnswerValue:
    return list(value) if isinstance(value, list | tuple) else value


def _changes(
    flow: StoredFlow, answers: Mapping[str, AnswerValue]
) -> tuple[dict[str, AnswerValue], list[str], list[str], list[str]]:
    """The answers as stored, and the keys gone, added and changed since `flow` was read."""
    stored = {key: _listed(value) for key, value in answers.items()}
    gone = [key for key in flow.answers if key not in stored]
    added = [key for key in stored if key not in flow.answers]
    changed = [key for key in stored if key in flow.answers and _listed(flow.answers[key]) != stored[key]]
    return stored, gone, added, changed


_ADD_RECOMMENDATION = insert(RecommendationRow)
_LATEST_PATH = (
    select(RecommendationRow.path)
    .join(FlowSession, RecommendationRow.session_id == FlowSession.id)
    .where(FlowSession.user_id == bindparam("user_id"))
    .order_by(RecommendationRow.id.desc())
    .limit(1)
)


# -- the usual tap without the lock: one statement on PostgreSQL (SQLite's transaction is at the end) -----------

_processed = cast(Table, ProcessedUpdate.__table__)
_recommendations = cast(Table, RecommendationRow.__table__)
_SITTINGS_ORDER = (ExamSitting.first_day, ExamSitting.last_day, ExamSitting.id)


class SittingFields(NamedTuple):
    """An exam sitting as stored, the fields every roadmap reads (`bot.exam_calendar.as_sitting`)."""

    id: int
    first_day: date
    last_day: date
    deadline: date | None
    note: str
    source: str


@dataclass(frozen=True)
class RoadmapInputs:
    """What a roadmap reads besides the answers: the exam calendar, the steps ticked, the reminder subscription."""

    sittings: tuple[SittingFields, ...]
    done: dict[str, date]
    subscribed: bool


@dataclass(frozen=True)
class Completed:
    """What the statement that ends a flow (`save_unmoved`) reads back from its own snapshot, before its inserts:
    the path of the physician's previous recommendation, and everything the roadmap needs."""

    previous_path: str | None
    inputs: RoadmapInputs


@dataclass(frozen=True)
class Unmoved:
    """A move saved by `save_unmoved`: the flow as now stored, and for the last answer, `Completed`."""

    flow: StoredFlow
    completed: Completed | None = None


def _column_arrays(*columns: Any, where: ColumnElement[bool] | None = None, order: Any = ()) -> list[Any]:
    """One array per column, every array in the same row order (PostgreSQL): a table's rows as scalar subqueries."""
    arrays = []
    for column in columns:
        aggregated = select(func.array_agg(aggregate_order_by(column, *order)) if order else func.array_agg(column))
        arrays.append((aggregated if where is None else aggregated.where(where)).scalar_subquery())
    return arrays


_ROADMAP_READS = [
    *_column_arrays(
        ExamSitting.id, ExamSitting.first_day, ExamSitting.last_day, ExamSitting.deadline, ExamSitting.note,
        ExamSitting.source, order=_SITTINGS_ORDER,
    ),
    *_column_arrays(
        ProgressStep.step_key, ProgressStep.done_on, where=ProgressStep.user_id == bindparam("user_id"),
        order=(ProgressStep.step_key,),
    ),
    IS_SUBSCRIBED.scalar_subquery(),
]  # fmt: skip
"""The roadmap's three reads (`sitting_rows`, `db.progress.done_steps`, `db.outbox.is_subscribed`) as columns of
the statement that ends a flow, so the last answer and its roadmap take one round trip."""


def _roadmap_inputs(row: Sequence[Any]) -> RoadmapInputs:
    """`RoadmapInputs` from the columns of `_ROADMAP_READS` (an empty table aggregates to NULL)."""
    ids, firsts, lasts, deadlines, notes, sources, keys, days, subscribed = (v if v is not None else [] for v in row)
    sittings = tuple(
        SittingFields(*fields) for fields in zip(ids, firsts, lasts, deadlines, notes, sources, strict=True)
    )
    return RoadmapInputs(sittings, dict(zip(keys, days, strict=True)), bool(subscribed))


_RECOMMENDATION = {
    "session_id": "flow_id", "path": "rec_path", "qme_score": "rec_qme", "ime_score": "rec_ime",
    "details": "rec_details", "created_at": "now",
}  # fmt: skip
_CLAIM = {"update_id": "claimed_id", "day": "claimed_day"}
_SAVE_IF_UNMOVED = _SAVE.where(_flows.c.turn == bindparam("expected_turn"), _flows.c.status == "active")
"""The session moved on only if it is still active at the turn it was read at."""


def _save_unmoved(answer: bool, claim: bool, complete: bool = False) -> Select[Any]:
    """One statement: the session moved on only if it is still active at the turn it was read at, with the new
    answer and the update's claim inserted only if it was (data-modifying WITHs all run in one atomic statement).
    It returns the new turn, or no row when someone moved the session meanwhile. A claim taken already fails the
    statement (unique violation), which undoes it whole. `complete`: the flow ends here, its recommendation is
    stored too, and the path of the physician's previous recommendation and the roadmap's reads come back beside
    the turn (the statement reads them from its snapshot, before its own inserts)."""
    saved = _SAVE_IF_UNMOVED.cte("saved")
    reads = (_LATEST_PATH.scalar_subquery(), *_ROADMAP_READS) if complete else ()
    stmt = select(saved.c.turn, *reads)
    if answer:
        stmt = stmt.add_cte(_insert_after(saved, _answers, _NEW_ANSWER).cte("answered"))
    if complete:
        stmt = stmt.add_cte(_insert_after(saved, _recommendations, _RECOMMENDATION).cte("recommended"))
    if claim:
        stmt = stmt.add_cte(_insert_after(saved, _processed, _CLAIM).cte("claimed"))
    return stmt


_SAVES_UNMOVED = {
    (answer, claim, complete): DriverStatement(_save_unmoved(answer, claim, complete))
    for answer in (False, True)
    for claim in (False, True)
    for complete in (False, True)
}
_READ_ACTIVE = DriverStatement(_ACTIVE)


def saves_unmoved(flow: StoredFlow, answers: Mapping[str, AnswerValue]) -> bool:
    """Whether `save_unmoved` can save this move: it adds one answer at most, and changes or removes none."""
    _, gone, added, changed = _changes(flow, answers)
    return not gone and not changed and len(added) <= 1


async def read_active(conn: AsyncConnection, user_id: int) -> StoredFlow | None:
    """The physician's active session with its answers, read without a lock (see `save_unmoved`)."""
    params = {"user_id": user_id}
    if conn.dialect.name == "sqlite":
        return _one_flow(await on_sqlite(conn, lambda db: _SQLITE_ACTIVE.rows(db, params)))
    return _one_flow(await _READ_ACTIVE.fetch(conn, params))


async def save_unmoved(
    conn: AsyncConnection,
    flow: StoredFlow,
    *,
    current_key: str | None,
    editing: bool,
    draft: tuple[str, ...],
    answers: Mapping[str, AnswerValue],
    update_id: int | None = None,
    claim: date | None = None,
    completes: Completion | None = None,
) -> Unmoved | None:
    """Save a move of `flow`, read by `read_active`, as one statement that commits by itself: the compare-and-set of
    the turn stands in for the physician's lock. Only for a move that `saves_unmoved`; None when the session moved
    since it was read. `claim`: the day to claim `update_id` on, in the same statement. `completes`: the move ends
    the flow with this recommendation (stored in the statement too; `Unmoved.completed` has what its roadmap needs).
    Raises IntegrityError when the update was claimed already."""
    stored, gone, added, changed = _changes(flow, answers)
    if gone or changed or len(added) > 1 or (claim is not None and update_id is None):
        raise ValueError("not a move for save_unmoved (see saves_unmoved)")
    now = utcnow()
    status = "active" if completes is None else "completed"
    params = _save_params(flow.id, current_key, editing, draft, update_id, status, now)
    params["expected_turn"] = flow.turn
    if added:
        params.update(new_key=added[0], new_value=stored[added[0]])
    if claim is not None:
        params.update(claimed_id=update_id, claimed_day=claim)
    if completes is not None:
        params.update(user_id=completes.user_id, rec_path=completes.path, rec_qme=completes.qme_score,
                      rec_ime=completes.ime_score, rec_details=completes.details)  # fmt: skip
    rows: Sequence[Any]
    if conn.dialect.name == "sqlite":
        rows = await on_sqlite(conn, lambda db: _sqlite_save_unmoved(db, params, bool(added), completes))
    else:
        rows = await _SAVES_UNMOVED[bool(added), claim is not None, completes is not None].fetch(conn, params)
    if not rows:
        return None
    saved = StoredFlow(flow.id, status, current_key, editing, tuple(draft), rows[0][0], stored, update_id, now)
    if completes is None:
        return Unmoved(saved)
    return Unmoved(saved, Completed(rows[0][1], _roadmap_inputs(rows[0][2:])))


@dataclass(frozen=True)
class Completion:
    """The recommendation a flow ends with, for `save_unmoved`."""

    user_id: int
    path: str
    qme_score: int
    ime_score: int
    details: dict[str, Any]


async def add_recommendation(
    session: AsyncSession, flow_id: int, path: str, qme_score: int, ime_score: int, details: dict[str, Any]
) -> None:
    row = {"session_id": flow_id, "path": path, "qme_score": qme_score, "ime_score": ime_score, "details": details}
    await run_core(session, _ADD_RECOMMENDATION, {**row, "created_at": utcnow()})


async def latest_path(session: AsyncSession, user_id: int) -> str | None:
    """The path of the user's latest recommendation, if any (to say when a new one differs)."""
    return (await run_core(session, _LATEST_PATH, {"user_id": user_id})).scalar_one_or_none()


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


_SITTING_ROWS = select(
    ExamSitting.id, ExamSitting.first_day, ExamSitting.last_day, ExamSitting.deadline, ExamSitting.note,
    ExamSitting.source,
).order_by(*_SITTINGS_ORDER)  # fmt: skip


async def list_sittings(session: AsyncSession) -> list[ExamSitting]:
    """Every stored window, earliest first (the roadmap and the admin listings read them in this order)."""
    return list((await session.execute(select(ExamSitting).order_by(*_SITTINGS_ORDER))).scalars())


async def sitting_rows(session: AsyncSession) -> Sequence[Row[Any]]:
    """`list_sittings` as plain rows (id, days, deadline, note, source): what every roadmap reads."""
    return (await run_core(session, _SITTING_ROWS)).all()


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


# -- the usual tap without the lock, on SQLite ---------------------------------------------------------------------
# SQLite has no data-modifying WITH, but it has one writer at a time: the same moves run as a few statements in one
# BEGIN IMMEDIATE transaction, all of it in one call on the sqlite3 connection (`db.engine.on_sqlite`).


def _values(table: Table, params: dict[str, str]) -> Insert:
    """A row into `table`, each column from the bind parameter named beside it."""
    return insert(table).values(
        {column: bindparam(param, type_=table.c[column].type) for column, param in params.items()}
    )


_SQLITE_ACTIVE = SqliteStatement(_ACTIVE)
_SQLITE_SAVE = SqliteStatement(_SAVE_IF_UNMOVED)
_SQLITE_ADD_ANSWER = SqliteStatement(_values(_answers, _NEW_ANSWER))
_SQLITE_CLAIM = SqliteStatement(_values(_processed, _CLAIM))
_SQLITE_ADD_RECOMMENDATION = SqliteStatement(_values(_recommendations, _RECOMMENDATION))
_SQLITE_LATEST_PATH = SqliteStatement(_LATEST_PATH)
_SQLITE_SITTINGS = SqliteStatement(_SITTING_ROWS)
_SQLITE_DONE = SqliteStatement(DONE_STEPS)
_SQLITE_SUBSCRIBED = SqliteStatement(IS_SUBSCRIBED)


def _sqlite_save_unmoved(
    db: sqlite3.Connection, params: dict[str, Any], answer: bool, completes: Completion | None
) -> list[tuple[Any, ...]]:
    """`_save_unmoved` on SQLite, as `on_sqlite`'s work: the row PostgreSQL's statement returns (the new turn, then
    for the last answer the previous path and `_ROADMAP_READS`' columns), or none when the session moved."""
    db.execute("BEGIN IMMEDIATE")
    try:
        saved = _SQLITE_SAVE.rows(db, params)
        if not saved:
            db.execute("ROLLBACK")
            return []
        row: tuple[Any, ...] = saved[0]
        if completes is not None:
            previous = _SQLITE_LATEST_PATH.rows(db, params)
            sittings = _SQLITE_SITTINGS.rows(db, params)
            done = _SQLITE_DONE.rows(db, params)
            subscribed = _SQLITE_SUBSCRIBED.rows(db, params)
            columns = [list(column) for column in zip(*sittings, strict=True)] if sittings else [[]] * 6
            steps = [list(column) for column in zip(*done, strict=True)] if done else [[], []]
            row += (previous[0][0] if previous else None, *columns, *steps, subscribed[0][0] if subscribed else None)
            _SQLITE_ADD_RECOMMENDATION.rows(db, params)
        if answer:
            _SQLITE_ADD_ANSWER.rows(db, params)
        if "claimed_id" in params:
            _SQLITE_CLAIM.rows(db, params)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return [row]
