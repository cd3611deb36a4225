"""The tap's SQLite transaction runs on the event loop's thread, and a locked database is tried again after pauses
instead of waited for in SQLite's busy handler, so the loop never waits for a lock (`db.engine.on_sqlite`)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
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


def _write(body: str, threads: list[int]) -> Callable[[sqlite3.Connection], int]:
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


@contextlib.contextmanager
def lock_held(sqlite_url: str) -> Iterator[sqlite3.Connection]:
    """Another process writing: a connection of its own holding the database's write lock."""
    blocker = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield blocker
    finally:
        blocker.close()


async def _ticks(until: asyncio.Future[Any]) -> int:
    """How often the loop came round to this task (every 10 ms) before `until` was done."""
    ticks = 0
    while not until.done():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


async def test_a_locked_database_is_tried_again_while_the_loop_runs_on(
    sqlite_engine: AsyncEngine, sqlite_url: str
) -> None:
    threads: list[int] = []
    async with sqlite_engine.connect() as conn:
        with lock_held(sqlite_url) as blocker:
            writing = asyncio.create_task(on_sqlite(conn, _write("after the lock", threads)))
            ticking = asyncio.create_task(_ticks(writing))
            await asyncio.sleep(0.3)
            assert not writing.done() and len(threads) >= 5, "tried at once, then again after each pause"
            blocker.execute("COMMIT")
            assert await asyncio.wait_for(writing, 10) == 1
        assert await ticking >= 20, "the loop ran on while the write waited for the lock"
        assert set(threads) == {threading.get_ident()}, "no hop to aiosqlite's thread"
        assert await _busy_timeout(conn) == 30_000


async def test_a_database_locked_past_the_busy_timeout_fails_as_sqlalchemy_says(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, connect_args={"timeout": 0.3})
    try:
        async with engine.connect() as conn:
            await conn.get_raw_connection()  # connected (its pragmas set) before the lock is taken
            with lock_held(sqlite_url):
                started = time.monotonic()
                writing = asyncio.create_task(on_sqlite(conn, _write("never", [])))
                ticks = await _ticks(writing)
                with pytest.raises(OperationalError, match="locked"):
                    await writing
                assert 0.3 <= time.monotonic() - started < 2.0 and ticks >= 20
    finally:
        await engine.dispose()


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
