"""Commit groups of outbox outcomes for the sender, at the least CPU and delay a commit can cost.

Each lane of the sender waits for its message's outcome to be committed before its next message goes out (so a
crash repeats at most one message per lane, see bot/sender.py): a broadcast at 1,000 messages a second commits
several hundred groups a second, and a commit's CPU and its delay are paid per message.

* SQLite file: the UPDATEs of `db.outbox.resolve_all` (compiled by SQLAlchemy, with its parameter processing) and
  the commit run right on the event loop's thread, on a `sqlite3` connection of the committer's own that never
  waits for a lock (busy timeout 0). A group is a few row updates by primary key and a write-ahead-log append with
  its fsync: about 0.1-0.3 ms. Any hand-off to a thread (aiosqlite's, or one of ours) waits for the busy loop's
  next turn and for that thread's turn on two shared cores, about 1 ms, and each lane waits for its commit before
  its next message: with SQLAlchemy's aiosqlite adapter (cursor, execute, close, commit: four hand-offs) the
  delay, not the SQL, kept four lanes from 1,000 a second. When another connection is writing, the group goes to
  a thread of the committer's own whose connection waits for the lock, as the bot's other connections do.
* Anything else (PostgreSQL, SQLite in memory): the same UPDATEs in Core on one connection held for the pass.

A group is one transaction: it is committed whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import outbox

Process = Callable[[Any], Any]
T = TypeVar("T")


class OutcomeCommitter(Protocol):
    async def commit(self, resolutions: Sequence[outbox.Resolution]) -> int | None:
        """Apply and commit `resolutions` as one transaction; what `db.outbox.resolve_all` returns."""

    async def claim(self, now: datetime, limit: int, lease: float) -> list[outbox.Claimed]:
        """`db.outbox.claim_due` in a transaction of its own."""

    async def close(self) -> None: ...


def committer_for(engine: AsyncEngine) -> OutcomeCommitter:
    """The cheapest committer for the engine's database (see the module docstring)."""
    path = engine.url.database
    if engine.dialect.name == "sqlite" and path and path != ":memory:" and not path.startswith("file:"):
        return SqliteFileCommitter(path, engine.dialect)
    return ConnectionCommitter(engine)


class ConnectionCommitter:
    """Core on one connection, taken at the first commit and returned by `close()` (or dropped after a failure)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None

    async def commit(self, resolutions: Sequence[outbox.Resolution]) -> int | None:
        conn = await self._connection()
        try:
            async with conn.begin():
                return await outbox.resolve_all(conn, resolutions)
        except BaseException:
            await self._drop()
            raise

    async def claim(self, now: datetime, limit: int, lease: float) -> list[outbox.Claimed]:
        conn = await self._connection()
        stmt = outbox.claim_statement(conn.dialect.name)
        try:
            async with conn.begin():
                return outbox.claimed(await conn.execute(stmt, outbox.claim_params(now, limit, lease)))
        except BaseException:
            await self._drop()
            raise

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            self._conn = await self.engine.connect()
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
                await conn.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


class SqliteFileCommitter:
    """`sqlite3` connections of the committer's own to the database file: one used on the event loop's thread that
    never waits for a lock, and one in a thread of its own that does (see the module docstring)."""

    def __init__(self, path: str, dialect: Dialect, *, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.dialect = dialect
        self.busy_timeout = busy_timeout
        self._here: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._there: sqlite3.Connection | None = None
        """Used in `_thread` only."""
        self._processors: tuple[Process | None, ...] | None = None

    def commit_now(self, resolutions: Sequence[outbox.Resolution]) -> int | None:
        """Commit right here on the event loop's thread; None when another connection is writing (nothing done)."""
        statements = self._statements(resolutions)
        if self._here is None:
            self._here = _connect(self.path, 0.0)
            # its commits never start a checkpoint (copying the log into the database, with an fsync, would stall the
            # loop); the bot's other connections checkpoint as usual
            self._here.execute("PRAGMA wal_autocheckpoint=0")
        try:
            return _apply(self._here, statements)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY:  # the primary code (extended ones carry it low)
                _close(self._here)
                self._here = None
                raise
        return None

    async def commit(self, resolutions: Sequence[outbox.Resolution]) -> int:
        held = self.commit_now(resolutions)
        if held is not None:
            return held
        # another connection is writing: wait for it in the thread
        return await self._in_thread(self._apply_there, self._statements(resolutions))

    def _statements(self, resolutions: Sequence[outbox.Resolution]) -> list[tuple[str, list[tuple[Any, ...]]]]:
        return [
            (statement.sql, [statement.row(params) for params in many])
            for stmt, many in outbox.resolution_statements(resolutions)
            for statement in (_for_driver(stmt, self.dialect),)
        ]

    async def claim(self, now: datetime, limit: int, lease: float) -> list[outbox.Claimed]:
        """In the committer's thread: a claim writes hundreds of rows (milliseconds of SQLite's time, not to be spent
        on the event loop's thread), and the thread's connection waits for any other writer."""
        statement = _for_driver(outbox.claim_statement(self.dialect.name), self.dialect)
        rows = await self._in_thread(
            self._claim_there, statement.sql, statement.row(outbox.claim_params(now, limit, lease))
        )
        processors = self._claimed_processors()  # here: in the thread, Python work would contend for the GIL
        return outbox.claimed(
            tuple(value if process is None else process(value) for value, process in zip(row, processors, strict=True))
            for row in rows
        )

    def _claimed_processors(self) -> tuple[Process | None, ...]:
        if self._processors is None:
            self._processors = tuple(
                column.type.dialect_impl(self.dialect).result_processor(self.dialect, None)
                for column in outbox.CLAIMED_COLUMNS
            )
        return self._processors

    def _claim_there(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn = self._connect_there()
        try:
            rows = conn.execute(sql, params).fetchall()
            conn.commit()
        except BaseException:
            self._close_there()
            raise
        return rows

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-commit")
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def close(self) -> None:
        _close(self._here)
        self._here = None
        if self._thread is not None:
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self._thread, self._close_there)
            self._thread.shutdown(wait=False)
            self._thread = None

    def _apply_there(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> int:
        conn = self._connect_there()
        try:
            return _apply(conn, statements)
        except BaseException:
            self._close_there()
            raise

    def _connect_there(self) -> sqlite3.Connection:
        if self._there is None:
            self._there = _connect(self.path, self.busy_timeout)
        return self._there

    def _close_there(self) -> None:
        _close(self._there)
        self._there = None


_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=busy_timeout, check_same_thread=True)


def _apply(conn: sqlite3.Connection, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> int:
    """Run the statements and commit, as one transaction (rolled back if any of it fails)."""
    try:
        held = 0
        for sql, rows in statements:
            held += max(0, conn.executemany(sql, rows).rowcount)
        conn.commit()
        return held
    except BaseException:
        conn.rollback()
        raise


def _close(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


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
    """Compiled once per statement (db.outbox builds each of its statements once)."""
    key = (stmt, dialect.name)
    found = _COMPILED.get(key)
    if found is not None:
        return found
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
