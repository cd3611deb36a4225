"""Which Telegram updates have been taken on, so an update Telegram delivers twice (to one process or to two) is
processed once.

A claim is an INSERT of the update id under its primary key: on PostgreSQL a second process claiming the same id
waits for the first transaction and then finds the row, so exactly one wins. Only the id and a day are stored.
The claim is made inside the transaction that applies the update, or in one of its own when the update needs no
other database work (see `bot.update_guard`).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Connection, Insert, bindparam, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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


def claim_on(connection: Connection, update_id: int, today: date) -> bool:
    """True when this is the first claim of `update_id` (the caller processes it), False for a repeat.

    Synchronous, on the connection of a transaction that has just begun: it runs in a session event.
    """
    claim = _CLAIMS[connection.dialect.name]
    return bool(connection.execute(claim, {"claimed_id": update_id, "claimed_day": today}).rowcount)


def prune_on(connection: Connection, today: date, keep_days: int = RETENTION_DAYS) -> int:
    """Forget claims older than `keep_days`; returns how many rows went."""
    old = delete(ProcessedUpdate).where(ProcessedUpdate.day < today - timedelta(days=keep_days))
    return int(connection.execute(old).rowcount or 0)
