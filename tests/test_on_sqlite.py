"""The tap's SQLite transaction runs on the event loop's thread when the database is free, and waits for a locked
one in aiosqlite's thread, never holding the loop (`db.engine.on_sqlite`)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import make_engine, on_sqlite
from tests.sql_trace import sqlite_thread_calls


@pytest.fixture
async def sqlite_engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(sqlite_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    yield engine
    await engine.dispose()


def _write(body: str, threads: list[int]) -> Any:
    """A transaction as the tap runs one, noting the thread it ran on."""

    def work(db: sqlite3.Connection) -> int:
        threads.append(threading.get_ident())
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("INSERT INTO note (body) VALUES (?) RETURNING id", (body,)).fetchone()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return int(row[0])

    return work


async def _busy_timeout(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("PRAGMA busy_timeout"))).scalar_one())


async def test_a_free_database_is_written_on_the_loop_thread_without_a_hop(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    async with sqlite_engine.connect() as conn:
        waits = await _busy_timeout(conn)
        await conn.commit()
        hops = sqlite_thread_calls(monkeypatch)
        assert await on_sqlite(conn, _write("here", threads)) == 1
        assert hops == [] and threads == [threading.get_ident()]
        assert waits == 30_000 and await _busy_timeout(conn) == waits, "the busy timeout is put back"
        assert (await conn.execute(text("SELECT body FROM note"))).scalars().all() == ["here"]


async def test_a_locked_database_is_waited_for_in_aiosqlites_thread_while_the_loop_runs_on(
    sqlite_engine: AsyncEngine, sqlite_url: str
) -> None:
    blocker = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process writing: the lock is taken
    threads: list[int] = []
    try:
        async with sqlite_engine.connect() as conn:
            writing = asyncio.create_task(on_sqlite(conn, _write("after the lock", threads)))
            started = time.monotonic()
            await asyncio.sleep(0.3)
            assert time.monotonic() - started < 1.0, "the loop ran on while the write waited"
            assert not writing.done() and len(threads) == 2, "tried here at once, then waiting in the thread"
            blocker.execute("COMMIT")
            assert await asyncio.wait_for(writing, 10) == 1
            assert threads[0] == threading.get_ident() and threads[1] != threads[0]
            assert await _busy_timeout(conn) == 30_000
    finally:
        blocker.close()


async def test_sqlites_errors_come_back_as_sqlalchemys(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.connect() as conn:
        await on_sqlite(conn, _write("one", []))

        def duplicate(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO note (id, body) VALUES (1, 'again')")

        with pytest.raises(IntegrityError):
            await on_sqlite(conn, duplicate)

        def broken(db: sqlite3.Connection) -> None:
            db.execute("SELECT * FROM no_such_table")

        with pytest.raises(OperationalError):
            await on_sqlite(conn, broken)
    async with sqlite_engine.connect() as conn:  # the failed connection was replaced; the next one works
        assert (await conn.execute(text("SELECT count(*) FROM note"))).scalar_one() == 1
        assert await _busy_timeout(conn) == 30_000
