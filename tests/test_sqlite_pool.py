"""A pooled SQLite connection is rolled back on its return only when a transaction is open on it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.engine import make_engine
from tests.sql_trace import sqlite_thread_calls


async def _driver(conn: AsyncConnection) -> Any:
    """The aiosqlite connection under the pooled one."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def test_a_connection_returned_outside_a_transaction_goes_back_without_a_rollback(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            await conn.get_raw_connection()  # the pool's connection, opened (a few hops) before counting
        hops = sqlite_thread_calls(monkeypatch)
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
