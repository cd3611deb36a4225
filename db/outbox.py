"""The outbox: every message the bot sends on its own initiative (broadcasts, exam reminders) is a row here first.

A row is written in the same transaction as the decision to send it (a broadcast and all of its rows commit
together), so a crash can lose nothing; a sender claims due rows with a lease (`in_flight`), sends them and
resolves each to exactly one of sent, failed or skipped. The functions that resolve a row check the claim's
`attempts` (a fencing token): a sender whose lease expired and whose row was claimed again cannot overwrite the
newer holder's result. Callers own the transaction, as in `db.repository`.

Datetimes are stored in UTC; SQLite returns them naive, which `as_utc` turns back into aware values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db.engine import run_core
from db.models import Broadcast, OutboxMessage, Subscription, User, utcnow

PENDING, IN_FLIGHT, SENT, FAILED, SKIPPED = "pending", "in_flight", "sent", "failed", "skipped"
LEFT = (PENDING, IN_FLIGHT)
ERROR_LENGTH = 300

Buttons = list[list[dict[str, str]]]


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime, from an aware one or from the naive UTC values SQLite returns."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dialect(executor: AsyncSession | AsyncConnection) -> Dialect:
    return executor.dialect if isinstance(executor, AsyncConnection) else executor.get_bind().dialect


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _clip(error: str) -> str:
    return error if len(error) <= ERROR_LENGTH else error[: ERROR_LENGTH - 1] + "…"


# -- queueing ---------------------------------------------------------------------------------------------


async def queue_broadcast(
    session: AsyncSession,
    *,
    text: str,
    audience: str,
    created_by: int | None,
    recipients: Sequence[int],
    progress_chat_id: int | None = None,
    progress_message_id: int | None = None,
    progress_buttons: Buttons | None = None,
    not_before: datetime | None = None,
) -> Broadcast:
    """The broadcast and one outbox row per recipient (each user once, in the given order), in one transaction.

    Recipients must be users (rows of `users`); the caller selected them from there.
    """
    now = utcnow()
    unique = list(dict.fromkeys(recipients))
    broadcast = Broadcast(
        kind="broadcast",
        text=text,
        audience=audience,
        created_by=created_by,
        status="queued",
        total=len(unique),
        progress_chat_id=progress_chat_id,
        progress_message_id=progress_message_id,
        progress_buttons=progress_buttons,
        created_at=now,
        updated_at=now,
    )
    session.add(broadcast)
    await session.flush()
    due = as_utc(not_before) if not_before is not None else now
    rows = [
        {
            "broadcast_id": broadcast.id,
            "user_id": user_id,
            "kind": "broadcast",
            "text": None,
            "buttons": None,
            "dedupe_key": f"b:{broadcast.id}:{user_id}",
            "status": PENDING,
            "not_before": due,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for user_id in unique
    ]
    for start in range(0, len(rows), 5000):  # bounded statements: SQLite caps bound parameters per statement
        await session.execute(insert(OutboxMessage), rows[start : start + 5000])
    return broadcast


async def queue_message(
    session: AsyncSession,
    *,
    user_id: int,
    kind: str,
    text: str | None,
    buttons: Buttons | None,
    dedupe_key: str,
    not_before: datetime,
    broadcast_id: int | None = None,
) -> bool:
    """Queue one message unless a row with this key exists (in any state); returns whether it was inserted.

    ON CONFLICT DO NOTHING makes this safe to repeat from any number of passes, restarts or processes.
    """
    now = utcnow()
    stmt = (
        _insert(session)(OutboxMessage)
        .values(
            broadcast_id=broadcast_id,
            user_id=user_id,
            kind=kind,
            text=text,
            buttons=buttons,
            dedupe_key=dedupe_key,
            status=PENDING,
            not_before=as_utc(not_before),
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


async def skip_pending_reminders(session: AsyncSession, user_id: int, *, keep: Collection[str], reason: str) -> int:
    """Skip the user's pending reminders whose keys are not in `keep` (no longer on the roadmap)."""
    stmt = (
        update(OutboxMessage)
        .where(OutboxMessage.user_id == user_id, OutboxMessage.kind == "reminder", OutboxMessage.status == PENDING)
        .values(status=SKIPPED, error=_clip(reason), lease_until=None, updated_at=utcnow())
    )
    if keep:
        stmt = stmt.where(OutboxMessage.dedupe_key.not_in(list(keep)))
    result = await session.execute(stmt, execution_options={"synchronize_session": False})
    return int(getattr(result, "rowcount", 0) or 0)


