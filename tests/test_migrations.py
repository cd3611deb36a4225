"""Alembic migrations: up, down to base and up again, the reported revision, and no drift from the models."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from db import migrate
from db.engine import make_engine
from db.models import Base

ROOT = Path(__file__).resolve().parents[1]
MODEL_TABLES = {t.name for t in Base.metadata.sorted_tables}


def _head() -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


def _diff(connection: Connection, metadata: MetaData = Base.metadata) -> list[Any]:
    ctx = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


def test_there_is_one_head() -> None:
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert len(heads) == 1


async def test_upgrade_downgrade_base_and_upgrade_again(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert await migrate.current(engine) == (None, _head())

        await migrate.upgrade(engine)
        assert await _tables(engine) == MODEL_TABLES | {"alembic_version"}

        await migrate.downgrade(engine, "base")
        assert await _tables(engine) - {"alembic_version"} == set()
        assert (await migrate.current(engine))[0] is None

        await migrate.upgrade(engine)
        assert await _tables(engine) == MODEL_TABLES | {"alembic_version"}
        assert await migrate.current(engine) == (_head(), _head())
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        await migrate.upgrade(engine)  # nothing left to do, no error
        head = _head()
        assert head is not None
        assert await migrate.current(engine) == (head, head)
    finally:
        await engine.dispose()


async def test_downgrade_one_step_from_head(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine)  # default: -1
        script = ScriptDirectory.from_config(migrate.alembic_config())
        newest = _head()
        assert newest is not None
        head = script.get_revision(newest)
        assert head is not None
        at, reported = await migrate.current(engine)
        assert reported == head.revision
        assert at == head.down_revision
    finally:
        await engine.dispose()


async def test_current_reports_head_after_upgrade(engine: AsyncEngine) -> None:
    head = _head()
    assert head is not None
    assert await migrate.current(engine) == (head, head)


async def test_no_drift_between_models_and_migrations(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []


async def test_drift_check_notices_a_model_change(engine: AsyncEngine) -> None:
    """The no-drift test above would fail if a model gained a column the migrations lack."""
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["users"].append_column(Column("extra", Integer, nullable=True))
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff, changed)
    assert [op[0] for op in diff] == ["add_column"]
    assert diff[0][3].name == "extra"


def test_alembic_check_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"

    async def prepare() -> None:
        engine = make_engine(url)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDLEGAL_")}
    env["MEDLEGAL_DATABASE_URL"] = url
    alembic = Path(sys.executable).parent / "alembic"
    command = [str(alembic)] if alembic.exists() else [sys.executable, "-m", "alembic"]
    result = subprocess.run(
        [*command, "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr
