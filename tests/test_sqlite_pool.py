"""Taking and giving back pooled SQLite connections cheaply: no rollback unless a transaction is open, no turn of the
event loop for a connection borrowed by the tap."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.engine import borrowed, make_engine
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


async def test_a_borrowed_connection_goes_back_to_the_pool_without_a_turn_of_the_event_loop(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        ran: list[str] = []
        async with borrowed(engine) as conn:
            await conn.get_raw_connection()
            asyncio.get_running_loop().call_soon(ran.append, "other work")
        assert ran == [], "the other work waits for the caller's next await (for a tap, its reply)"
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        assert ran == ["other work"]
        ran.clear()
        async with engine.connect() as conn:  # SQLAlchemy's own close: in a task, after whatever is ready
            asyncio.get_running_loop().call_soon(ran.append, "other work")
        assert ran == ["other work"]
    finally:
        await engine.dispose()
