"""Commit a group of outbox outcomes on a connection the sender holds, at the least CPU a commit can cost.

Each lane of the sender waits for its message's outcome to be committed before it sends again (so a crash
repeats at most one message per lane, see bot/sender.py), so a broadcast at 1,000 messages a second commits
several hundred groups a second, and what one commit costs is paid per message.

* PostgreSQL: the UPDATEs of `db.outbox.resolve_all` in Core on the connection, one transaction per group.
* SQLite: the same UPDATEs, compiled once by SQLAlchemy with its own parameter processing, run on the aiosqlite
  connection underneath: an executemany per shape of outcome, then a commit. That is two hand-offs to aiosqlite's
  thread where SQLAlchemy's adapter takes four (cursor, execute, close, commit) plus its execution machinery;
  measured on SQLite, a commit costs about a third of the CPU of a commit on an ORM session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
from sqlalchemy import Update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from db import outbox

Process = Callable[[Any], Any]


@dataclass(frozen=True)
class _DriverStatement:
    """A statement compiled for the driver: its SQL, and for each of its positional parameters either the name of
    the caller's parameter and SQLAlchemy's processing of it (e.g. datetimes as SQLite stores them), or the value
    the statement carries itself (the literals in `status = 'in_flight'`, `attempts - 1`)."""

    sql: str
    slots: tuple[tuple[str, Process | None] | tuple[None, Any], ...]

    def row(self, params: dict[str, Any]) -> tuple[Any, ...]:
        values: list[Any] = []
        for name, how in self.slots:
            if name is None:
                values.append(how)
            else:
                values.append(params[name] if how is None else how(params[name]))
        return tuple(values)


_COMPILED: dict[tuple[Update, str], _DriverStatement] = {}


def _for_driver(stmt: Update, dialect: Dialect) -> _DriverStatement:
    key = (stmt, dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        compiled = stmt.compile(dialect=dialect)
        slots: list[tuple[str, Process | None] | tuple[None, Any]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                slots.append((name, process))
            else:
                value = bind.effective_value
                slots.append((None, value if process is None else process(value)))
        found = _COMPILED[key] = _DriverStatement(str(compiled), tuple(slots))
    return found


async def commit_outcomes(conn: AsyncConnection, resolutions: Sequence[outbox.Resolution]) -> int | None:
    """Apply and commit `resolutions` (see `db.outbox.resolve_all`, whose return value this is) on `conn`."""
    if conn.dialect.name != "sqlite":
        async with conn.begin():
            return await outbox.resolve_all(conn, resolutions)
    driver = (await conn.get_raw_connection()).driver_connection
    if not isinstance(driver, aiosqlite.Connection):  # another SQLite driver: SQLAlchemy's own way
        async with conn.begin():
            return await outbox.resolve_all(conn, resolutions)
    held = 0
    try:
        for stmt, many in outbox.resolution_statements(resolutions):
            statement = _for_driver(stmt, conn.dialect)
            cursor = await driver.executemany(statement.sql, [statement.row(params) for params in many])
            held += max(0, cursor.rowcount)
        await driver.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            await driver.rollback()
        raise
    return held
