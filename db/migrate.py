"""Run Alembic migrations from inside the application's event loop, once across processes."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

MIGRATION_LOCK_KEY = 7_412_001  # PostgreSQL advisory lock id shared by every medlegal process


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return cfg


def _with_lock(connection: Connection, work: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    if connection.dialect.name == "postgresql":
        # Processes that start together queue here; the first migrates, the rest find nothing to do. The lock is
        # the transaction's, so it is let go at the commit: a session-level lock released before the commit let
        # the next process read the old revision and run the same migrations again.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    if work == "upgrade":
        command.upgrade(cfg, revision)
    else:
        command.downgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.connect() as conn:
        await conn.run_sync(_with_lock, "upgrade", revision)
        await conn.commit()


async def downgrade(engine: AsyncEngine, revision: str = "-1") -> None:
    async with engine.connect() as conn:
        await conn.run_sync(_with_lock, "downgrade", revision)
        await conn.commit()


def _current(connection: Connection) -> tuple[str | None, str | None]:
    ctx = MigrationContext.configure(connection)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return ctx.get_current_revision(), head


async def current(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(revision the database is at, newest revision shipped)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
