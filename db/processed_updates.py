"""Which Telegram updates have been taken on, so an update Telegram delivers twice (to one process or to two) is
processed once.

A claim is an INSERT of the update id under its primary key: on PostgreSQL a second process claiming the same id
waits for the first transaction and then finds the row, so exactly one wins. Only the id and a day are stored.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ProcessedUpdate

RETENTION_DAYS = 3
"""Telegram keeps an undelivered update for 24 hours; ids older than this cannot come back."""


async def claim(session: AsyncSession, update_id: int, today: date) -> bool:
    """True when this is the first claim of `update_id` (the caller processes it), False for a repeat."""
    dialect = session.get_bind().dialect.name
    ins = pg_insert(ProcessedUpdate) if dialect == "postgresql" else sqlite_insert(ProcessedUpdate)
    result = await session.execute(ins.values(update_id=update_id, day=today).on_conflict_do_nothing())
    return bool(getattr(result, "rowcount", 0))


async def prune(session: AsyncSession, today: date, keep_days: int = RETENTION_DAYS) -> int:
    """Forget claims older than `keep_days`; returns how many rows went."""
    cutoff = today - timedelta(days=keep_days)
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.day < cutoff), execution_options={"synchronize_session": False}
    )
    return int(getattr(result, "rowcount", 0) or 0)
