"""Engine and session factory for SQLite (embedded default) and PostgreSQL (scale)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import ClauseElement, Executable, Result, event
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as sqlite_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.sql.compiler import SQLCompiler

T = TypeVar("T")

PG_POOL_SIZE = 20
"""PostgreSQL connections a process keeps open, and the most it opens: updates beyond them wait for one, which is
cheap. SQLAlchemy's default (5, and up to 10 more that are closed as soon as they are returned) made a burst of a
thousand physicians open and close a connection every tenth update, a server process forked, authenticated and
set up each time: that cost the machine more CPU than the bot's own work. The sender takes at most three at once
and the reminder scheduler two (one holds its lock); every other user of the pool takes one at a time. The pool
hands out the connection returned last (LIFO): a quiet bot keeps using the few whose server processes have the
tap's statements prepared and its tables cached, where a queue would rotate through all twenty and pay each one's
first use (several milliseconds for the statement that ends a flow)."""
PG_POOL_OVERFLOW = 0


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create an engine; SQLite gets foreign keys enforced and a busy timeout so a console and a bot can share it."""
    if url.startswith("sqlite"):
        # the tap's transaction runs on the event loop's thread (`on_sqlite`), SQLAlchemy's work in aiosqlite's
        kwargs["connect_args"] = {"timeout": 30, **kwargs.get("connect_args", {}), "check_same_thread": False}
        kwargs.setdefault("pool_reset_on_return", None)  # `_rollback_if_open` instead
    else:
        # No pre-ping: it costs a round trip per transaction, and a tap is one transaction. A connection that died
        # while pooled fails its first statement instead, SQLAlchemy then replaces every pooled connection, and the
        # dialogue's retry (bot.faults.with_db_retry) runs the step again on a fresh one. Recycling bounds how
        # stale a pooled connection can get behind a firewall that drops idle ones.
        kwargs.setdefault("pool_recycle", 1800)
        kwargs.setdefault("pool_size", PG_POOL_SIZE)
        kwargs.setdefault("max_overflow", PG_POOL_OVERFLOW)
        kwargs.setdefault("pool_use_lifo", True)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        if kwargs.get("pool_reset_on_return", "rollback") is None:
            event.listen(engine.sync_engine, "reset", _rollback_if_open)
    return engine


def _rollback_if_open(dbapi_conn: Any, _record: Any, state: PoolResetState) -> None:
    """A pooled SQLite connection is rolled back on its return only if it is inside a transaction.

    SQLAlchemy's own reset rolls back every connection returned, and through aiosqlite a rollback is a hop to the
    connection's thread and back even when there is nothing to roll back: 0.16 ms of the 0.2 ms that taking and
    returning a connection cost, on every tap. sqlite3 tells whether a transaction is open without the hop."""
    if state.terminate_only:
        return
    sqlite_conn = getattr(getattr(dbapi_conn, "_connection", None), "_connection", None)
    if sqlite_conn is None or sqlite_conn.in_transaction:
        dbapi_conn.rollback()


@contextlib.asynccontextmanager
async def borrowed(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection, given back without a turn of the event loop.

    `AsyncConnection`'s own `async with` closes the connection in a task of its own (so that a cancellation cannot
    abandon the close halfway) and waits for it, and so everything else ready on the loop runs first: for the tap
    on SQLite, whose transaction makes no wait of its own, that was 0.2 ms of other work (the next long poll of
    getUpdates, answers to earlier requests) before its reply went out. For a connection outside a transaction,
    as the tap uses it, the close makes no I/O, so there is nothing for a cancellation to abandon."""
    conn = await engine.connect()
    try:
        yield conn
    finally:
        await conn.close()


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def run_core(session: AsyncSession, statement: Executable, params: Any = None) -> Result[Any]:
    """A Core statement on the session's connection, past the ORM's execution layer.

    For the statements of a tap, built once at import with bind parameters: building and hashing a statement, and
    the ORM's handling of it, cost more CPU than running it.
    """
    connection = await session.connection()
    return await connection.execute(statement, params)


class CompiledStatement:
    """A Core statement compiled once for one driver, its parameters put in the driver's order through the columns'
    own bind processors (JSON serialised, dates formatted, as SQLAlchemy would): the part `DriverStatement` and
    `SqliteStatement` share."""

    def __init__(self, statement: ClauseElement, dialect: Any) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(compiled)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        self._names: tuple[str, ...] = tuple(compiled.positiontup or ())
        self._fixed: dict[str, Any] = {name: binds[name].value for name in self._names if not binds[name].required}
        self._process: dict[str, Callable[[Any], Any]] = {}
        for name in self._names:
            processor = binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._process[name] = processor

    def _args(self, params: Mapping[str, Any]) -> list[Any]:
        args = []
        for name in self._names:
            value = params[name] if name in params else self._fixed[name]
            process = self._process.get(name)
            args.append(value if process is None else process(value))
        return args


class DriverStatement(CompiledStatement):
    """A Core statement compiled once for asyncpg and run on the driver's own connection (PostgreSQL only).

    For the statements of the usual tap (`db.repository.read_active`, `save_unmoved`), on a connection where
    SQLAlchemy has begun no transaction, so each statement commits by itself. SQLAlchemy's execution
    (the compiled cache, the parameters, the cursor and result wrappers, a greenlet switch) costs about as much CPU
    as asyncpg's whole round trip. Parameters go through the columns' own bind processors (JSON is serialised as
    SQLAlchemy would); rows come back as asyncpg records, JSON decoded by the codec SQLAlchemy's dialect installs
    on every connection. A unique violation is raised as SQLAlchemy's IntegrityError; any other failure invalidates
    the pooled connection, and a lost connection is raised as SQLAlchemy's OperationalError, any other error of
    asyncpg's as a DBAPIError, as SQLAlchemy would, so callers catch SQLAlchemy's errors only.
    """

    _dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]

    def __init__(self, statement: ClauseElement) -> None:
        super().__init__(statement, self._dialect)

    async def fetch(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        """The statement's rows (records indexable by position and by column name)."""
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        try:
            return list(await driver.fetch(self.sql, *self._args(params)))
        except Exception as exc:
            if type(exc).__name__ in {"UniqueViolationError", "ForeignKeyViolationError"}:
                raise IntegrityError(self.sql, None, exc) from exc
            lost = driver.is_closed() or isinstance(exc, OSError)
            await conn.invalidate()
            if lost:  # as SQLAlchemy reports a lost connection, so callers treat it as an outage
                raise OperationalError(self.sql, None, exc) from exc
            if type(exc).__module__.startswith("asyncpg"):  # the server's error (a cancelled statement, ...)
                raise DBAPIError(self.sql, None, exc) from exc
            raise


