"""Replies asking for a slot at the same time share one statement on PostgreSQL, and still get a slot each."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.rate_limit import DatabaseSchedule
from tests.sql_trace import statements_run


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_concurrent_replies_are_reserved_together_one_slot_each(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 10.0  # long slots: each reply's delay names its slot unambiguously despite a slow machine
    schedule = DatabaseSchedule(engine, interval, idle_trust=0)  # every reply waits for its statement
    statements = statements_run(engine, monkeypatch, key=str.strip)  # the schedule runs them on the driver
    try:
        await schedule.reserve(bulk=False)  # connects and takes slot 0, alone
        results = await asyncio.gather(*(schedule.reserve(bulk=False) for _ in range(20)))
    finally:
        await schedule.close()
    slots = sorted(round(delay / interval) for delay, _, _ in results if delay is not None)
    assert slots == list(range(1, 21))  # twenty distinct consecutive slots after the first reply's
    assert schedule._failing_since is None  # from the shared row, not the memory fallback
    reservations = [sql for sql in statements if sql.startswith("UPDATE send_rate")]
    assert len(reservations) == 2  # the lone reply, then the twenty in one statement
