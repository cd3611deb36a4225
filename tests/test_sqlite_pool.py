"""A pooled SQLite connection is rolled back on its return only when a transaction is open on it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import make_engine


async def _driver(conn: AsyncConnection) -> Any:
    """The aiosqlite connection under the pooled one."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def _hops(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls made from now on in the pooled aiosqlite connection's thread, by name."""
    async with engine.connect() as conn:
        driver = await _driver(conn)
    seen: list[str] = []
    execute = type(driver)._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(type(driver), "_execute", counted)
    return seen


async def test_a_connection_returned_outside_a_transaction_goes_back_without_a_rollback(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    try:
        hops = await _hops(engine, monkeypatch)
        for _ in range(3):
            async with engine.connect() as conn:
                await conn.get_raw_connection()
        assert hops == []  # the default reset would hop to the thread to roll back three times
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))  # SQLAlchemy's transaction: its own rollback on close
        assert hops.count("rollback") == 1
    finally:
        await engine.dispose()


async def test_a_connection_returned_inside_a_transaction_is_rolled_back(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        async with engine.connect() as conn:  # a transaction on the driver's own connection, left open
            driver = await _driver(conn)
            await driver.execute("BEGIN IMMEDIATE")
            await driver.execute("CREATE TABLE left_open (x)")
        async with engine.connect() as conn:
            driver = await _driver(conn)
            assert not driver._conn.in_transaction
            cursor = await driver.execute("SELECT count(*) FROM sqlite_master WHERE name = 'left_open'")
            assert await cursor.fetchone() == (0,)
        other = make_engine(sqlite_url)  # and the write lock went with it: another connection can write
        try:
            async with other.begin() as conn:
                await conn.execute(text("CREATE TABLE written (x)"))
        finally:
            await other.dispose()
    finally:
        await engine.dispose()
