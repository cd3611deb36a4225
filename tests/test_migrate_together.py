"""Processes that start together migrate once (PostgreSQL), and `run --no-migrate` refuses a database behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from bot import cli
from bot.settings import Settings
from db import migrate
from db.engine import make_engine
from tests.cli_runner import Run, runner
from tests.conftest import fresh_database_url


@pytest.mark.postgres
async def test_the_migration_lock_is_held_until_the_migrations_are_committed(tmp_path: Path) -> None:
    """Processes that start together queue on the lock; the next one must see the committed revision, so the lock
    may not be let go before the commit (the next process would run the same migrations again, and fail)."""
    async for url in fresh_database_url("postgres", tmp_path):
        engine = make_engine(url)
        try:
            async with engine.connect() as migrating, engine.connect() as other:
                await migrating.run_sync(migrate._with_lock, "upgrade", "head")
                taken = text("SELECT pg_try_advisory_lock(:k)")
                assert (await other.execute(taken, {"k": migrate.MIGRATION_LOCK_KEY})).scalar() is False
                await migrating.commit()
                assert (await other.execute(taken, {"k": migrate.MIGRATION_LOCK_KEY})).scalar() is True
                await other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrate.MIGRATION_LOCK_KEY})
            at, head = await migrate.current(engine)
            assert at == head
        finally:
            await engine.dispose()


async def test_run_no_migrate_refuses_a_database_behind(tmp_path: Path) -> None:
    run = runner(tmp_path, MEDLEGAL_BOT_TOKEN="123456:TEST-token")
    line = await asyncio.to_thread(_last_error_line, run)
    assert "medlegal db upgrade" in line and "base (empty)" in line
    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    engine = make_engine(settings.database_url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    await cli._check_migrated(settings)  # up to date now: `run --no-migrate` goes on to start the bot


def _last_error_line(run: Run) -> str:
    """`run --no-migrate` ends with exit 1 and one `medlegal:` line, after any log lines."""
    result = run("run", "--no-migrate")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("medlegal: ")
    return last
