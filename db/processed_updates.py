"""Which Telegram updates have been taken on, so an update Telegram delivers twice (to one process or to two) is
processed once.

A claim is an INSERT of the update id under its primary key: on PostgreSQL a second process claiming the same id
waits for the first transaction and then finds the row, so exactly one wins. Only the id and a day are stored.
The claim is made inside the transaction that applies the update (`claim_on`, see `bot.update_guard`), or on its
own when the update needs no other database work (`claim`).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Connection, Delete, Insert, bindparam, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ProcessedUpdate

RETENTION_DAYS = 3
"""Telegram keeps an undelivered update for 24 hours; ids older than this cannot come back."""


_CLAIMS: dict[str, Insert] = {
    dialect: insert(ProcessedUpdate)
    .values(update_id=bindparam("claimed_id"), day=bindparam("claimed_day"))
    .on_conflict_do_nothing()
    for dialect, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
"""Built once: every update runs one (building and hashing a statement costs more than running it)."""


def _claim(dialect: str, update_id: int, today: date) -> tuple[Insert, dict[str, object]]:
    return _CLAIMS[dialect], {"claimed_id": update_id, "claimed_day": today}


def _prune(today: date, keep_days: int) -> Delete:
    return delete(ProcessedUpdate).where(ProcessedUpdate.day < today - timedelta(days=keep_days))


async def claim(session: AsyncSession, update_id: int, today: date) -> bool:
    """True when this is the first claim of `update_id` (the caller processes it), False for a repeat."""
    result = await session.execute(*_claim(session.get_bind().dialect.name, update_id, today))
    return bool(getattr(result, "rowcount", 0))


def claim_on(connection: Connection, update_id: int, today: date) -> bool:
    """`claim` on a connection inside a transaction that has just begun (a session event; synchronous)."""
    return bool(connection.execute(*_claim(connection.dialect.name, update_id, today)).rowcount)


async def prune(session: AsyncSession, today: date, keep_days: int = RETENTION_DAYS) -> int:
    """Forget claims older than `keep_days`; returns how many rows went."""
    result = await session.execute(_prune(today, keep_days), execution_options={"synchronize_session": False})
    return int(getattr(result, "rowcount", 0) or 0)


def prune_on(connection: Connection, today: date, keep_days: int = RETENTION_DAYS) -> int:
    return int(connection.execute(_prune(today, keep_days)).rowcount or 0)