# -- claiming and resolving -------------------------------------------------------------------------------


def _seconds(lease: timedelta | float) -> timedelta:
    return lease if isinstance(lease, timedelta) else timedelta(seconds=lease)


class Held(Protocol):
    """A claimed row as resolving it needs: its id and the claim's attempt (the fencing token)."""

    @property
    def id(self) -> int: ...

    @property
    def attempts(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row as a claim took it, in plain values: what sending it needs (datetimes aware, in UTC).

    Not an ORM object: building one per row, with its session state, was most of a claim's CPU, and a claim holds
    the sender's writes back while it runs.
    """

    id: int
    broadcast_id: int | None
    user_id: int
    kind: str
    text: str | None
    buttons: Buttons | None
    attempts: int
    not_before: datetime
    lease_until: datetime
    error: str | None


CLAIMED_COLUMNS = tuple(getattr(OutboxMessage, f.name) for f in fields(Claimed))


_CLAIM: dict[str, Update] = {}


def claim_statement(dialect: str) -> Update:
    """The claim (see `claim_due`): an UPDATE ... RETURNING the `Claimed` columns, built once per dialect, with the
    parameters of `claim_params`."""
    stmt = _CLAIM.get(dialect)
    if stmt is not None:
        return stmt
    now = bindparam("now", type_=OutboxMessage.not_before.type)
    pending = and_(OutboxMessage.status == PENDING, OutboxMessage.not_before <= now)
    expired = and_(OutboxMessage.status == IN_FLIGHT, OutboxMessage.lease_until < now)
    order = (OutboxMessage.not_before, OutboxMessage.id)
    limit = bindparam("limit", type_=Integer())
    due: Select[int]
    if dialect == "postgresql":
        due = select(OutboxMessage.id).where(or_(pending, expired)).order_by(*order).limit(limit)
        due = due.with_for_update(skip_locked=True)
    else:
        # Each kind of due row in the index's order, the first `limit` of each, then the first `limit` of both:
        # SQLite would otherwise sort every due row to take a few (a whole broadcast's, for every claim).
        firsts = [
            select(OutboxMessage.id, OutboxMessage.not_before).where(due_rows).order_by(*order).limit(limit).subquery()
            for due_rows in (pending, expired)
        ]
        both = union_all(*(select(first.c.id, first.c.not_before) for first in firsts)).subquery()
        due = select(both.c.id).order_by(both.c.not_before, both.c.id).limit(limit)
    stmt = _CLAIM[dialect] = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(
            status=IN_FLIGHT,
            lease_until=bindparam("lease_until", type_=OutboxMessage.lease_until.type),
            attempts=OutboxMessage.attempts + 1,
            updated_at=now,
        )
        .returning(*CLAIMED_COLUMNS)
    )
    return stmt


def claim_params(now: datetime, limit: int, lease: timedelta | float) -> dict[str, Any]:
    now = as_utc(now)
    return {"now": now, "limit": limit, "lease_until": now + _seconds(lease)}


def claimed(rows: Iterable[Sequence[Any]]) -> list[Claimed]:
    """Claimed rows in the order they are due, from the values of `CLAIMED_COLUMNS`."""
    out = [
        Claimed(id_, broadcast_id, user_id, kind, text, buttons, attempts, as_utc(not_before), as_utc(lease), error)
        for id_, broadcast_id, user_id, kind, text, buttons, attempts, not_before, lease, error in rows
    ]
    out.sort(key=lambda r: (r.not_before, r.id))
    return out


async def claim_due(session: AsyncSession, now: datetime, limit: int, lease: timedelta | float) -> list[Claimed]:
    """Take up to `limit` due rows: pending with not_before <= now, or in flight with an expired lease.

    They become in_flight until now + lease, with attempts + 1. One statement (UPDATE ... RETURNING) whose
    row selection on PostgreSQL is `FOR UPDATE SKIP LOCKED`, so concurrent senders never get the same row;
    on SQLite the single statement never upgrades a read lock, so it cannot fail with a busy snapshot.
    """
    stmt = claim_statement(session.get_bind().dialect.name)
    params = claim_params(now, limit, lease)
    return claimed(await session.execute(stmt, params, execution_options={"synchronize_session": False}))


async def release_in_flight(session: AsyncSession) -> int:
    """Return every in-flight row to pending at once (SQLite start-up: the one sender there died holding them).

    Never on PostgreSQL, where other live processes hold leases; there expired leases are simply claimed again.
    """
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == IN_FLIGHT)
        .values(status=PENDING, lease_until=None, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0) or 0)


_RESOLVE: dict[tuple[tuple[str, ...], bool], Update] = {}


def _resolve_statement(columns: tuple[str, ...], uncount: bool) -> Update:
    """One UPDATE per shape, built once: a sender resolves a row per message, and building the statement anew each
    time cost more CPU than running it."""
    key = (columns, uncount)
    stmt = _RESOLVE.get(key)
    if stmt is None:
        table = cast(Table, OutboxMessage.__table__)
        values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in columns}
        if uncount:
            values["attempts"] = table.c.attempts - 1
        stmt = (
            update(table)
            .where(
                table.c.id == bindparam("w_id"),
                table.c.status == IN_FLIGHT,
                table.c.attempts == bindparam("w_attempts"),
            )
            .values(values)
        )
        _RESOLVE[key] = stmt
    return stmt


@dataclass(frozen=True)
class Resolution:
    """A claimed row's outcome: `values` applied if the claim still holds the row (see `resolve_all`).

    `uncount` gives the claim's attempt back (a 429 is not the row's fault).
    """

    row_id: int
    attempts: int
    values: dict[str, Any]
    uncount: bool = False


def sent(row: Held, message_id: int, at: datetime | None = None) -> Resolution:
    values = {"status": SENT, "message_id": message_id, "sent_at": as_utc(at or utcnow()), "lease_until": None}
    return Resolution(row.id, row.attempts, values | {"error": None})


def failed(row: Held, error: str) -> Resolution:
    """Failed for good (blocked, chat gone, too many transient errors); never retried."""
    return Resolution(row.id, row.attempts, {"status": FAILED, "error": _clip(error), "lease_until": None})


def skipped(row: Held, reason: str) -> Resolution:
    return Resolution(row.id, row.attempts, {"status": SKIPPED, "error": _clip(reason), "lease_until": None})


def retry(row: Held, at: datetime, error: str) -> Resolution:
    """Back to pending until `at` after a transient error; the attempt counts towards the bound."""
    values = {"status": PENDING, "not_before": as_utc(at), "lease_until": None, "error": _clip(error)}
    return Resolution(row.id, row.attempts, values)


def back(row: Held, at: datetime) -> Resolution:
    """Back to pending until `at` without counting an attempt (Telegram asked to slow down; not the row's fault)."""
    values = {"status": PENDING, "not_before": as_utc(at), "lease_until": None}
    return Resolution(row.id, row.attempts, values, uncount=True)


def resolution_statements(resolutions: Sequence[Resolution]) -> list[tuple[Update, list[dict[str, Any]]]]:
    """The UPDATE for each shape of outcome among `resolutions`, with the parameters of each of its rows."""
    now = utcnow()
    shapes: dict[tuple[tuple[str, ...], bool], list[dict[str, Any]]] = {}
    for r in resolutions:
        values = {"updated_at": now} | r.values
        columns = tuple(sorted(values))
        bound = {f"v_{name}": values[name] for name in columns} | {"w_id": r.row_id, "w_attempts": r.attempts}
        shapes.setdefault((columns, r.uncount), []).append(bound)
    return [(_resolve_statement(columns, uncount), many) for (columns, uncount), many in shapes.items()]


async def resolve_all(executor: AsyncSession | AsyncConnection, resolutions: Sequence[Resolution]) -> int | None:
    """Apply outcomes, one executemany per shape of outcome; returns how many rows the claims still held (None
    where the driver cannot count the rows an executemany changed: asyncpg).

    A sender records the results of several messages at once (group commit): one statement for all of them costs
    about what one costs alone, where a statement per row was a quarter of a millisecond of CPU each on SQLite.
    The executor is a session or, for the sender's plain outcomes, a connection (Core, no ORM session to pay for).
    """
    held: int | None = 0
    for stmt, many in resolution_statements(resolutions):
        result = await executor.execute(stmt, many[0] if len(many) == 1 else many)
        counted = len(many) == 1 or _dialect(executor).supports_sane_multi_rowcount
        held = held + max(0, int(getattr(result, "rowcount", 0) or 0)) if held is not None and counted else None
    return held


async def _resolve(session: AsyncSession, resolution: Resolution) -> bool:
    return await resolve_all(session, [resolution]) == 1


async def mark_sent(session: AsyncSession, row: Held, message_id: int, at: datetime | None = None) -> bool:
    return await _resolve(session, sent(row, message_id, at))


async def mark_failed(session: AsyncSession, row: Held, error: str) -> bool:
    return await _resolve(session, failed(row, error))


async def mark_skipped(session: AsyncSession, row: Held, reason: str) -> bool:
    return await _resolve(session, skipped(row, reason))


async def retry_later(session: AsyncSession, row: Held, at: datetime, error: str) -> bool:
    return await _resolve(session, retry(row, at, error))


async def put_back(session: AsyncSession, row: Held, at: datetime) -> bool:
    return await _resolve(session, back(row, at))


# -- broadcasts -------------------------------------------------------------------------------------------


async def get_broadcast(session: AsyncSession, broadcast_id: int) -> Broadcast | None:
    return await session.get(Broadcast, broadcast_id, populate_existing=True)


async def list_broadcasts(session: AsyncSession, limit: int = 20) -> list[Broadcast]:
    """The newest broadcasts first."""
    stmt = select(Broadcast).order_by(Broadcast.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def set_progress_message(
    session: AsyncSession, broadcast_id: int, chat_id: int, message_id: int, buttons: Buttons | None = None
) -> None:
    """The message the sender edits with the broadcast's progress (and its buttons while it sends)."""
    await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id)
        .values(
            progress_chat_id=chat_id, progress_message_id=message_id, progress_buttons=buttons, updated_at=utcnow()
        ),
        execution_options={"synchronize_session": False},
    )


