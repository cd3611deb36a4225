"""Which SQL statements a piece of work runs, by whichever way it reaches the database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import aiosqlite
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import repository
from db.engine import DriverStatement, on_sqlite

ONE_TRANSACTION = "ONE TRANSACTION"
"""What a transaction run in one call on the sqlite3 connection (`db.engine.on_sqlite`) is recorded as."""


def verb(sql: str) -> str:
    """A statement's first word: WITH, SELECT, UPDATE, ..."""
    return sql.split(None, 1)[0].upper()


def statements_run(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, key: Callable[[str], str] = verb) -> list[str]:
    """The SQL statements run from now on (each as `key` of its text): through the engine, on the driver's
    connection (`DriverStatement`), or `ONE_TRANSACTION` for a transaction run by `on_sqlite`."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(key(statement))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    fetch = DriverStatement.fetch

    async def driver_fetch(self: DriverStatement, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        seen.append(key(self.sql))
        return await fetch(self, conn, params)

    monkeypatch.setattr(DriverStatement, "fetch", driver_fetch)

    async def sqlite_work(conn: AsyncConnection, work: Callable[[Any], Any]) -> Any:
        seen.append(ONE_TRANSACTION)
        return await on_sqlite(conn, work)

    monkeypatch.setattr(repository, "on_sqlite", sqlite_work)
    return seen


def sqlite_thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls made from now on in aiosqlite's threads (every connection's), by name: each one a hop from the event
    loop's thread and back."""
    seen: list[str] = []
    execute = cast(Callable[..., Awaitable[Any]], aiosqlite.Connection._execute)

    async def counted(self: aiosqlite.Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen
