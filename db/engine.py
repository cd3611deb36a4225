"""Engine and session factory for SQLite (embedded default) and PostgreSQL (scale)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, Result, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create an engine; SQLite gets foreign keys enforced and a busy timeout so a console and a bot can share it."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
    else:
        # No pre-ping: it costs a round trip per transaction, and a tap is one transaction. A connection that died
        # while pooled fails its first statement instead, SQLAlchemy then replaces every pooled connection, and the
        # dialogue's retry (bot.faults.with_db_retry) runs the step again on a fresh one. Recycling bounds how
        # stale a pooled connection can get behind a firewall that drops idle ones.
        kwargs.setdefault("pool_recycle", 1800)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def run_core(session: AsyncSession, statement: Executable, params: Any = None) -> Result[Any]:
    """A Core statement on the session's connection, past the ORM's execution layer.

    For the statements of a tap, built once at import with bind parameters: building and hashing a statement, and
    the ORM's handling of it, cost more CPU than running it.
    """
    connection = await session.connection()
    return await connection.execute(statement, params)