async def cancel_broadcast(session: AsyncSession, broadcast_id: int) -> int:
    """Stop a queued broadcast: its pending rows become skipped ("cancelled"); returns how many.

    Rows already in flight finish (they may be on the wire); the sender also skips claimed rows of a cancelled
    broadcast it has not sent yet, and then marks the broadcast finished.
    """
    now = utcnow()
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status == "queued")
        .values(status="cancelled", updated_at=now),
        execution_options={"synchronize_session": False},
    )
    if not getattr(result, "rowcount", 0):
        return 0
    skipped = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.broadcast_id == broadcast_id, OutboxMessage.status == PENDING)
        .values(status=SKIPPED, error="cancelled", updated_at=now),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(skipped, "rowcount", 0) or 0)


async def broadcast_counts(session: AsyncSession, broadcast_id: int) -> dict[str, int]:
    """sent, failed, skipped and left (pending or in flight), and their total."""
    stmt = (
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.broadcast_id == broadcast_id)
        .group_by(OutboxMessage.status)
    )
    by_status = {status: int(n) for status, n in (await session.execute(stmt)).all()}
    counts = {
        "sent": by_status.get(SENT, 0),
        "failed": by_status.get(FAILED, 0),
        "skipped": by_status.get(SKIPPED, 0),
        "left": by_status.get(PENDING, 0) + by_status.get(IN_FLIGHT, 0),
    }
    counts["total"] = sum(counts.values())
    return counts