class SqliteStatement(CompiledStatement):
    """A Core statement compiled once for SQLite and run on the driver's sqlite3 connection (see `on_sqlite`): the
    SQLite counterpart of `DriverStatement`, for the usual tap. Results go through the columns' result processors
    (dates, JSON, booleans), as SQLAlchemy would hand them back."""

    _dialect = sqlite_dialect()

    def __init__(self, statement: ClauseElement) -> None:
        super().__init__(statement, self._dialect)
        columns = getattr(statement, "selected_columns", None) or getattr(statement, "_returning", None) or ()
        self._results: tuple[Callable[[Any], Any] | None, ...] = tuple(
            column.type.dialect_impl(self._dialect).result_processor(self._dialect, None) for column in columns
        )

    def rows(self, db: sqlite3.Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows, each value as SQLAlchemy would hand it back (call it from `on_sqlite`'s work)."""
        rows = db.execute(self.sql, self._args(params)).fetchall()
        if not any(self._results):
            return rows
        return [
            tuple(
                value if process is None else process(value) for process, value in zip(self._results, row, strict=False)
            )
            for row in rows
        ]


async def on_sqlite(conn: AsyncConnection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run `work` on the connection's sqlite3 connection, right here on the event loop's thread, with SQLite's busy
    timeout off: while another connection holds the write lock, the attempt fails at once and is made again after a
    pause (`LOCK_PAUSES`), the loop running on meanwhile, until the connection's busy timeout has passed. `work`
    owns its transaction (BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when it raises), so it may run several times.
    sqlite3's IntegrityError and OperationalError come back as SQLAlchemy's, so callers handle a claim taken
    already and a locked or lost database as elsewhere.

    Why not in aiosqlite's thread, as its own methods run: the hop there and back cost nearly as much as the tap's
    transaction itself (0.25 ms against 0.35 ms: the thread waits for the GIL until the loop next blocks, and the
    result comes back through the loop's self-pipe), and under load 0.35 ms of CPU per update. A wait for the lock
    in that thread (SQLite's busy handler) also held the lock up for the next taps, which then waited in turn. The
    price is the loop held for the transaction's own time, its commit's fsync included, never for a wait on the
    lock."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    db: sqlite3.Connection = driver._conn
    try:
        waits = int(db.execute("PRAGMA busy_timeout").fetchone()[0])
        give_up = time.monotonic() + waits / 1000
        pauses = itertools.chain(LOCK_PAUSES, itertools.repeat(LOCK_PAUSES[-1]))
        while True:
            try:
                return _without_waiting(db, work, waits)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= give_up:
                    raise
            await asyncio.sleep(next(pauses))
    except sqlite3.IntegrityError as exc:
        raise IntegrityError("sqlite tap", None, exc) from exc
    except sqlite3.OperationalError as exc:
        await conn.invalidate()
        raise OperationalError("sqlite tap", None, exc) from exc


LOCK_PAUSES = (0.0005, 0.001, 0.002, 0.005, 0.01)
"""Seconds between attempts at a locked SQLite database (`on_sqlite`), the last repeated: a write of this process
holds the lock for a millisecond or two, another process's (a console, `medlegal db upgrade`) can hold it longer."""


def _without_waiting(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], waits: int) -> T:
    """`work` with the busy timeout off (a locked database raises SQLITE_BUSY at once), then `waits` ms again."""
    db.execute("PRAGMA busy_timeout = 0")
    try:
        return work(db)
    finally:
        db.execute(f"PRAGMA busy_timeout = {waits}")
