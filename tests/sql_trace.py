"""Which SQL statements a piece of work runs, by whichever way it reaches the database."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import repository
from db.engine import DriverStatement, in_sqlite_thread

ONE_HOP = "ONE HOP"
"""What a transaction run in one hop to aiosqlite's thread (`db.engine.in_sqlite_thread`) is recorded as."""


def verb(sql: str) -> str:
    """A statement's first word: WITH, SELECT, UPDATE, ..."""
    return sql.split(None, 1)[0].upper()


def statements_run(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, key: Callable[[str], str] = verb) -> list[str]:
    """The SQL statements run from now on (each as `key` of its text): through the engine, on the driver's
    connection (`DriverStatement`), or `ONE_HOP` for a transaction in aiosqlite's thread."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(key(statement))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    fetch = DriverStatement.fetch

    async def driver_fetch(self: DriverStatement, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        seen.append(key(self.sql))
        return await fetch(self, conn, params)

    monkeypatch.setattr(DriverStatement, "fetch", driver_fetch)
    hop = in_sqlite_thread

    async def sqlite_hop(conn: AsyncConnection, work: Callable[[Any], Any]) -> Any:
        seen.append(ONE_HOP)
        return await hop(conn, work)

    monkeypatch.setattr(repository, "in_sqlite_thread", sqlite_hop)
    return seen