async def failure_reasons(session: AsyncSession, broadcast_id: int, limit: int = 5) -> list[tuple[str, int]]:
    """The commonest reasons its deliveries failed, most frequent first (for the final report)."""
    stmt = (
        select(OutboxMessage.error, func.count())
        .where(OutboxMessage.broadcast_id == broadcast_id, OutboxMessage.status == FAILED)
        .group_by(OutboxMessage.error)
        .order_by(func.count().desc(), OutboxMessage.error)
        .limit(limit)
    )
    return [(error or "unknown", int(n)) for error, n in (await session.execute(stmt)).all()]


async def cancelled_broadcasts(session: AsyncSession, broadcast_ids: Collection[int]) -> set[int]:
    if not broadcast_ids:
        return set()
    stmt = select(Broadcast.id).where(Broadcast.id.in_(list(broadcast_ids)), Broadcast.status == "cancelled")
    return set((await session.execute(stmt)).scalars())


async def claim_progress_edit(session: AsyncSession, broadcast_id: int, now: datetime, every: float) -> bool:
    """Whether this caller may edit the progress message now: at most once per `every` seconds over all processes."""
    now = as_utc(now)
    result = await session.execute(
        update(Broadcast)
        .where(
            Broadcast.id == broadcast_id,
            Broadcast.finished_at.is_(None),
            Broadcast.progress_message_id.is_not(None),
            or_(Broadcast.progress_at.is_(None), Broadcast.progress_at <= now - timedelta(seconds=every)),
        )
        .values(progress_at=now),
        execution_options={"synchronize_session": False},
    )
    return bool(getattr(result, "rowcount", 0))


