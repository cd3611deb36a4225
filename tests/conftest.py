"""Shared fixtures: a migrated database on SQLite and, when MEDLEGAL_TEST_PG_URL is set, on PostgreSQL.

Each PostgreSQL test gets a fresh database created from the server named by MEDLEGAL_TEST_PG_URL
(e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test) and dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import migrate
from db.engine import make_engine, make_session_factory
from tests.fake_bot_api import FakeBotApi

PG_URL = os.environ.get("MEDLEGAL_TEST_PG_URL", "")

# Hypothesis profiles, chosen with HYPOTHESIS_PROFILE: "ci" (the default) keeps the suite fast and repeatable with
# few, derandomized examples; "thorough" searches much longer with fresh random examples, for a run by hand.
# A test that sets max_examples itself keeps its own number.
_SLOW_OK = [HealthCheck.too_slow]
hypothesis_settings.register_profile(
    "ci", max_examples=30, derandomize=True, print_blob=True, deadline=None, suppress_health_check=_SLOW_OK
)
hypothesis_settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=_SLOW_OK)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="set MEDLEGAL_TEST_PG_URL to run the PostgreSQL tests")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    dsn = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def fresh_database_url(backend: str, tmp_path: Path) -> AsyncGenerator[str, None]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'medlegal-test.db'}"
        return
    name = f"medlegal_t_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_URL, name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database on each backend (not migrated)."""
    async for url in fresh_database_url(request.param, tmp_path):
        yield url


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in fresh_database_url("sqlite", tmp_path):
        yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A database migrated to the newest revision, on each backend."""
    eng = make_engine(db_url)
    await migrate.upgrade(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_session_factory(engine)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    """The fake Bot API server on 127.0.0.1, fresh for each test."""
    async with FakeBotApi() as server:
        yield server