async def finish_complete(
    session: AsyncSession, now: datetime | None = None, *, only: int | None = None
) -> list[Broadcast]:
    """Mark finished every unfinished broadcast (or just `only`) with no row left; returns those this call finished.

    A queued one becomes done, a cancelled one keeps its status; both get finished_at. The update is
    conditional, so when several senders race exactly one of them gets each broadcast (and reports it).
    """
    at = as_utc(now or utcnow())
    left = exists().where(OutboxMessage.broadcast_id == Broadcast.id, OutboxMessage.status.in_(LEFT))
    stmt = select(Broadcast.id).where(Broadcast.finished_at.is_(None), ~left)
    if only is not None:
        stmt = stmt.where(Broadcast.id == only)
    candidates = list((await session.execute(stmt)).scalars())
    finished: list[Broadcast] = []
    for broadcast_id in candidates:
        result = await session.execute(
            update(Broadcast)
            .where(Broadcast.id == broadcast_id, Broadcast.finished_at.is_(None), ~left)
            .values(
                finished_at=at,
                updated_at=at,
                status=case((Broadcast.status == "queued", "done"), else_=Broadcast.status),
            ),
            execution_options={"synchronize_session": False},
        )
        if getattr(result, "rowcount", 0):
            row = await get_broadcast(session, broadcast_id)
            if row is not None:
                finished.append(row)
    return finished


# -- subscriptions ----------------------------------------------------------------------------------------


async def set_subscribed(session: AsyncSession, user_id: int, active: bool) -> None:
    """Subscribe or unsubscribe; the user row must exist (the dialogue has locked it)."""
    now = utcnow()
    stmt = _insert(session)(Subscription).values(user_id=user_id, active=active, created_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_={"active": active, "updated_at": now})
    await session.execute(stmt)


IS_SUBSCRIBED = select(Subscription.active).where(Subscription.user_id == bindparam("user_id"))
"""Built once: every roadmap on screen asks (see `db.engine.run_core`)."""


async def is_subscribed(session: AsyncSession, user_id: int) -> bool:
    return bool((await run_core(session, IS_SUBSCRIBED, {"user_id": user_id})).scalar_one_or_none())


async def active_subscribers(session: AsyncSession) -> list[int]:
    stmt = select(Subscription.user_id).where(Subscription.active.is_(True)).order_by(Subscription.user_id)
    return list((await session.execute(stmt)).scalars())


async def unsubscribed(session: AsyncSession, user_ids: Collection[int]) -> set[int]:
    """Those of `user_ids` without an active subscription (never subscribed, stopped, or blocked the bot)."""
    if not user_ids:
        return set()
    active = select(Subscription.user_id).where(Subscription.user_id.in_(list(user_ids)), Subscription.active.is_(True))
    return set(user_ids) - set((await session.execute(active)).scalars())


async def unsubscribe_after_block(session: AsyncSession, user_id: int) -> None:
    """The user blocked the bot or the chat is gone: no more reminders (nor subscriber broadcasts).

    Records the stop also for a user who never subscribed; does nothing for one who erased their data meanwhile.
    """
    now = utcnow()
    result = await session.execute(
        update(Subscription).where(Subscription.user_id == user_id).values(active=False, updated_at=now),
        execution_options={"synchronize_session": False},
    )
    if not getattr(result, "rowcount", 0) and await session.get(User, user_id) is not None:
        await set_subscribed(session, user_id, False)
